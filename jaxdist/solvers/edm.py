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

__all__ = ["EulerEDM", "HeunEDM", "Euler", "Heun", "HeunPP2"]


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


@solver_dataclass
class HeunPP2(ExplicitStages):
    """ComfyUI's ``sample_heunpp2`` (Heun++): Euler predictors to the next two noise levels,
    then a weighted average of the three slopes, in ``(s, x~)``.

    Step ``i`` (``s_k = sigma/alpha`` at ``grid[k]``, ``d_k = eps`` at the predicted points,
    ``ds = s_{i+1} - s_i``): ``x~' = x~ + ds d_0`` (at ``s_{i+1}``), ``x~'' = x~' + (s_{i+2} -
    s_{i+1}) d_1`` (at ``s_{i+2}``) and ``x~_{i+1} = x~ + ds (w_0 d_0 + w_1 d_1 + w_2 d_2)`` with
    ``w_1 = s_{i+1} / (3 s_0)``, ``w_2 = s_{i+2} / (3 s_0)``, ``w_0 = 1 - w_1 - w_2`` (3
    evaluations); the second-to-last step is Heun with ``w_1 = s_{i+1} / (2 s_0)`` (2
    evaluations), the last one Euler (1). ``N`` steps cost ``3N - 3`` evaluations (``N >= 2``).
    The weights are not Heun's ``1/2`` in the limit: first order. Needs ``alpha(grid[0]) > 0``.
    """

    space = "eps"

    @property
    def order(self) -> int:
        return 1

    @property
    def n_stages(self) -> int:
        return 3

    def stages_per_step(self, n_steps):
        stages = np.full(n_steps, 3, np.int32)
        stages[-2:] = [2, 1][-min(n_steps, 2):] if n_steps else []
        return stages

    def validate(self, schedule, grid):
        check_alpha_start(type(self).__name__, schedule, grid)

    def stage_table(self, schedule, grid):
        n = grid.shape[0] - 1
        t0, t1 = grid[:-1], grid[1:]
        t2 = jnp.concatenate([grid[2:], grid[-1:]])  # unused on the last step
        a0, a1, a2 = schedule.alpha(t0), schedule.alpha(t1), schedule.alpha(t2)
        rho = schedule.sigma_over_alpha
        s0, s1, s2 = rho(t0), rho(t1), rho(t2)
        ds, ds2 = s1 - s0, s2 - s1
        stages = self.stages_per_step(n)
        three, two = jnp.asarray(stages == 3), jnp.asarray(stages == 2)
        first = rho(grid[0])
        w1 = jnp.where(three, s1 / (3.0 * first), jnp.where(two, s1 / (2.0 * first), 0.0))
        w2 = jnp.where(three, s2 / (3.0 * first), 0.0)
        w0 = 1.0 - w1 - w2
        c = jnp.stack([a1 / a0, a2 / a0, a1 / a0], 1)
        w = jnp.zeros((n, 3, 3), t0.dtype).at[:, 0, 0].set(a1 * ds)
        w = w.at[:, 1, 0].set(a2 * ds).at[:, 1, 1].set(a2 * ds2)
        w = w.at[:, 2, 0].set(a1 * ds * w0).at[:, 2, 1].set(a1 * ds * w1)
        w = w.at[:, 2, 2].set(a1 * ds * w2)
        return jnp.stack([t0, t1, t2], 1), c, w, jnp.zeros((n, 3, 0), t0.dtype)
