"""DDIM (Song et al. 2021), deterministic: ``x_t = alpha_t x0_hat + sigma_t eps_hat``.

The simplest solver, and the one to copy when adding a new one: a frozen dataclass with
``order``, ``coefficients`` (the grid's times), ``init`` and ``step``. It equals DPM-Solver-1 and
DPM-Solver++-1 (first-order exponential integrators), which the tests check to 1e-10.
"""

from __future__ import annotations

import jax.numpy as jnp

from ..schedules import expand_to
from .base import Solver, solver_dataclass

__all__ = ["DDIM"]


@solver_dataclass
class DDIM(Solver):
    """Deterministic DDIM; first order. ``x_{i+1} = alpha(t_{i+1}) x0_hat + sigma(t_{i+1}) eps_hat``."""

    @property
    def order(self) -> int:
        return 1

    def coefficients(self, schedule, grid):
        t_next = grid[1:]
        return {"t": grid[:-1], "t_next": t_next,
                "alpha_next": schedule.alpha(t_next), "sigma_next": schedule.sigma(t_next)}

    def init(self, x, ms):
        return x, ms

    def step(self, model, state, coef, key):
        x, ms = state
        x0, eps, ms = model(x, coef["t"], ms)
        a = expand_to(coef["alpha_next"], x).astype(x.dtype)
        s = expand_to(coef["sigma_next"], x).astype(x.dtype)
        return a * x0 + s * eps, ms
