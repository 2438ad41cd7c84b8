"""DDIM (Song et al. 2021): ``x_t = alpha_t x0_hat + sqrt(sigma_t^2 - c^2) eps_hat + c z``.

The simplest solver, and the one to copy when adding a new one: a frozen dataclass with
``order``, ``coefficients`` (the grid's times), ``init`` and ``step``. With ``eta = 0``
(default) it is deterministic and equals DPM-Solver-1 and DPM-Solver++-1 (first-order
exponential integrators), which the tests check to 1e-10. With ``eta > 0`` it re-noises:
``c = eta sigma_t sqrt(1 - exp(lambda_s - lambda_t))`` (step ``s -> t``, ``lambda`` the log-SNR);
``eta = 1`` is DDPM ancestral sampling on the same grid (see ``jaxdist.solvers.sde``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ..noise import standard_normal
from ..schedules import expand_to
from .base import Solver, SolverState, solver_dataclass
from .primitives import clipped_log_snr

Array = jax.Array

__all__ = ["DDIM", "DDIMCoefs"]


class DDIMCoefs(NamedTuple):
    """``x_next = alpha_next x0_hat + sigma_next eps_hat + noise_scale z``."""

    t: Array
    t_next: Array
    alpha_next: Array
    sigma_next: Array
    noise_scale: Array


@solver_dataclass
class DDIM(Solver):
    """DDIM; first order. ``x_{i+1} = alpha(t_{i+1}) x0_hat + sigma(t_{i+1}) eps_hat`` for
    ``eta = 0``; ``eta > 0`` adds fresh noise (stochastic: needs a key; ``noise`` is an optional
    noise source such as ``jd.noise.BrownianPath``). Strong and weak order 1."""

    eta: float = 0.0
    noise: Any = None

    def __post_init__(self):
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"DDIM: eta={self.eta} must be in [0, 1] (0 = DDIM, 1 = DDPM).")

    @property
    def order(self) -> int:
        return 1

    claimed_strong_order = 1.0
    claimed_weak_order = 1.0

    @property
    def stochastic(self) -> bool:
        return self.eta > 0



    def coefficients(self, schedule, grid):
        t, t_next = grid[:-1], grid[1:]
        alpha_next, sigma_next = schedule.alpha(t_next), schedule.sigma(t_next)
        # 1 - exp(lambda_s - lambda_t) = 1 - SNR_s / SNR_t, the DDPM posterior variance ratio.
        frac = -jnp.expm1(clipped_log_snr(schedule, t) - clipped_log_snr(schedule, t_next))
        if self.eta > 0:
            noise_scale = self.eta * sigma_next * jnp.sqrt(frac)
            sigma_next = sigma_next * jnp.sqrt(1.0 - self.eta**2 * frac)
        else:
            noise_scale = jnp.zeros_like(sigma_next)
        return DDIMCoefs(t, t_next, alpha_next, sigma_next, noise_scale)

    def init(self, x, model_state):
        return SolverState(x, model_state)

    def step(self, model, state, coefs, key):
        x, ms = state
        x0, eps, ms = model(x, coefs.t, ms)
        a = expand_to(coefs.alpha_next, x).astype(x.dtype)
        s = expand_to(coefs.sigma_next, x).astype(x.dtype)
        x_next = a * x0 + s * eps
        if self.eta > 0:
            z = standard_normal(self.noise, key, x, coefs.t, coefs.t_next)
            x_next = x_next + expand_to(coefs.noise_scale, x).astype(x.dtype) * z
        return SolverState(x_next, ms)
