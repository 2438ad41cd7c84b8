"""The EDM stochastic sampler (Karras et al. 2022, Algorithm 2) on any schedule.

In the scaled space ``x~ = x / alpha`` with noise level ``s = sigma / alpha``, step ``i``:

1. churn: ``gamma = min(S_churn / N, sqrt(2) - 1)`` if ``S_min <= s_i <= S_max`` else 0;
   ``s^ = (1 + gamma) s_i``, ``x^ = x~ + S_noise sqrt(s^^2 - s_i^2) z``;
2. Euler: ``d = (x^ - D(x^, s^)) / s^``, ``x' = x^ + (s_{i+1} - s^) d``;
3. Heun (unless ``s_{i+1} = 0``): ``d' = (x' - D(x', s_{i+1})) / s_{i+1}``,
   ``x~_{i+1} = x^ + (s_{i+1} - s^) (d + d') / 2``.

``D`` is the data prediction ``x0_hat``. With ``S_churn = 0`` it is EDM's deterministic Heun
sampler. Every step evaluates the model twice (the last step's second evaluation is discarded
when it ends at ``t = 0``), so NFE = 2N.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import jax.numpy as jnp

from ..noise import standard_normal
from ..schedules import expand_to
from .base import Solver, solver_dataclass

__all__ = ["EDMStochastic"]


@solver_dataclass
class EDMStochastic(Solver):
    """Karras et al. (2022) Algorithm 2: churn noise then a Heun step (see the module docstring).

    Defaults are EDM's ImageNet-64 setting (``S_churn=40, S_min=0.05, S_max=50,
    S_noise=1.003``); ``S_churn=0`` is the deterministic EDM Heun sampler.
    """

    S_churn: float = 40.0
    S_min: float = 0.05
    S_max: float = 50.0
    S_noise: float = 1.003
    noise: Any = None
    strong_order: ClassVar[float] = 1.0
    weak_order: ClassVar[float] = 1.0

    def __post_init__(self):
        if self.S_churn < 0 or self.S_noise < 0:
            raise ValueError(f"EDMStochastic: S_churn={self.S_churn} and S_noise={self.S_noise} "
                             "must be >= 0.")

    @property
    def order(self) -> int:
        return 2

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return self.S_churn > 0 and self.S_noise > 0

    @property
    def nfe_per_step(self) -> int:
        return 2

    def coefficients(self, schedule, grid):
        t, t_next = grid[:-1], grid[1:]
        n = t.shape[0]
        s, s_next = schedule.sigma_over_alpha(t), schedule.sigma_over_alpha(t_next)
        inside = (s >= self.S_min) & (s <= self.S_max)
        gamma = jnp.where(inside, min(self.S_churn / n, math.sqrt(2.0) - 1.0), 0.0)
        s_hat = s * (1.0 + gamma)
        t_hat = jnp.where(gamma > 0, schedule.t_from_log_snr(-2.0 * jnp.log(s_hat)), t)
        final = t_next == 0
        return {"t": t, "t_next": t_next, "t_hat": t_hat, "s_hat": s_hat, "s_next": s_next,
                "alpha": schedule.alpha(t), "alpha_hat": schedule.alpha(t_hat),
                "alpha_next": schedule.alpha(t_next),
                # sqrt(s_hat^2 - s^2) written so that gamma = 0 gives exactly 0 under XLA fusion
                "churn": self.S_noise * s * jnp.sqrt(gamma * (2.0 + gamma)), "final": final,
                "t_eval": jnp.where(final, t_hat, t_next),
                "s_eval": jnp.where(final, 1.0, s_next)}

    def init(self, x, ms):
        return x, ms

    def step(self, model, state, coef, key):
        x, ms = state
        c = {k: expand_to(v, x).astype(x.dtype) for k, v in coef.items() if k != "final"}
        x_hat = x / c["alpha"]
        if self.stochastic:
            z = standard_normal(self.noise, key, x, coef["t"], coef["t_next"])
            x_hat = x_hat + c["churn"] * z
        x0, _, ms = model(c["alpha_hat"] * x_hat, coef["t_hat"], ms)
        d = (x_hat - x0) / c["s_hat"]
        x_euler = x_hat + (c["s_next"] - c["s_hat"]) * d
        x0_2, _, ms = model(c["alpha_next"] * x_euler, coef["t_eval"], ms)
        d2 = (x_euler - x0_2) / c["s_eval"]
        x_heun = x_hat + (c["s_next"] - c["s_hat"]) * 0.5 * (d + d2)
        x_next = jnp.where(coef["final"], x_euler, x_heun)
        return c["alpha_next"] * x_next, ms
