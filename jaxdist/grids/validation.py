"""Checks that a grid is one ``jd.sample`` can take."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from ..schedules import Schedule
from .common import describe

__all__ = ["validate_grid"]


def validate_grid(schedule: Schedule, grid: Any, argument: str = "grid", *,
                  increasing: bool = False, allow_zero_final_step: bool = False) -> None:
    """Raises ``ValueError`` naming ``argument`` for a grid that is not a 1-D, finite, strictly
    decreasing array inside ``[t_min, t_max]`` (the last point may be ``0``). With
    ``increasing=True`` (inversion: data to noise) the grid must be strictly increasing and the
    same rules apply to it reversed. ``allow_zero_final_step=True`` accepts a repeated last time
    (diffusers' ``final_sigmas_type="sigma_min"`` after Karras / exponential / beta sigmas: a last
    step that does nothing). Traced grids are checked for shape only."""
    shape = np.shape(grid)
    if len(shape) != 1 or shape[0] < 2:
        raise ValueError(f"{argument} must be a 1-D array of at least 2 times, got shape {shape}.")
    try:
        g = np.asarray(grid, dtype=np.float64)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return
    if not np.all(np.isfinite(g)):
        raise ValueError(f"{argument} contains non-finite times: {g}.")
    if increasing:
        if np.any(np.diff(g) <= 0):
            raise ValueError(
                f"{argument} must be strictly increasing for inversion (data to noise), got {g}; "
                "pass jd.grids.*(...)[::-1]."
            )
        g = g[::-1]
    else:
        steps = np.diff(g)
        zero_final = g.size > 2 and steps[-1] == 0 and np.all(steps[:-1] < 0)
        if zero_final and not allow_zero_final_step:
            raise ValueError(
                f"{argument} repeats its last time {g[-1]:g}: a last step that does nothing "
                "(diffusers' final_sigmas_type='sigma_min' with Karras / exponential / beta "
                f"sigmas). Drop it ({argument}[:-1]) or use final_sigmas_type='zero'.")
        if np.any(steps >= 0) and not (zero_final and allow_zero_final_step):
            raise ValueError(
                f"{argument} must be strictly decreasing (from noise to data), got {g}; "
                "reverse it, or use jd.grids.* to build one."
            )
    tol = 1e-5
    lo, hi = schedule.t_min * (1 - tol), schedule.t_max * (1 + tol) + 1e-12
    inner = g if g[-1] != 0 else g[:-1]
    if inner.size and (inner.max() > hi or inner.min() < lo or g[-1] < 0):
        raise ValueError(
            f"{argument} has times outside [{schedule.t_min:g}, {schedule.t_max:g}] of "
            f"{describe(schedule)} "
            f"(got {g.max():g} ... {g.min():g}); only the last time may be 0 (clean data)."
        )
