"""DDIM (Song et al. 2021): ``x_t = alpha_t x0_hat + sqrt(sigma_t^2 - c^2) eps_hat + c z``.

The simplest solver, and the one to copy when adding a new one: a frozen dataclass with
``order``, ``coefficients`` (the grid's times), ``init`` and ``step``. With ``eta = 0``
(default) it is deterministic and equals DPM-Solver-1 and DPM-Solver++-1 (first-order
exponential integrators), which the tests check to 1e-10. With ``eta > 0`` it re-noises:
``c = eta sigma_t sqrt(1 - exp(lambda_s - lambda_t))`` (step ``s -> t``, ``lambda`` the log-SNR);
``eta = 1`` is DDPM ancestral sampling on the same grid (see ``jaxdist.solvers.sde``).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from ..noise import standard_normal
from ..schedules import expand_to
from .base import Solver, clipped_log_snr, solver_dataclass

__all__ = ["DDIM"]


@solver_dataclass
class DDIM(Solver):
    """DDIM; first order. ``x_{i+1} = alpha(t_{i+1}) x0_hat + sigma(t_{i+1}) eps_hat`` for
    ``eta = 0``; ``eta > 0`` adds fresh noise (stochastic: needs a key; ``noise`` is an optional
    noise source such as ``jd.noise.BrownianPath``)."""

    eta: float = 0.0
    noise: Any = None

    @property
    def order(self) -> int:
        return 1

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return self.eta > 0

    @property
    def strong_order(self) -> float:
        return 1.0

    @property
    def weak_order(self) -> float:
        return 1.0

    def validate(self, schedule, grid):
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"DDIM: eta={self.eta} must be in [0, 1] (0 = DDIM, 1 = DDPM).")

    def coefficients(self, schedule, grid):
        t_next = grid[1:]
        coef = {"t": grid[:-1], "t_next": t_next,
                "alpha_next": schedule.alpha(t_next), "sigma_next": schedule.sigma(t_next)}
        if self.eta > 0:
            # 1 - exp(lambda_s - lambda_t) = 1 - SNR_s / SNR_t, the DDPM posterior variance ratio.
            frac = -jnp.expm1(clipped_log_snr(schedule, grid[:-1]) - clipped_log_snr(schedule, t_next))
            coef["sigma_next"] = coef["sigma_next"] * jnp.sqrt(1.0 - self.eta**2 * frac)
            coef["noise_scale"] = self.eta * schedule.sigma(t_next) * jnp.sqrt(frac)
        return coef

    def init(self, x, ms):
        return x, ms

    def step(self, model, state, coef, key):
        x, ms = state
        x0, eps, ms = model(x, coef["t"], ms)
        a = expand_to(coef["alpha_next"], x).astype(x.dtype)
        s = expand_to(coef["sigma_next"], x).astype(x.dtype)
        x_next = a * x0 + s * eps
        if self.eta > 0:
            z = standard_normal(self.noise, key, x, coef["t"], coef["t_next"])
            x_next = x_next + expand_to(coef["noise_scale"], x).astype(x.dtype) * z
        return x_next, ms
