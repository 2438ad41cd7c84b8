"""Grids spaced by a formula between ``t_start`` and ``t_end``: uniform in ``t``, ``sqrt(t)``,
log-SNR, Karras' ``sigma^(1/rho)``, polynomial in log-sigma, and the KL-optimal ``arctan`` spacing.

``t_start`` / ``t_end`` default to the schedule's ``t_max`` / ``t_min`` and are hit exactly. Noise
levels are the EDM-equivalent ``s = sigma / alpha``, mapped back to times with
``t_from_log_snr(-2 log s)``. ``final_zero=True`` spends the last step on going from ``t_end``
straight to clean data (``t = 0``), as k-diffusion and diffusers' ``final_sigmas_type="zero"`` do.
Grids are built on the host (in float64, returned in the default float dtype), outside ``jit``.
"""

from __future__ import annotations

import jax
import numpy as np

from ..schedules import Schedule
from .common import describe, n_points, pin_ends, scalar, time_bounds, to_times

Array = jax.Array

__all__ = ["time_uniform", "time_quadratic", "logsnr_uniform", "karras", "exponential",
           "polyexponential", "kl_optimal"]


def time_uniform(schedule: Schedule, n_steps: int, t_start=None, t_end=None, *,
                 final_zero: bool = False) -> Array:
    """Uniform in ``t``: ``t_i = t_start + i / N (t_end - t_start)``."""
    t_start, t_end = time_bounds(schedule, t_start, t_end)
    times = np.linspace(t_start, t_end, n_points(n_steps, final_zero))
    return pin_ends(times, t_start, t_end, final_zero)


def time_quadratic(schedule: Schedule, n_steps: int, t_start=None, t_end=None, *,
                   final_zero: bool = False) -> Array:
    """Uniform in ``sqrt(t)`` (DPM-Solver's ``time_quadratic``): denser near the data."""
    t_start, t_end = time_bounds(schedule, t_start, t_end)
    times = np.linspace(t_start**0.5, t_end**0.5, n_points(n_steps, final_zero)) ** 2
    return pin_ends(times, t_start, t_end, final_zero)


def _finite_log_snr(schedule: Schedule, t_start: float, t_end: float, what: str):
    """``lambda(t_start), lambda(t_end)``; a clear error if either is infinite."""
    lam0, lam1 = (scalar(schedule, "log_snr", t) for t in (t_start, t_end))
    if not (np.isfinite(lam0) and np.isfinite(lam1)):
        raise ValueError(
            f"log-SNR is infinite at t_start={t_start} or t_end={t_end} for "
            f"{describe(schedule)}; pass times inside the schedule's open range (e.g. "
            f"t_start=0.999 for RectifiedFlow) or use time_uniform ({what} is spaced in log-SNR).")
    return lam0, lam1


def logsnr_uniform(schedule: Schedule, n_steps: int, t_start=None, t_end=None, *,
                   final_zero: bool = False) -> Array:
    """Uniform in log-SNR ``lambda`` (DPM-Solver's ``logSNR``; k-diffusion's ``exponential``)."""
    t_start, t_end = time_bounds(schedule, t_start, t_end)
    lam0, lam1 = _finite_log_snr(schedule, t_start, t_end, "logsnr_uniform")
    times = to_times(schedule, np.linspace(lam0, lam1, n_points(n_steps, final_zero)))
    return pin_ends(times, t_start, t_end, final_zero)


def exponential(schedule: Schedule, n_steps: int, t_start=None, t_end=None, *,
                final_zero: bool = True) -> Array:
    """k-diffusion's ``get_sigmas_exponential`` (ComfyUI's ``exponential``; diffusers'
    ``use_exponential_sigmas`` / ``use_lu_lambdas``): ``log s`` uniform from ``s(t_start)`` to
    ``s(t_end)``, which is ``logsnr_uniform``, here ending at ``t = 0`` by default."""
    return logsnr_uniform(schedule, n_steps, t_start, t_end, final_zero=final_zero)


def polyexponential(schedule: Schedule, n_steps: int, rho: float = 1.0, t_start=None, t_end=None,
                    *, final_zero: bool = True) -> Array:
    """k-diffusion's ``get_sigmas_polyexponential``: with ``r_i = (1 - i / (M - 1))^rho``,
    ``log s_i = log s_min + r_i (log s_max - log s_min)`` (``rho = 1``: ``exponential``)."""
    if not rho > 0:
        raise ValueError(f"rho={rho!r} must be positive.")
    t_start, t_end = time_bounds(schedule, t_start, t_end)
    lam0, lam1 = _finite_log_snr(schedule, t_start, t_end, "polyexponential")
    ramp = np.linspace(1.0, 0.0, n_points(n_steps, final_zero)) ** rho
    return pin_ends(to_times(schedule, lam1 + ramp * (lam0 - lam1)), t_start, t_end, final_zero)


def _level_ends(schedule: Schedule, t_start: float, t_end: float) -> tuple[float, float]:
    """``s(t_start), s(t_end)`` (float64; ``s(t_start)`` may be infinite)."""
    return tuple(scalar(schedule, "sigma_over_alpha", t) for t in (t_start, t_end))


def karras(schedule: Schedule, n_steps: int, rho: float = 7.0, t_start=None, t_end=None, *,
           final_zero: bool = False) -> Array:
    """Karras et al. (2022) eq. 5 in the EDM noise level ``s = sigma / alpha``:
    ``s_i = (s_max^(1/rho) + i / (n-1) (s_min^(1/rho) - s_max^(1/rho)))^rho``, mapped back to ``t``.

    For ``EDM`` this is the EDM sampler's grid; for VP it gives diffusers' ``use_karras_sigmas``.
    """
    if not rho > 0:
        raise ValueError(f"rho={rho!r} must be positive.")
    t_start, t_end = time_bounds(schedule, t_start, t_end)
    s_max, s_min = _level_ends(schedule, t_start, t_end)
    if not np.isfinite(s_max):
        raise ValueError(f"karras: the noise level sigma/alpha is infinite at t_start={t_start} "
                         f"for {describe(schedule)}; pass t_start < t_max (e.g. 0.999 for "
                         "RectifiedFlow).")
    ramp = np.linspace(0.0, 1.0, n_points(n_steps, final_zero))
    s = (s_max ** (1 / rho) + ramp * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    return pin_ends(to_times(schedule, -2.0 * np.log(s)), t_start, t_end, final_zero)


def kl_optimal(schedule: Schedule, n_steps: int, t_start=None, t_end=None, *,
               final_zero: bool = True) -> Array:
    """The KL-optimal schedule (Sabour et al. 2024, "Align Your Steps", Theorem 3.1; ComfyUI's and
    A1111's ``kl_optimal``): ``s_i = tan(u_i atan(s_min) + (1 - u_i) atan(s_max))``,
    ``u_i = i / (M - 1)``. ``s_max`` may be infinite (``RectifiedFlow`` at ``t = 1``)."""
    t_start, t_end = time_bounds(schedule, t_start, t_end)
    s_max, s_min = _level_ends(schedule, t_start, t_end)
    u = np.linspace(0.0, 1.0, n_points(n_steps, final_zero))
    s = np.tan(u * np.arctan(s_min) + (1.0 - u) * np.arctan(s_max))
    return pin_ends(to_times(schedule, -2.0 * np.log(s)), t_start, t_end, final_zero)
