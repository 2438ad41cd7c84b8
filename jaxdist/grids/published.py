"""Published, optimised noise-level schedules: Align Your Steps (AYS) and GITS.

Both are tables of noise levels ``s = sigma / alpha`` for particular models; other step counts
come from log-linear interpolation, as their authors and ComfyUI do (``loglinear_interp``).
The levels are mapped to times of any schedule whose range covers them (``rescale=True`` maps the
table's ``log s`` range onto the schedule's instead). As in ComfyUI, the last level (the model's
``sigma_min``) is replaced by clean data (``t = 0``) unless ``final_zero=False``.
"""

from __future__ import annotations

import jax
import numpy as np

from ..schedules import Schedule
from .common import as_grid, check_steps, rescale_levels, times_from_levels
from .gits_table import GITS_STEPS, GITS_TEACHER_LEVELS

Array = jax.Array

__all__ = ["AYS_NOISE_LEVELS", "GITS_COEFFS", "loglinear_interp", "ays", "gits"]

# Sabour, Fidler & Kreis (2024), "Align Your Steps", the 10-step schedules NVIDIA publishes (the
# quick-start guide; ComfyUI's AlignYourStepsScheduler). SD 1.5 and SDXL are SD's training sigmas
# at timesteps [999, 850, 736, 645, 545, 455, 343, 233, 124, 24, 0] and
# [999, 845, 730, 587, 443, 310, 193, 116, 53, 13, 0]; SVD is an EDM model (sigma up to 700).
AYS_NOISE_LEVELS = {
    "sd1": (14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092,
            0.9642583904, 0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582),
    "sdxl": (14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141,
             0.5550693289, 0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582),
    "svd": (700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002),
}
_AYS_ALIASES = {"sd15": "sd1", "sd1.5": "sd1", "sd": "sd1", "xl": "sdxl"}

GITS_COEFFS = tuple(sorted(GITS_STEPS))


def loglinear_interp(levels, n_points: int) -> np.ndarray:
    """Resamples decreasing positive ``levels`` to ``n_points`` by linear interpolation of
    ``log s`` against the position ``i / (len - 1)`` (the rule of the AYS quick-start guide):
    the first and last levels are kept, and 21 points from 11 put the originals at even indices
    with their geometric means between them."""
    s = np.asarray(levels, dtype=np.float64)
    n_points = check_steps(n_points, minimum=2, name="n_points")
    if s.ndim != 1 or s.size < 2 or np.any(s <= 0) or np.any(np.diff(s) >= 0):
        raise ValueError("levels must be a 1-D, strictly decreasing array of positive noise "
                         "levels.")
    x = np.linspace(0.0, 1.0, s.size)
    return np.exp(np.interp(np.linspace(0.0, 1.0, n_points), x, np.log(s)))


def _table_grid(schedule: Schedule, levels: np.ndarray, *, final_zero: bool, rescale: bool,
                what: str) -> Array:
    """Times of the table ``levels`` (``n + 1`` of them): the last replaced by ``t = 0`` if
    ``final_zero``, all of them mapped in ``log s`` onto the schedule's range if ``rescale``."""
    if rescale:
        levels = rescale_levels(levels, schedule)
    if final_zero:
        return as_grid(times_from_levels(schedule, levels[:-1], what=what), final_zero=True)
    return as_grid(times_from_levels(schedule, levels, what=what))


def ays(schedule: Schedule, n_steps: int, model: str = "sd1", *, final_zero: bool = True,
        rescale: bool = False) -> Array:
    """Align Your Steps (Sabour et al. 2024) for ``model`` in ``"sd1"`` (SD 1.5), ``"sdxl"`` or
    ``"svd"`` (Stable Video Diffusion): the published 10-step noise levels
    (``AYS_NOISE_LEVELS``), log-linearly interpolated to ``n_steps + 1`` points for other
    step counts, the last one replaced by ``t = 0`` (ComfyUI's ``AlignYourStepsScheduler``; with
    ``final_zero=False`` the grid ends at the model's ``sigma_min`` instead, as the authors'
    diffusers guide does). Needs a schedule that covers the levels (SD: ``[0.029, 14.6]``; SVD:
    ``[0.002, 700]``) unless ``rescale=True``."""
    key = _AYS_ALIASES.get(str(model).lower(), str(model).lower())
    if key not in AYS_NOISE_LEVELS:
        raise ValueError(f"model={model!r}: AYS has tables for {sorted(AYS_NOISE_LEVELS)}.")
    n_steps = check_steps(n_steps)
    levels = np.asarray(AYS_NOISE_LEVELS[key], np.float64)
    if n_steps + 1 != levels.size:
        levels = loglinear_interp(levels, n_steps + 1)
    return _table_grid(schedule, levels, final_zero=final_zero, rescale=rescale,
                       what=f"ays(model={key!r})")


def gits(schedule: Schedule, n_steps: int, coeff: float = 1.20, *, final_zero: bool = True,
         rescale: bool = False) -> Array:
    """GITS (Chen et al. 2024) for SD 1.5 with the DP coefficient ``coeff`` in
    ``0.80, 0.85, ..., 1.50`` (ComfyUI's default 1.20): the published schedule for
    ``2 <= n_steps <= 20``, the 20-step one log-linearly interpolated beyond, the last level
    replaced by ``t = 0`` (ComfyUI's ``GITSScheduler``). Schedule range and ``rescale`` as in
    ``ays``."""
    key = round(float(coeff), 2)
    if key not in GITS_STEPS:
        raise ValueError(f"coeff={coeff!r}: GITS tables exist for coeff in "
                         f"{', '.join(f'{c:.2f}' for c in GITS_COEFFS)}.")
    n_steps = check_steps(n_steps, minimum=2)
    rows = GITS_STEPS[key]
    teacher = np.asarray(GITS_TEACHER_LEVELS, np.float64)
    if n_steps <= len(rows) + 1:
        levels = teacher[list(rows[n_steps - 2])]
    else:
        levels = loglinear_interp(teacher[list(rows[-1])], n_steps + 1)
    return _table_grid(schedule, levels, final_zero=final_zero, rescale=rescale,
                       what=f"gits(coeff={key:.2f})")

