"""Time grids: decreasing arrays of times ``t_0 > t_1 > ... > t_N`` (``N`` steps, ``N + 1`` times).

Every function takes the schedule and the number of steps and returns float times (never rounded:
only the model's input time is quantised, by the schedule). ``t_start`` and ``t_end`` default to
the schedule's ``t_max`` and ``t_min``. ``final_zero=True`` spends the last step on going from the
smallest noise level straight to clean data (``t = 0``), as k-diffusion and diffusers'
``final_sigmas_type="zero"`` do; a data-prediction step to ``t = 0`` returns ``x0_hat``.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from .schedules import Schedule, VPDiscrete, betas_from_diffusers_config

Array = jax.Array

__all__ = [
    "time_uniform",
    "time_quadratic",
    "logsnr_uniform",
    "karras",
    "append_zero",
    "from_diffusers",
    "diffusers_timesteps",
    "validate_grid",
]


def _check_steps(n_steps: int) -> int:
    if not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
        raise ValueError(f"n_steps={n_steps!r} must be a positive integer.")
    return int(n_steps)


def _bounds(schedule: Schedule, t_start, t_end) -> tuple[float, float]:
    t_start = schedule.t_max if t_start is None else float(t_start)
    t_end = schedule.t_min if t_end is None else float(t_end)
    if not t_start > t_end > 0:
        raise ValueError(f"need t_start > t_end > 0, got t_start={t_start}, t_end={t_end}.")
    return t_start, t_end


def append_zero(grid: Array) -> Array:
    """Appends ``t = 0`` (clean data) to a grid."""
    return jnp.concatenate([grid, jnp.zeros((1,), grid.dtype)])


def _finish(times: Array, t_start: float, t_end: float, final_zero: bool) -> Array:
    # Pin the end points exactly (inverse maps may round them by an ulp).
    times = times.at[0].set(t_start).at[-1].set(t_end)
    return append_zero(times) if final_zero else times


def _points(n_steps: int, final_zero: bool) -> int:
    n = _check_steps(n_steps) + (0 if final_zero else 1)
    if n < 2:
        raise ValueError("final_zero=True needs n_steps >= 2 (one step to t_end, one to zero).")
    return n


def time_uniform(schedule: Schedule, n_steps: int, t_start=None, t_end=None, *,
                 final_zero: bool = False) -> Array:
    """Uniform in ``t``: ``t_i = t_start + i / N (t_end - t_start)``."""
    t_start, t_end = _bounds(schedule, t_start, t_end)
    times = jnp.linspace(t_start, t_end, _points(n_steps, final_zero))
    return _finish(times, t_start, t_end, final_zero)


def time_quadratic(schedule: Schedule, n_steps: int, t_start=None, t_end=None, *,
                   final_zero: bool = False) -> Array:
    """Uniform in ``sqrt(t)`` (DPM-Solver's ``time_quadratic``): denser near the data."""
    t_start, t_end = _bounds(schedule, t_start, t_end)
    times = jnp.linspace(t_start**0.5, t_end**0.5, _points(n_steps, final_zero)) ** 2
    return _finish(times, t_start, t_end, final_zero)


def logsnr_uniform(schedule: Schedule, n_steps: int, t_start=None, t_end=None, *,
                   final_zero: bool = False) -> Array:
    """Uniform in log-SNR ``lambda`` (DPM-Solver's ``logSNR``; k-diffusion's ``exponential``)."""
    t_start, t_end = _bounds(schedule, t_start, t_end)
    lam0, lam1 = (float(schedule.log_snr(jnp.float32(t))) for t in (t_start, t_end))
    if not (np.isfinite(lam0) and np.isfinite(lam1)):
        raise ValueError(
            f"log-SNR is infinite at t_start={t_start} or t_end={t_end} for {schedule}; pass "
            "times inside the schedule's open range (e.g. t_start=0.999 for RectifiedFlow) or "
            "use time_uniform."
        )
    lam0, lam1 = (schedule.log_snr(jnp.asarray(t, jnp.result_type(float))) for t in (t_start, t_end))
    times = schedule.t_from_log_snr(jnp.linspace(lam0, lam1, _points(n_steps, final_zero)))
    return _finish(times, t_start, t_end, final_zero)


def karras(schedule: Schedule, n_steps: int, rho: float = 7.0, t_start=None, t_end=None, *,
           final_zero: bool = False) -> Array:
    """Karras et al. (2022) eq. 5 in the EDM noise level ``s = sigma / alpha``:
    ``s_i = (s_max^(1/rho) + i / (n-1) (s_min^(1/rho) - s_max^(1/rho)))^rho``, mapped back to ``t``.

    For ``EDM`` this is the EDM sampler's grid; for VP it gives diffusers' ``use_karras_sigmas``.
    """
    t_start, t_end = _bounds(schedule, t_start, t_end)
    dtype = jnp.result_type(float)
    s_max, s_min = (schedule.sigma_over_alpha(jnp.asarray(t, dtype)) for t in (t_start, t_end))
    ramp = jnp.linspace(0.0, 1.0, _points(n_steps, final_zero), dtype=dtype)
    s = (s_max ** (1 / rho) + ramp * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    times = schedule.t_from_log_snr(-2.0 * jnp.log(s))
    return _finish(times, t_start, t_end, final_zero)


# --------------------------------------------------------------------------------------------
# diffusers compatibility

_UNSUPPORTED_OPTIONS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas",
                        "use_lu_lambdas", "use_flow_sigmas", "use_dynamic_shifting")


def _family(config: Mapping[str, Any]) -> str:
    """Which ``set_timesteps`` implementation a diffusers ``_class_name`` uses."""
    cls = str(config.get("_class_name", "DPMSolverMultistepScheduler"))
    for prefix, family in (("DDIM", "ddim"), ("DDPM", "ddim"), ("PNDM", "ddim"), ("Euler", "euler"),
                           ("Heun", "euler"), ("LMS", "euler"), ("DPMSolverSinglestep", "singlestep"),
                           ("DPMSolverMultistep", "dpm"), ("DEIS", "deis")):
        if cls.startswith(prefix):
            return family
    return "unipc"  # UniPCMultistepScheduler and other multistep schedulers share its code


def _clipped_last_timestep(config: Mapping[str, Any], T: int) -> int:
    """DPM-Solver's ``lambda_min_clipped``: drops the noisiest timesteps whose half log-SNR
    ``log alpha - log sigma`` (float32, as diffusers computes it) is below the threshold."""
    lam_min = float(config.get("lambda_min_clipped", -math.inf))
    if lam_min == -math.inf:
        return T
    betas = betas_from_diffusers_config(config).astype(np.float32)
    ac = np.cumprod(np.float32(1.0) - betas, dtype=np.float32)
    if config.get("rescale_betas_zero_snr", False):
        ac[-1] = np.float32(2.0**-24)
    lam = 0.5 * np.log(ac) - 0.5 * np.log(np.float32(1.0) - ac)
    return T - int(np.searchsorted(lam[::-1], np.float32(lam_min), side="left"))


def diffusers_timesteps(config: Mapping[str, Any], n_steps: int) -> np.ndarray:
    """The timesteps diffusers' ``set_timesteps(n_steps)`` gives for ``config``, as float64.

    Follows ``timestep_spacing`` (``linspace``, ``leading``, ``trailing``) and ``steps_offset``
    the way ``DDIMScheduler`` (also DDPM/PNDM), ``EulerDiscreteScheduler`` (float timesteps, also
    Heun/LMS), ``DPMSolverMultistepScheduler`` (with ``lambda_min_clipped``), UniPC, DEIS and
    ``DPMSolverSinglestepScheduler`` (linspace only) do. Heun-type schedulers list each inner
    timestep twice; this returns each once (the grid). Configs that replace the timesteps
    (``use_karras_sigmas``, ...) are rejected: use :func:`karras` and friends instead.
    """
    n_steps = _check_steps(n_steps)
    T = int(config.get("num_train_timesteps", 1000))
    spacing = config.get("timestep_spacing", "linspace")
    offset = int(config.get("steps_offset", 0))
    family = _family(config)
    for option in _UNSUPPORTED_OPTIONS:
        if config.get(option, False):
            raise ValueError(f"config[{option!r}]=True replaces diffusers' timesteps and is not "
                             "supported; build the grid with jd.grids.karras / logsnr_uniform "
                             "instead.")
    if config.get("timestep_type", "discrete") != "discrete" or \
            config.get("interpolation_type", "linear") != "linear":
        raise ValueError("config['timestep_type'] must be 'discrete' and "
                         "config['interpolation_type'] 'linear' for from_diffusers.")
    if family == "singlestep":
        spacing, offset = "linspace", 0  # DPMSolverSinglestepScheduler has no timestep_spacing
    if spacing not in ("linspace", "leading", "trailing"):
        raise ValueError(f"config['timestep_spacing']={spacing!r}: use linspace, leading or "
                         "trailing.")
    if n_steps > T:
        raise ValueError(f"n_steps={n_steps} exceeds num_train_timesteps={T}.")
    if family == "ddim":
        if spacing == "linspace":
            ts = np.linspace(0, T - 1, n_steps).round()[::-1]
        elif spacing == "leading":
            ts = (np.arange(0, n_steps) * (T // n_steps)).round()[::-1] + offset
        else:
            ts = np.round(np.arange(T, 0, -T / n_steps)) - 1
    elif family == "euler":
        # float32 timesteps, as EulerDiscreteScheduler computes them
        if spacing == "linspace":
            ts = np.linspace(0, T - 1, n_steps, dtype=np.float32)[::-1]
        elif spacing == "leading":
            ts = (np.arange(0, n_steps) * (T // n_steps)).round()[::-1].astype(np.float32) + offset
        else:
            ts = np.arange(T, 0, -T / n_steps).round().astype(np.float32) - 1.0
    else:
        last = _clipped_last_timestep(config, T) if family in ("dpm", "singlestep") else T
        if spacing == "linspace":
            ts = np.linspace(0, last - 1, n_steps + 1).round()[::-1][:-1]
        elif spacing == "leading":
            ts = (np.arange(0, n_steps + 1) * (last // (n_steps + 1))).round()[::-1][:-1] + offset
        else:
            ts = np.arange(last, 0, -T / n_steps).round() - 1
    return np.ascontiguousarray(ts, dtype=np.float64)


def from_diffusers(config: Mapping[str, Any], n_steps: int) -> Array:
    """The grid (in jaxdist times of ``VPDiscrete.from_diffusers_config(config)``) that visits the
    same timesteps as a diffusers scheduler with this config and ``num_inference_steps=n_steps``.

    Timestep index ``i`` maps to ``t = (i + 1) / N``. The final point follows
    ``final_sigmas_type``: ``"zero"`` appends ``t = 0`` (clean data, the default of the
    multistep and Euler schedulers), ``"sigma_min"`` appends index 0 (``t = 1 / N``; DEIS always
    does this); DDIM-type configs step to ``alphas_cumprod[0]`` (or to 1 with
    ``set_alpha_to_one``). diffusers' DDIM steps from timestep ``k`` to ``k - N // n_steps``, which
    is the next timestep only for ``leading`` spacing (and ``trailing`` when ``n_steps``
    divides ``N``); the grid here always steps between consecutive timesteps.
    """
    T = int(config.get("num_train_timesteps", 1000))
    ts = diffusers_timesteps(config, n_steps)
    family = _family(config)
    if family == "ddim":
        last = 0.0 if config.get("set_alpha_to_one", True) else 1.0 / T
    elif family == "deis":
        last = 1.0 / T
    else:
        kind = config.get("final_sigmas_type", "zero")
        if kind not in ("zero", "sigma_min"):
            raise ValueError(f"config['final_sigmas_type']={kind!r}: use 'zero' or 'sigma_min'.")
        last = 0.0 if kind == "zero" else 1.0 / T
    times = np.concatenate([(ts + 1.0) / T, [last]])
    if np.any(np.diff(times) >= 0):
        raise ValueError(
            f"n_steps={n_steps} with timestep_spacing={config.get('timestep_spacing', 'linspace')!r} "
            "gives repeated timesteps; use fewer steps or 'trailing' spacing."
        )
    return jnp.asarray(times, dtype=jnp.result_type(float))


# --------------------------------------------------------------------------------------------
# validation


def validate_grid(schedule: Schedule, grid: Any, argument: str = "grid", *,
                  increasing: bool = False) -> None:
    """Raises ``ValueError`` naming ``argument`` for a grid that is not a 1-D, finite, strictly
    decreasing array inside ``[t_min, t_max]`` (the last point may be ``0``). With
    ``increasing=True`` (inversion: data to noise) the grid must be strictly increasing and the
    same rules apply to it reversed. Traced grids are checked for shape only."""
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
    elif np.any(np.diff(g) >= 0):
        raise ValueError(
            f"{argument} must be strictly decreasing (from noise to data), got {g}; "
            "reverse it, or use jd.grids.* to build one."
        )
    tol = 1e-5
    lo, hi = schedule.t_min * (1 - tol), schedule.t_max * (1 + tol) + 1e-12
    inner = g if g[-1] != 0 else g[:-1]
    if inner.size and (inner.max() > hi or inner.min() < lo or g[-1] < 0):
        raise ValueError(
            f"{argument} has times outside [{schedule.t_min:g}, {schedule.t_max:g}] of {schedule} "
            f"(got {g.max():g} ... {g.min():g}); only the last time may be 0 (clean data)."
        )
