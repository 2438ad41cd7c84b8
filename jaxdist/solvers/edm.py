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

from ..schedules import Schedule
from .base import ExplicitStages, Solver, solver_dataclass
from .dpm_solver import _first_order

Array = jax.Array

__all__ = ["EulerEDM", "HeunEDM", "Euler", "Heun"]


def _concrete(x) -> np.ndarray | None:
    """``x`` as a NumPy array, or ``None`` when it is traced."""
    try:
        return np.asarray(x, dtype=np.float64)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def check_alpha_start(name: str, schedule: Schedule, grid: Array) -> None:
    """Raises if ``alpha(grid[0]) = 0`` (``s = sigma/alpha`` infinite), e.g. rectified flow at
    ``t = 1``; used by the solvers that work in ``x~ = x / alpha``."""
    a0 = _concrete(schedule.alpha(jnp.asarray(grid)[0]))
    if a0 is not None and float(a0) == 0.0:
        raise ValueError(
            f"{name} works in x/alpha and cannot start where alpha = 0 (grid[0]={float(grid[0])}); "
            "start the grid below t_max (e.g. t_start=0.999 for RectifiedFlow) or use EulerEDM / "
            "DPMSolverPP, which step exactly from pure noise.")


@solver_dataclass
class EulerEDM(ExplicitStages):
    """Euler in the EDM variables (first order, one evaluation per step); equal to DDIM.

    ``x_{i+1} = (sigma_{i+1}/sigma_i) x_i + (alpha_{i+1} - sigma_{i+1} alpha_i/sigma_i) x0_hat``.
    """

    space = "x0"
    nfe_per_step = 1

    @property
    def order(self) -> int:
        return 1

    def tableau(self, schedule, grid):
        s, t = grid[:-1], grid[1:]
        ratio, c1 = _first_order("x0", schedule, s, t)
        return (s[:, None], jnp.stack([jnp.ones_like(ratio), ratio], 1),
                jnp.stack([jnp.zeros_like(c1), c1], 1)[:, :, None])


@solver_dataclass
class _HeunStages(ExplicitStages):
    """Heun steps in ``(s, x~)`` as a two-stage table on noise predictions (used by HeunEDM)."""

    space = "eps"

    @property
    def order(self) -> int:
        return 2

    def tableau(self, schedule, grid):
        t, t_next = grid[:-1], grid[1:]
        a, a_next = schedule.alpha(t), schedule.alpha(t_next)
        ds = schedule.sigma_over_alpha(t_next) - schedule.sigma_over_alpha(t)
        ratio, step = a_next / a, a_next * ds  # x_{i+1} = ratio x_i + step * eps
        zero = jnp.zeros_like(ratio)
        c = jnp.stack([jnp.ones_like(ratio), ratio, ratio], 1)
        w = jnp.stack([jnp.stack([zero, zero], 1),
                       jnp.stack([step, zero], 1),
                       jnp.stack([0.5 * step, 0.5 * step], 1)], 1)
        return jnp.stack([t, t_next], 1), c, w


@solver_dataclass
class HeunEDM(Solver):
    """Heun (EDM's 2nd-order sampler) in ``(s, x~)``: trapezoidal corrector on an Euler predictor.

    ``heun_final=False`` (EDM, diffusers ``HeunDiscreteScheduler``): the last step is an Euler
    step, so ``N`` steps use ``2N - 1`` evaluations; it must be when the grid ends at ``t = 0``.
    ``heun_final=True`` corrects the last step too (``2N`` evaluations; needs ``grid[-1] > 0``).
    Needs ``alpha(grid[0]) > 0``.
    """

    heun_final: bool = False
    nfe_per_step = 2

    @property
    def order(self) -> int:
        return 2

    def plan(self, n_steps, grid):
        if self.heun_final:
            return [(n_steps, _HeunStages())]
        if n_steps == 1:
            return [(1, EulerEDM())]
        return [(n_steps - 1, _HeunStages()), (1, EulerEDM())]

    def validate(self, schedule, grid):
        check_alpha_start(type(self).__name__, schedule, grid)
        last = _concrete(jnp.asarray(grid)[-1])
        if self.heun_final and last is not None and float(last) == 0.0:
            raise ValueError("HeunEDM(heun_final=True) cannot correct a step to t = 0 (the model "
                             "is not defined at sigma = 0); use heun_final=False or end the grid "
                             "at t_min > 0.")


#: Short names (k-diffusion / diffusers): ``Euler`` and ``Heun`` are the EDM samplers.
Euler = EulerEDM
Heun = HeunEDM
