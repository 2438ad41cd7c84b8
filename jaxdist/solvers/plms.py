"""PLMS (Liu et al. 2022, "pseudo linear multistep"): diffusers' ``PNDMScheduler`` with
``skip_prk_steps=True``, the Stable Diffusion 1.x default.

Each step is the DDIM transfer (the exact first-order step in ``rho = sigma / alpha``) with an
Adams-Bashforth combination ``e`` of the past noise predictions:

    x_{i+1} = (alpha_{i+1} / alpha_i) x_i + alpha_{i+1} (rho_{i+1} - rho_i) e_i,
    e_i = sum_j w_pj eps_{i-j}    (iPNDM's fixed weights ``[1]``, ``[3, -1]/2``, ..),

``p = min(i + 1, 4)``, except the first step, a Heun step on the transfer: ``eps'`` at the DDIM
predictor ``x'_1``, then ``e_0 = (eps_0 + eps')/2`` (``eps'`` does not enter the history).
NFE = ``n + 1``. The fixed weights assume a uniform step in ``rho``: the global order is 2.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .base import ExplicitStages, solver_dataclass
from .deis import IPNDM_WEIGHTS
from .primitives import check_noise_start, first_order_coefficients

__all__ = ["PLMS"]


@solver_dataclass
class PLMS(ExplicitStages):
    """PLMS-4 with diffusers' Heun first step (see the module docstring)."""

    space = "eps"
    history = 3

    @property
    def n_stages(self) -> int:
        return 2

    @property
    def order(self) -> int:
        return 2

    def stages_per_step(self, n_steps):
        stages = np.ones(n_steps, np.int32)
        stages[0] = 2
        return stages

    def validate(self, schedule, grid):
        check_noise_start("PLMS", "eps", schedule, grid)

    def stage_table(self, schedule, grid):
        s, t = grid[:-1], grid[1:]
        n = s.shape[0]
        a, c1 = first_order_coefficients("eps", schedule, s, t)
        weights = np.zeros((n, 4))
        for i in range(n):
            p = min(i + 1, 4)
            weights[i, :p] = IPNDM_WEIGHTS[p - 1]
        weights[0, :2] = 0.5  # Heun: (eps_0 + eps') / 2, eps' the second stage's output
        b = c1[:, None] * jnp.asarray(weights, grid.dtype)
        stage_t = jnp.stack([s, t], 1)  # the second stage (step 0 only) at the step's end
        c = jnp.stack([a, a], 1)
        w = jnp.zeros((n, 2, 2), grid.dtype).at[:, 0, 0].set(c1).at[:, 1, 0].set(b[:, 0])
        w = w.at[0, 1, 1].set(b[0, 1])  # step 0: eps' of the second stage
        # steps >= 1: the history holds eps_{i-1}, eps_{i-2}, eps_{i-3}
        v = jnp.zeros((n, 2, 3), grid.dtype).at[1:, 1, :].set(b[1:, 1:])
        return stage_t, c, w, v
