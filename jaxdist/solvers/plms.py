"""PLMS / PNDM (Liu et al. 2022, "pseudo numerical methods"): diffusers' ``PNDMScheduler``.

Each step is the DDIM transfer (the exact first-order step in ``rho = sigma / alpha``) with a
combination ``e`` of noise predictions:

    x_{i+1} = (alpha_{i+1} / alpha_i) x_i + alpha_{i+1} (rho_{i+1} - rho_i) e_i,
    e_i = sum_j w_pj eps_{i-j}    (iPNDM's fixed Adams-Bashforth weights ``[1]``, ``[3, -1]/2``, ..),

``p = min(i + 1, 4)``. The warm-up differs:

* ``warmup="heun"`` (``skip_prk_steps=True``, PLMS): the first step is a Heun step on the
  transfer, ``eps'`` at the DDIM predictor ``x'_1``, ``e_0 = (eps_0 + eps') / 2`` (``eps'``
  does not enter the history). NFE = ``n + 1``.
* ``warmup="prk"`` (``skip_prk_steps=False``, PNDM): the first three steps are pseudo Runge-Kutta
  4 steps, stages at the midpoint time ``m = (t_i + t_{i+1}) / 2`` (diffusers' half timestep):
  ``u_1 = T(x, eps_1; t_i -> m)``, ``u_2 = T(x, eps_2; t_i -> m)``, ``u_3 = T(x, eps_3; t_i ->
  t_{i+1})``, ``e = (eps_1 + 2 eps_2 + 2 eps_3 + eps_4) / 6`` (``eps_k`` at the stages, ``T``
  the transfer); only ``eps_1`` enters the history. NFE = ``n + 9`` (``n >= 4``).

The fixed weights assume a uniform step in ``rho``: the global order is 2.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .base import ExplicitStages, solver_dataclass
from .deis import IPNDM_WEIGHTS
from .primitives import check_noise_start, first_order_coefficients

__all__ = ["PLMS"]

_WARMUP_STEPS = {"heun": 1, "prk": 3}


@solver_dataclass
class PLMS(ExplicitStages):
    """PLMS-4 with diffusers' Heun first step or PNDM's three pseudo-RK4 steps (``warmup``;
    see the module docstring)."""

    warmup: str = "heun"
    space = "eps"
    history = 3

    def __post_init__(self):
        if self.warmup not in _WARMUP_STEPS:
            raise ValueError(f"PLMS: warmup={self.warmup!r}; use 'heun' or 'prk'.")

    @property
    def n_stages(self) -> int:
        return 2 if self.warmup == "heun" else 4

    @property
    def order(self) -> int:
        return 2

    def stages_per_step(self, n_steps):
        stages = np.ones(n_steps, np.int32)
        stages[:_WARMUP_STEPS[self.warmup]] = self.n_stages
        return stages

    def validate(self, schedule, grid):
        check_noise_start("PLMS", "eps", schedule, grid)
        n = int(np.shape(grid)[0]) - 1
        if self.warmup == "prk" and n < 4:
            raise ValueError(f"PLMS(warmup='prk') needs at least 4 steps (got {n}).")

    def stage_table(self, schedule, grid):
        s, t = grid[:-1], grid[1:]
        n, S = s.shape[0], self.n_stages
        warm, last = _WARMUP_STEPS[self.warmup], S - 1
        a, c1 = first_order_coefficients("eps", schedule, s, t)
        weights = np.zeros((n, 4))
        for i in range(n):
            p = min(i + 1, 4)
            weights[i, :p] = IPNDM_WEIGHTS[p - 1]
        weights[:warm] = 0.0
        if self.warmup == "heun":  # (eps_0 + eps') / 2, eps' the second stage's output
            weights[0, :2] = 0.5
        else:  # (eps_1 + 2 eps_2 + 2 eps_3 + eps_4) / 6
            weights[:warm] = np.array([1, 2, 2, 1]) / 6
        b = c1[:, None] * jnp.asarray(weights, grid.dtype)
        c = jnp.zeros((n, S), grid.dtype).at[:, last].set(a)
        w = jnp.zeros((n, S, S), grid.dtype).at[:warm, last, :].set(b[:warm, :S])
        w = w.at[warm:, last, 0].set(b[warm:, 0])
        # steps after the warm-up: the history holds eps_{i-1}, eps_{i-2}, eps_{i-3}
        v = jnp.zeros((n, S, 3), grid.dtype).at[warm:, last, :].set(b[warm:, 1:])
        if self.warmup == "heun":  # stage 1: the DDIM predictor at the step's end
            stage_t = jnp.stack([s, t], 1)
            c, w = c.at[:, 0].set(a), w.at[:, 0, 0].set(c1)
        else:  # stages at the midpoint (twice), then the end, each from x with the last eps
            m = 0.5 * (s + t)
            a_m, c1_m = first_order_coefficients("eps", schedule, s, m)
            stage_t = jnp.stack([s, m, m, t], 1)
            c = c.at[:, 0].set(a_m).at[:, 1].set(a_m).at[:, 2].set(a)
            w = w.at[:, 0, 0].set(c1_m).at[:, 1, 1].set(c1_m).at[:, 2, 2].set(c1)
        return stage_t, c, w, v
