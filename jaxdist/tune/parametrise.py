"""A time grid that is monotone by construction: softmax increments in log-SNR.

With ``lambda`` the (clipped) log-SNR, ``lambda_0 = lambda(t_start)`` fixed and
``lambda_hi = lambda(t_min)`` the schedule's bound, the ``m`` learned positive times are

    lambda_last = lambda_0 + (lambda_hi - lambda_0) sigmoid(end)
    lambda_k    = lambda_0 + (lambda_last - lambda_0) cumsum(softmax(logits))_k,   k = 1..m

so ``t_start > t_1 > ... > t_m = t(lambda_last) >= t_min`` for every parameter value
(``logits [m]``, ``end []``), followed by ``t = 0`` when ``final_zero``. ``m = n_steps - 1`` with
a final zero, ``n_steps`` without.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..schedules import Schedule
from ..solvers.primitives import clipped_log_snr

Array = jax.Array

__all__ = ["GridParams", "grid_from_params", "params_from_grid", "learned_times"]

#: the largest fraction of ``[lambda_0, lambda_hi]`` an initial last time may take (keeps
#: ``end = logit(fraction)`` finite when the initial grid ends at ``t_min``)
_MAX_FRACTION = 1.0 - 1e-6


class GridParams(NamedTuple):
    """Unconstrained grid parameters: ``logits [m]`` of the log-SNR increments and ``end []``,
    the logit of where the last positive time sits between ``t_start`` and ``t_min``."""

    logits: Array
    end: Array


def learned_times(n_steps: int, final_zero: bool) -> int:
    """``m``, the number of learned positive times of an ``n_steps`` grid."""
    return int(n_steps) - 1 if final_zero else int(n_steps)


def grid_from_params(params: GridParams, schedule: Schedule, t_start: float,
                     final_zero: bool) -> Array:
    """The grid ``[t_start, t_1, .., t_m(, 0)]`` of ``params`` (see the module docstring)."""
    dtype = params.logits.dtype
    t0 = jnp.asarray(t_start, dtype)
    lam0 = clipped_log_snr(schedule, t0)
    lam_hi = clipped_log_snr(schedule, jnp.asarray(schedule.t_min, dtype))
    lam_last = lam0 + (lam_hi - lam0) * jax.nn.sigmoid(params.end)
    fractions = jnp.cumsum(jax.nn.softmax(params.logits))
    times = schedule.t_from_log_snr(lam0 + (lam_last - lam0) * fractions)
    # rounding of t_from_log_snr may leave [t_min, t_start] by an ulp
    times = jnp.clip(times, schedule.t_min, t0).astype(dtype)
    parts = [t0[None], times] + ([jnp.zeros((1,), dtype)] if final_zero else [])
    return jnp.concatenate(parts)


def params_from_grid(grid, schedule: Schedule, final_zero: bool, dtype=None) -> GridParams:
    """The parameters whose grid is ``grid`` (up to the clamp of a last time at ``t_min``).

    ``grid``: decreasing times from ``t_start``; ending at 0 iff ``final_zero``.
    """
    g = np.asarray(grid, np.float64)
    positive = g[:-1] if final_zero else g
    lam = np.asarray(clipped_log_snr(schedule, jnp.asarray(positive)), np.float64)
    lam_hi = float(clipped_log_snr(schedule, jnp.asarray(float(schedule.t_min))))
    span = lam_hi - lam[0]
    inc = np.diff(lam)
    if span <= 0 or np.any(inc <= 0):
        raise ValueError("init grid must be strictly decreasing in time (increasing log-SNR) "
                         f"from t_start down to t_min = {schedule.t_min:g}; got {g}.")
    fraction = min((lam[-1] - lam[0]) / span, _MAX_FRACTION)
    dtype = dtype or jnp.result_type(float)
    logits = np.log(inc / inc.sum())
    return GridParams(jnp.asarray(logits - logits.mean(), dtype),
                      jnp.asarray(np.log(fraction) - np.log1p(-fraction), dtype))
