"""Reverse-SDE samplers: Euler-Maruyama and DDPM ancestral sampling.

The reverse-time diffusion SDE of ``x_t = alpha(t) x0 + sigma(t) eps`` (Song et al. 2021) is

    dx = [f(t) x - g(t)^2 score(x, t)] dt + g(t) dW,    score = -eps_hat / sigma,

run from ``t_max`` down to ``t_min`` (``dt < 0``, ``W`` a reverse-time Brownian motion). The
noise is additive (``g`` does not depend on ``x``), so Euler-Maruyama is also the Milstein
scheme: strong order 1 and weak order 1.

Every stochastic solver takes ``noise``: ``None`` (independent per-sample draws from the
per-step key, :func:`jaxdist.noise.normal_like`) or a noise source such as
:class:`jaxdist.noise.BrownianPath` (one path per example, consistent across step counts).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ..noise import standard_normal
from ..schedules import expand_to
from .base import Solver, SolverState, solver_dataclass
from .ddim import DDIM

Array = jax.Array

__all__ = ["EulerMaruyama", "DDPMAncestral", "EulerMaruyamaCoefs"]


class EulerMaruyamaCoefs(NamedTuple):
    """``x_next = a x + b eps_hat + c z``."""

    t: Array
    t_next: Array
    a: Array
    b: Array
    c: Array


@solver_dataclass
class EulerMaruyama(Solver):
    """Euler-Maruyama on the reverse SDE; ``h = t - t_next > 0``:

    ``x_next = x - h (f x + g^2 eps_hat / sigma) + sqrt(g^2 h) z`` with ``f, g, sigma`` at ``t``.
    One model evaluation per step. Strong order 1 (additive noise), weak order 1.
    """

    noise: Any = None

    @property
    def order(self) -> int:
        return 1

    claimed_strong_order = 1.0
    claimed_weak_order = 1.0

    @property
    def stochastic(self) -> bool:
        return True

    def coefficients(self, schedule, grid):
        t, t_next = grid[:-1], grid[1:]
        h = t - t_next
        g2 = schedule.g2(t)
        return EulerMaruyamaCoefs(t, t_next, 1.0 - h * schedule.f(t), -h * g2 / schedule.sigma(t),
                                  jnp.sqrt(g2 * h))

    def init(self, x, model_state):
        return SolverState(x, model_state)

    def step(self, model, state, coefs, key):
        x, ms = state
        _, eps, ms = model(x, coefs.t, ms)
        z = standard_normal(self.noise, key, x, coefs.t, coefs.t_next)
        a, b, c = (expand_to(v, x).astype(x.dtype) for v in (coefs.a, coefs.b, coefs.c))
        return SolverState(a * x + b * eps + c * z, ms)


@solver_dataclass
class DDPMAncestral(DDIM):
    """DDPM ancestral sampling (Ho et al. 2020) on any grid: a draw from the posterior
    ``q(x_s | x_t, x0 = x0_hat)``, i.e. ``x_s = alpha_s x0_hat + sigma_s e^{(l_t - l_s)/2} eps_hat
    + sigma_s sqrt(1 - e^{l_t - l_s}) z`` (``l`` the log-SNR). Equal to ``DDIM(eta=1)`` and to
    SDE-DPM-Solver++-1. Strong order 1, weak order 1."""

    eta: float = 1.0
    noise: Any = None
