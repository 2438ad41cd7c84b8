"""The EDM stochastic sampler (Karras et al. 2022, Algorithm 2) on any schedule.

In the scaled space ``x~ = x / alpha`` with noise level ``s = sigma / alpha``, step ``i``:

1. churn: ``gamma = min(S_churn / N, sqrt(2) - 1)`` if ``S_min <= s_i <= S_max`` else 0;
   ``s^ = (1 + gamma) s_i``, ``x^ = x~ + S_noise sqrt(s^^2 - s_i^2) z``;
2. Euler: ``d = (x^ - D(x^, s^)) / s^``, ``x' = x^ + (s_{i+1} - s^) d``;
3. Heun (unless ``s_{i+1} = 0``): ``d' = (x' - D(x', s_{i+1})) / s_{i+1}``,
   ``x~_{i+1} = x^ + (s_{i+1} - s^) (d + d') / 2``.

``D`` is the data prediction ``x0_hat``. With ``S_churn = 0`` it is EDM's deterministic Heun
sampler. Every step evaluates the model twice except the last, which is an Euler step
(``heun_final=False``, as EDM on grids ending at ``t = 0``): NFE = 2N - 1 (2N with
``heun_final=True``, which needs ``grid[-1] > 0``).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..noise import standard_normal
from ..schedules import expand_to
from .base import Solver, SolverState, solver_dataclass
from .primitives import concrete

Array = jax.Array

__all__ = ["EDMStochastic", "EDMStochasticCoefs"]


class EDMStochasticCoefs(NamedTuple):
    """Times, EDM noise levels ``s = sigma/alpha`` and ``alpha`` at ``t``, ``t_hat``, ``t_next``;
    ``churn = S_noise sqrt(s_hat^2 - s^2)``; ``stages`` (static): 1 = Euler, 2 = Heun."""

    t: Array
    t_next: Array
    t_hat: Array
    s_hat: Array
    s_next: Array
    alpha: Array
    alpha_hat: Array
    alpha_next: Array
    churn: Array
    stages: Any


@solver_dataclass
class EDMStochastic(Solver):
    """Karras et al. (2022) Algorithm 2: churn noise then a Heun step (see the module docstring).

    Defaults are EDM's ImageNet-64 setting (``S_churn=40, S_min=0.05, S_max=50,
    S_noise=1.003``); ``S_churn=0`` is the deterministic EDM Heun sampler (order 2). With churn,
    strong and weak order 1.
    """

    S_churn: float = 40.0
    S_min: float = 0.05
    S_max: float = 50.0
    S_noise: float = 1.003
    heun_final: bool = False
    noise: Any = None

    def __post_init__(self):
        if self.S_churn < 0 or self.S_noise < 0:
            raise ValueError(f"EDMStochastic: S_churn={self.S_churn} and S_noise={self.S_noise} "
                             "must be >= 0.")

    @property
    def order(self) -> int:
        return 1 if self.stochastic else 2

    claimed_strong_order = 1.0
    claimed_weak_order = 1.0

    @property
    def stochastic(self) -> bool:
        return self.S_churn > 0 and self.S_noise > 0



    def stages_per_step(self, n_steps: int) -> np.ndarray:
        stages = np.full(n_steps, 2, np.int32)
        if not self.heun_final and n_steps:
            stages[-1] = 1
        return stages

    def nfe(self, n_steps):
        return int(np.sum(self.stages_per_step(int(n_steps))))

    def validate(self, schedule, grid):
        last = concrete(jnp.asarray(grid)[-1])
        if self.heun_final and last is not None and float(last) == 0.0:
            raise ValueError("EDMStochastic(heun_final=True) cannot correct a step to t = 0; use "
                             "heun_final=False or end the grid at t_min > 0.")

    def coefficients(self, schedule, grid):
        t, t_next = grid[:-1], grid[1:]
        n = t.shape[0]
        s, s_next = schedule.sigma_over_alpha(t), schedule.sigma_over_alpha(t_next)
        inside = (s >= self.S_min) & (s <= self.S_max)
        gamma = jnp.where(inside, min(self.S_churn / n, math.sqrt(2.0) - 1.0), 0.0)
        s_hat = s * (1.0 + gamma)
        t_hat = jnp.where(gamma > 0, schedule.t_from_log_snr(-2.0 * jnp.log(s_hat)), t)
        # sqrt(s_hat^2 - s^2) written so that gamma = 0 gives exactly 0 under XLA fusion
        churn = self.S_noise * s * jnp.sqrt(gamma * (2.0 + gamma))
        return EDMStochasticCoefs(t, t_next, t_hat, s_hat, s_next, schedule.alpha(t),
                                  schedule.alpha(t_hat), schedule.alpha(t_next), churn,
                                  self.stages_per_step(n))

    def init(self, x, model_state):
        return SolverState(x, model_state)

    def step(self, model, state, coefs, key):
        x, ms = state

        def ex(v):
            return expand_to(v, x).astype(x.dtype)

        x_hat = x / ex(coefs.alpha)
        if self.stochastic:
            z = standard_normal(self.noise, key, x, coefs.t, coefs.t_next)
            x_hat = x_hat + ex(coefs.churn) * z
        x0, _, ms = model(ex(coefs.alpha_hat) * x_hat, coefs.t_hat, ms)
        ds = ex(coefs.s_next) - ex(coefs.s_hat)
        d = (x_hat - x0) / ex(coefs.s_hat)
        x_next = x_hat + ds * d
        if int(coefs.stages) == 2:
            x0_2, _, ms = model(ex(coefs.alpha_next) * x_next, coefs.t_next, ms)
            d2 = (x_next - x0_2) / ex(coefs.s_next)
            x_next = x_hat + ds * 0.5 * (d + d2)
        return SolverState(ex(coefs.alpha_next) * x_next, ms)
