"""The EDM samplers (Karras et al. 2022, Alg. 1): Euler and Heun in the EDM variables, on any
schedule.

With the EDM noise level ``s = sigma / alpha`` and the scaled state ``x~ = x / alpha``, the
probability-flow ODE of every schedule ``x = alpha x0 + sigma eps`` is

    dx~/ds = (x~ - x0_hat(x, t)) / s = eps_hat(x, t),

(for EDM itself ``alpha = 1``, ``s = t``). A step from ``s_i`` to ``s_{i+1}`` (``ds = s_{i+1} - s_i``):

* **Euler**: ``x~_{i+1} = x~_i + ds eps_i``, written in data-prediction form
  ``x_{i+1} = (sigma_{i+1} / sigma_i) x_i + (alpha_{i+1} - sigma_{i+1} alpha_i / sigma_i) x0_i``,
  which is finite from pure noise (``alpha_i = 0``) and returns ``alpha x0_hat`` on a step to
  ``s = 0``. This is exactly DDIM (and DPM-Solver(++)-1): DDIM *is* Euler in ``(s, x~)``.
* **Heun**: Euler predictor ``x~' = x~_i + ds eps_i``, then
  ``x~_{i+1} = x~_i + ds (eps_i + eps(x~', s_{i+1})) / 2``. Second order; like EDM's sampler the
  last step is an Euler step (``heun_final=False``), so ``N`` steps cost ``2N - 1`` evaluations.
  The correction cannot be taken on a step to ``s = 0`` (the model is not defined there).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .base import ExplicitStages, solver_dataclass
from .primitives import check_alpha_start, concrete, first_order_coefficients

Array = jax.Array

__all__ = ["EulerEDM", "HeunEDM", "Euler", "Heun"]


@solver_dataclass
class EulerEDM(ExplicitStages):
    """Euler in the EDM variables (first order, one evaluation per step); equal to DDIM.

    ``x_{i+1} = (sigma_{i+1}/sigma_i) x_i + (alpha_{i+1} - sigma_{i+1} alpha_i/sigma_i) x0_hat``.
    """

    space = "x0"

    @property
    def order(self) -> int:
        return 1

    def stage_table(self, schedule, grid):
        s, t = grid[:-1], grid[1:]
        ratio, c1 = first_order_coefficients("x0", schedule, s, t)
        n = s.shape[0]
        return s[:, None], ratio[:, None], c1[:, None, None], jnp.zeros((n, 1, 0), s.dtype)


@solver_dataclass
class HeunEDM(ExplicitStages):
    """Heun (EDM's 2nd-order sampler) in ``(s, x~)``: trapezoidal corrector on an Euler predictor.

    In noise-prediction form, with ``ds = s_{i+1} - s_i`` and ``r = alpha_{i+1} / alpha_i``:
    ``x' = r x + alpha_{i+1} ds eps_i``, ``x_{i+1} = r x + alpha_{i+1} ds (eps_i + eps(x', t_{i+1})) / 2``.

    ``heun_final=False`` (EDM, k-diffusion, diffusers ``HeunDiscreteScheduler``): the last step is
    an Euler step, so ``N`` steps use ``2N - 1`` evaluations (needed when the grid ends at ``t = 0``,
    where the model is not defined). ``heun_final=True`` corrects the last step too (``2N``
    evaluations; needs ``grid[-1] > 0``). Needs ``alpha(grid[0]) > 0``. Order 2 either way.
    """

    heun_final: bool = False
    space = "eps"

    @property
    def order(self) -> int:
        return 2

    @property
    def n_stages(self) -> int:
        return 2

    def stages_per_step(self, n_steps):
        stages = np.full(n_steps, 2, np.int32)
        if not self.heun_final and n_steps:
            stages[-1] = 1
        return stages

    def validate(self, schedule, grid):
        check_alpha_start(type(self).__name__, schedule, grid)
        last = concrete(jnp.asarray(grid)[-1])
        if self.heun_final and last is not None and float(last) == 0.0:
            raise ValueError("HeunEDM(heun_final=True) cannot correct a step to t = 0 (the model "
                             "is not defined at sigma = 0); use heun_final=False or end the grid "
                             "at t_min > 0.")

    def stage_table(self, schedule, grid):
        t, t_next = grid[:-1], grid[1:]
        n = t.shape[0]
        a, a_next = schedule.alpha(t), schedule.alpha(t_next)
        ds = schedule.sigma_over_alpha(t_next) - schedule.sigma_over_alpha(t)
        ratio, step = a_next / a, a_next * ds  # Euler: x_{i+1} = ratio x_i + step * eps_i
        euler = jnp.asarray(self.stages_per_step(n) == 1)
        c = jnp.stack([ratio, ratio], 1)
        w = jnp.zeros((n, 2, 2), t.dtype).at[:, 0, 0].set(step)
        w = w.at[:, 1, 0].set(jnp.where(euler, step, 0.5 * step))
        w = w.at[:, 1, 1].set(jnp.where(euler, 0.0, 0.5 * step))
        return jnp.stack([t, t_next], 1), c, w, jnp.zeros((n, 2, 0), t.dtype)


#: Short names (k-diffusion / diffusers): ``Euler`` and ``Heun`` are the EDM samplers.
Euler = EulerEDM
Heun = HeunEDM
