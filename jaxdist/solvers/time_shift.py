"""The Time-Shift sampler (Li et al. 2023, "Alleviating Exposure Bias in Diffusion Models through
Sampling with Shifted Time Steps", TS-DPM): the model sees a shifted time, the integrator not.

At a step from ``t`` with the current sample ``x`` (one example ``x_b``), the model is evaluated
at the time ``t_s`` of a window around ``t`` whose forward variance best matches the variance of
``x_b`` estimated over its features:

    var_b = Var_features(x_b),    v(u) = alpha(u)^2 data_var + sigma(u)^2,
    t_s = argmin_{u in U(t)} (var_b - v(u))^2    if t > cutoff, else t,

``U(t) = clip(t + window * linspace(-1, 1, n_candidates), t_min, t_max)`` (a static table:
``n_candidates`` odd, so ``t`` itself is a candidate). The base solver then takes its own step
from ``t`` with the model outputs ``(x0_hat, eps_hat)`` at ``(x, t_s)``. ``data_var = 0`` is
the reference code's ``1 - alpha_bar`` (TS-DPM ``sampler/deis_sampler.py``,
``apply_time_shift``: per-image ``th.var`` over pixels against ``alpha_list = 1 - alphas_cump``
in a window of ``+-window_size`` of the 1000 discrete steps, shifted only for
``t_next > cut_off_value``); this module works in the schedule's continuous time.

The estimate needs many features per example (images); on low-dimensional data it is noise.
Bases: solvers that evaluate the model once per step at the step's start ``(x, t)``:
:class:`~jaxdist.solvers.DDIM` (any ``eta``), multistep :class:`~jaxdist.solvers.DPMSolverPP` /
:class:`~jaxdist.solvers.DPMSolver` (no singlestep warm-up) and :class:`~jaxdist.solvers.UniPC`.
``window = 0`` or ``cutoff >= t_max`` is the base solver exactly.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .base import ModelState, Solver, Wrapped, solver_dataclass
from .ddim import DDIM
from .dpm_solver import DPMFamily
from .unipc import UniPC

Array = jax.Array

__all__ = ["TimeShift", "shifted_times"]


def shifted_times(schedule, x: Array, t: Array, window: float, cutoff: float,
                  n_candidates: int, data_var: float = 0.0) -> Array:
    """``t_s [batch]`` for ``x [batch, ...]`` at time ``t`` (module docstring)."""
    offsets = jnp.linspace(-1.0, 1.0, n_candidates, dtype=jnp.result_type(t))
    cand = jnp.clip(t + window * offsets, schedule.t_min, schedule.t_max)
    cand = cand.at[n_candidates // 2].set(t)  # the window's centre is t itself, exactly
    v = schedule.alpha(cand) ** 2 * data_var + schedule.sigma(cand) ** 2  # [C]
    var = jnp.var(x.reshape(x.shape[0], -1), axis=-1)  # [B]
    best = cand[jnp.argmin((var[:, None] - v[None, :].astype(var.dtype)) ** 2, axis=1)]
    return jnp.where(t > cutoff, best, jnp.broadcast_to(t, best.shape)).astype(jnp.result_type(t))


class _ShiftedModel:
    """``model`` evaluated at the shifted per-example time instead of the step's ``t``."""

    def __init__(self, model, solver: "TimeShift"):
        self.model, self.solver, self.schedule = model, solver, model.schedule

    def __call__(self, x: Array, t: Array, ms: ModelState):
        s = self.solver
        if s.window == 0:  # static: no shift at all
            return self.model(x, t, ms)
        t_s = shifted_times(self.schedule, x, jnp.asarray(t), s.window, s.cutoff, s.n_candidates,
                            s.data_var)
        return self.model(x, t_s, ms)


def _supported(base: Any) -> bool:
    if isinstance(base, (DDIM, UniPC)):
        return True
    return isinstance(base, DPMFamily) and base.method == "multistep" and base.n_stages == 1


@solver_dataclass
class TimeShift(Wrapped):
    """``base`` with the model fed the variance-matched time ``t_s`` (module docstring).

    Args:
      base: DDIM, multistep DPM-Solver(++) (one evaluation per step) or UniPC.
      window: half-width of the search window in the schedule's time (0: no shift).
      cutoff: shift only at steps starting above this time (``>= t_max``: never).
      n_candidates: odd number of candidate times in the window (static table size).
      data_var: per-feature data variance in the forward variance ``alpha^2 data_var +
        sigma^2`` (0: the reference code's ``1 - alpha_bar``).

    Order: the base solver's (``t_s = t`` once ``t <= cutoff``, so the shift changes a fixed
    part of the trajectory, not the convergence of the integrator below the cutoff).
    """

    base: Solver = DDIM()
    window: float = 0.05
    cutoff: float = 0.3
    n_candidates: int = 21
    data_var: float = 0.0

    def __post_init__(self):
        if not _supported(self.base):
            raise ValueError(
                f"TimeShift: base={type(self.base).__name__} is not supported; the shift needs a "
                "solver that evaluates the model once per step at the step's start: DDIM, "
                "multistep DPMSolverPP / DPMSolver (no singlestep warm-up) or UniPC.")
        if not (isinstance(self.window, (int, float)) and self.window >= 0):
            raise ValueError(f"TimeShift: window={self.window!r} must be a number >= 0.")
        if not isinstance(self.cutoff, (int, float)):
            raise ValueError(f"TimeShift: cutoff={self.cutoff!r} must be a number (a time).")
        n = self.n_candidates
        if isinstance(n, bool) or not isinstance(n, int) or n < 1 or n % 2 == 0:
            raise ValueError(f"TimeShift: n_candidates={n!r} must be an odd integer >= 1 (the "
                             "window's centre is the step's own time).")
        if not (isinstance(self.data_var, (int, float)) and self.data_var >= 0):
            raise ValueError(f"TimeShift: data_var={self.data_var!r} must be a number >= 0.")

    def step(self, model, state, coefs, key):
        return self.base.step(_ShiftedModel(model, self), state, coefs, key)
