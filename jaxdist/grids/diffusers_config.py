"""A diffusers scheduler config (``scheduler_config.json`` as a dict, with ``_class_name``) ->
the timesteps and noise levels of its ``set_timesteps(n_steps)``, and the jaxdist grid.

``diffusers_schedule`` is the schedule the grid's times belong to (``VPDiscrete`` of the
config's betas, or ``RectifiedFlow`` for flow matching and ``use_flow_sigmas``),
``from_diffusers`` the grid (the same noise levels as diffusers' ``scheduler.sigmas``),
``diffusers_timesteps`` diffusers' ``scheduler.timesteps`` (what the network is given), and
``diffusers_sigmas`` diffusers' ``scheduler.sigmas`` themselves. ``docs/grids.md`` has the
table of what each option does.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..schedules import RectifiedFlow, Schedule, VPDiscrete, betas_from_diffusers_config
from .common import check_steps, describe, float_dtype, times_from_levels, train_levels
from .flow import flow_shift, flux_mu, stretch_to_terminal, time_shift

Array = jax.Array

__all__ = ["diffusers_schedule", "diffusers_timesteps", "diffusers_sigmas", "from_diffusers",
           "flow_match", "timestep_spacing", "FLOW_MATCH_DEFAULTS"]

# FlowMatchEulerDiscreteScheduler's defaults (the keys flow_match reads).
FLOW_MATCH_DEFAULTS = {
    "num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": False, "base_shift": 0.5,
    "max_shift": 1.15, "base_image_seq_len": 256, "max_image_seq_len": 4096,
    "invert_sigmas": False, "shift_terminal": None, "use_karras_sigmas": False,
    "use_exponential_sigmas": False, "use_beta_sigmas": False, "time_shift_type": "exponential",
}
_CONVERSIONS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas",
                "use_lu_lambdas", "use_flow_sigmas")


class _Plan(NamedTuple):
    timesteps: np.ndarray  # scheduler.timesteps (each Heun timestep once), float64
    levels: np.ndarray     # scheduler.sigmas, n + 1 of them, float64: sigma/alpha or flow sigma
    exact: np.ndarray      # jaxdist times known exactly (NaN where they come from a level)
    flow: bool             # the levels are rectified-flow times


def family(config: Mapping[str, Any]) -> str:
    """Which ``set_timesteps`` implementation a diffusers ``_class_name`` uses: ``ddim`` (DDIM,
    DDPM, PNDM), ``euler`` (Euler, Heun, LMS, KDPM2), ``dpm``, ``singlestep``, ``deis``, ``flow``
    (FlowMatch*) or ``unipc`` (UniPC and the other multistep schedulers that share its code)."""
    cls = str(config.get("_class_name", "DPMSolverMultistepScheduler"))
    for prefix, name in (("DDIM", "ddim"), ("DDPM", "ddim"), ("PNDM", "ddim"), ("Euler", "euler"),
                         ("Heun", "euler"), ("LMS", "euler"), ("KDPM2", "euler"),
                         ("DPMSolverSDE", "euler"),
                         ("DPMSolverSinglestep", "singlestep"),
                         ("DPMSolverMultistep", "dpm"), ("DEIS", "deis"), ("FlowMatch", "flow")):
        if cls.startswith(prefix):
            return name
    return "unipc"


def diffusers_schedule(config: Mapping[str, Any]) -> Schedule:
    """The schedule of ``from_diffusers``' times: ``RectifiedFlow()`` for ``FlowMatch*``
    schedulers and ``use_flow_sigmas=True``, else ``VPDiscrete.from_diffusers_config(config)``."""
    if family(config) == "flow" or config.get("use_flow_sigmas", False):
        return RectifiedFlow()
    return VPDiscrete.from_diffusers_config(config)


# --------------------------------------------------------------------------------------------
# timesteps


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


def _spaced_timesteps(config: Mapping[str, Any], n_steps: int, fam: str) -> np.ndarray:
    """The timesteps of ``timestep_spacing`` (``linspace``, ``leading``, ``trailing``) with
    ``steps_offset``, before any sigma conversion, as each family computes them."""
    T = int(config.get("num_train_timesteps", 1000))
    spacing = config.get("timestep_spacing", "linspace")
    offset = int(config.get("steps_offset", 0))
    if fam == "singlestep":
        spacing, offset = "linspace", 0  # DPMSolverSinglestepScheduler has no timestep_spacing
    if spacing not in ("linspace", "leading", "trailing"):
        raise ValueError(f"config['timestep_spacing']={spacing!r}: use linspace, leading or "
                         "trailing.")
    if n_steps > T:
        raise ValueError(f"n_steps={n_steps} exceeds num_train_timesteps={T}.")
    if fam == "ddim":
        if spacing == "linspace":
            return np.linspace(0, T - 1, n_steps).round()[::-1]
        if spacing == "leading":
            return (np.arange(0, n_steps) * (T // n_steps)).round()[::-1] + offset
        return np.round(np.arange(T, 0, -T / n_steps)) - 1
    if fam == "euler":  # float32 timesteps, as EulerDiscreteScheduler computes them
        if spacing == "linspace":
            return np.linspace(0, T - 1, n_steps, dtype=np.float32)[::-1].astype(np.float64)
        if spacing == "leading":
            ts = (np.arange(0, n_steps) * (T // n_steps)).round()[::-1].astype(np.float32) + offset
            return ts.astype(np.float64)
        return (np.arange(T, 0, -T / n_steps).round().astype(np.float32) - 1.0).astype(np.float64)
    last = _clipped_last_timestep(config, T) if fam in ("dpm", "singlestep") else T
    if spacing == "linspace":
        return np.linspace(0, last - 1, n_steps + 1).round()[::-1][:-1]
    if spacing == "leading":
        return (np.arange(0, n_steps + 1) * (last // (n_steps + 1))).round()[::-1][:-1] + offset
    return np.arange(last, 0, -T / n_steps).round() - 1


# --------------------------------------------------------------------------------------------
# sigma conversions (diffusers' _convert_to_karras / _exponential / _beta / _lu)


def _convert(kind: str, s_min: float, s_max: float, n: int) -> np.ndarray:
    """``n`` levels from ``s_max`` to ``s_min``: Karras (rho 7), log-uniform (exponential and Lu's
    lambdas), or the Beta(0.6, 0.6) quantiles linear in the level (beta)."""
    if kind == "karras":
        ramp = np.linspace(0.0, 1.0, n)
        return (s_max ** (1 / 7) + ramp * (s_min ** (1 / 7) - s_max ** (1 / 7))) ** 7
    if kind in ("exponential", "lu"):
        return np.exp(np.linspace(math.log(s_max), math.log(s_min), n))
    from scipy.special import betaincinv  # the Beta quantile; scipy ships with jax

    return s_min + betaincinv(0.6, 0.6, 1.0 - np.linspace(0.0, 1.0, n)) * (s_max - s_min)


def _sigma_to_t(levels: np.ndarray, log_train: np.ndarray) -> np.ndarray:
    """diffusers' ``_sigma_to_t``: the fractional timestep of each level, interpolating
    ``log sigma`` between the training timesteps (clamped to ``[0, N - 1]``)."""
    log_s = np.log(np.maximum(levels, 1e-10))
    low = np.clip(np.searchsorted(log_train, log_s, side="right") - 1, 0, log_train.size - 2)
    w = np.clip((log_train[low] - log_s) / (log_train[low] - log_train[low + 1]), 0.0, 1.0)
    return low + w


def _conversion(config: Mapping[str, Any], fam: str) -> str | None:
    on = [key for key in _CONVERSIONS if config.get(key, False)]
    if len(on) > 1:
        raise ValueError(f"config sets {', '.join(on)}: diffusers uses one of them at a time.")
    if not on:
        return None
    key = on[0]
    if fam == "ddim":
        raise ValueError(f"config[{key!r}]=True: {config.get('_class_name')} has no such option.")
    if key == "use_lu_lambdas" and fam != "dpm":
        raise ValueError("config['use_lu_lambdas'] is a DPMSolverMultistepScheduler option.")
    if key == "use_flow_sigmas" and fam == "euler":
        raise ValueError("config['use_flow_sigmas'] is not an option of "
                         f"{config.get('_class_name')}.")
    return key[len("use_"):].split("_")[0]  # karras, exponential, beta, lu, flow


def _final_kind(config: Mapping[str, Any], fam: str) -> str:
    kind = config.get("final_sigmas_type", "zero")
    if kind not in ("zero", "sigma_min"):
        raise ValueError(f"config['final_sigmas_type']={kind!r}: use 'zero' or 'sigma_min'.")
    if fam == "euler" and not str(config.get("_class_name", "")).startswith("EulerDiscrete"):
        return "zero"  # Heun, LMS, KDPM2 and EulerAncestral always end at sigma = 0
    return kind


def _vp_flow_levels(config: Mapping[str, Any], n: int, fam: str, mu, sigmas) -> np.ndarray:
    """``use_flow_sigmas``: DPM-Solver / DEIS shift ``1 - linspace(1, 1/N, n + 1)``; UniPC shifts
    ``linspace(1, 1/N, n + 1)[:-1]`` (or ``mu``-shifts it), then ``shift_terminal``."""
    T = int(config.get("num_train_timesteps", 1000))
    shift = float(config.get("flow_shift", 1.0))
    dynamic = bool(config.get("use_dynamic_shifting", False))
    if mu is not None and not dynamic:
        raise ValueError("mu= is only used with config['use_dynamic_shifting']=True.")
    if dynamic and mu is None:
        raise ValueError("config['use_dynamic_shifting']=True needs mu= (or image_seq_len=).")
    if fam != "unipc":
        if sigmas is not None:
            raise ValueError(f"sigmas= is not accepted by {config.get('_class_name')}.")
        if mu is not None:
            if config.get("time_shift_type", "exponential") != "exponential":
                raise ValueError("mu= needs config['time_shift_type']='exponential' here.")
            shift = math.exp(mu)
        s = flow_shift(1.0 - np.linspace(1.0, 1.0 / T, n + 1), shift)
        return s[::-1][:-1].copy()
    s = np.linspace(1.0, 1.0 / T, n + 1)[:-1] if sigmas is None else _custom_sigmas(sigmas, n)
    if dynamic:
        s = time_shift(s, mu, config.get("time_shift_type", "exponential"))
    else:
        s = flow_shift(s, shift)
    if config.get("shift_terminal"):
        s = stretch_to_terminal(s, float(config["shift_terminal"]))
    if abs(s[0] - 1.0) < 1e-6:
        s[0] -= 1e-6  # UniPC keeps log(alpha) finite at the first step
    return s


def _vp_plan(config: Mapping[str, Any], n: int, fam: str, mu, sigmas) -> _Plan:
    T = int(config.get("num_train_timesteps", 1000))
    if config.get("timestep_type", "discrete") != "discrete" or \
            config.get("interpolation_type", "linear") != "linear":
        raise ValueError("config['timestep_type'] must be 'discrete' and "
                         "config['interpolation_type'] 'linear' for from_diffusers.")
    conv = _conversion(config, fam)
    if conv != "flow" and (mu is not None or sigmas is not None):
        raise ValueError("mu= and sigmas= are for flow-matching configs (FlowMatch* schedulers or "
                         "use_flow_sigmas=True).")
    train = train_levels(VPDiscrete.from_diffusers_config(config))
    ts = _spaced_timesteps(config, n, fam)
    nan = np.full(n, np.nan)
    if conv is None:
        levels = np.interp(ts, np.arange(T), train)
        exact = np.where(ts == np.round(ts), (ts + 1.0) / T, np.nan)
    elif conv == "flow":
        levels = _vp_flow_levels(config, n, fam, mu, sigmas)
        ts, exact = np.trunc(levels * T), levels
    else:
        if fam == "euler":  # converts the levels at its timesteps; honours sigma_min/sigma_max
            src = np.interp(ts, np.arange(T), train)
            s_min = config.get("sigma_min") or src[-1]
            s_max = config.get("sigma_max") or src[0]
        else:  # the multistep schedulers convert the whole training range
            s_min, s_max = train[0], train[-1]
        levels = _convert(conv, float(s_min), float(s_max), n)
        ts, exact = _sigma_to_t(levels, np.log(train)), nan
        if fam == "euler":
            ts = ts.astype(np.float32).astype(np.float64)
        elif conv in ("karras", "lu") and (fam in ("deis", "unipc") or
                                           config.get("beta_schedule") != "squaredcos_cap_v2"):
            ts = np.round(ts)
        else:
            ts = np.trunc(ts)  # cast to int64
    # the final level
    sigma_min, t_sigma_min = train[0], 1.0 / T
    if fam == "ddim":
        one = config.get("set_alpha_to_one", True)
        last, t_last = (0.0, 0.0) if one else (sigma_min, t_sigma_min)
    elif fam == "deis":
        last, t_last = (sigma_min, t_sigma_min) if conv is None else (levels[-1], exact[-1])
    elif _final_kind(config, fam) == "zero":
        last, t_last = 0.0, 0.0
    elif fam == "unipc" and conv is not None:
        last, t_last = levels[-1], exact[-1]
    else:
        last, t_last = sigma_min, (t_sigma_min if conv != "flow" else sigma_min)
    return _Plan(ts, np.append(levels, last), np.append(exact, t_last), conv == "flow")


# --------------------------------------------------------------------------------------------
# flow matching


def _custom_sigmas(sigmas, n: int) -> np.ndarray:
    s = np.asarray(sigmas, dtype=np.float64)
    if s.shape != (n,) or not np.all((s > 0) & (s <= 1)) or np.any(np.diff(s) >= 0):
        raise ValueError(f"sigmas= must be {n} strictly decreasing flow times in (0, 1], got {s}.")
    return s.astype(np.float32).astype(np.float64)


def _flow_config(config: Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> dict:
    merged = dict(FLOW_MATCH_DEFAULTS)
    merged.update({k: v for k, v in dict(config or {}).items() if v is not None})
    merged.update(overrides)
    return merged


def _flow_plan(config: Mapping[str, Any], n: int, mu, image_seq_len, sigmas) -> _Plan:
    """FlowMatchEulerDiscreteScheduler.set_timesteps: ``linspace(sigma_max N, sigma_min N, n) / N``
    (the scheduler's already shifted ``sigma_min``, so it is shifted twice, as in diffusers) or
    the given ``sigmas``; the static or dynamic shift; ``shift_terminal``; a conversion."""
    T = int(config["num_train_timesteps"])
    shift, dynamic = float(config["shift"]), bool(config["use_dynamic_shifting"])
    if dynamic and mu is None:
        if image_seq_len is None:
            raise ValueError("config['use_dynamic_shifting']=True needs mu= or image_seq_len= "
                             "(Flux: mu = jd.grids.flux_mu(image_seq_len)).")
        mu = flux_mu(image_seq_len, config["base_image_seq_len"], config["max_image_seq_len"],
                     config["base_shift"], config["max_shift"])
    elif not dynamic and (mu is not None or image_seq_len is not None):
        raise ValueError("mu= and image_seq_len= are only used with "
                         "config['use_dynamic_shifting']=True.")
    if sigmas is None:
        s_min = 1.0 / T if dynamic else flow_shift(1.0 / T, shift)
        s = np.linspace(T, s_min * T, n) / T
    else:
        s = _custom_sigmas(sigmas, n)
    s = time_shift(s, mu, config["time_shift_type"]) if dynamic else flow_shift(s, shift)
    if config["shift_terminal"]:
        s = stretch_to_terminal(s, float(config["shift_terminal"]))
    conv = [k for k in _CONVERSIONS[:3] if config[k]]
    if len(conv) > 1:
        raise ValueError(f"config sets {', '.join(conv)}: diffusers uses one of them at a time.")
    if conv:
        s = _convert(conv[0][len("use_"):].split("_")[0], float(s[-1]), float(s[0]), n)
    if config["invert_sigmas"]:
        return _Plan((1.0 - s.astype(np.float32)) * np.float32(T), np.append(1.0 - s, 1.0),
                     np.append(s, 0.0), True)
    return _Plan((s.astype(np.float32) * np.float32(T)).astype(np.float64), np.append(s, 0.0),
                 np.append(s, 0.0), True)


def _plan(config: Mapping[str, Any], n_steps: int, mu=None, image_seq_len=None,
          sigmas=None) -> _Plan:
    n = check_steps(n_steps)
    fam = family(config)
    if fam == "flow":
        return _flow_plan(_flow_config(config, {}), n, mu, image_seq_len, sigmas)
    if image_seq_len is not None:
        if not config.get("use_dynamic_shifting", False):
            raise ValueError("image_seq_len= is only used with "
                             "config['use_dynamic_shifting']=True.")
        mu = flux_mu(image_seq_len, config.get("base_image_seq_len", 256),
                     config.get("max_image_seq_len", 4096), config.get("base_shift", 0.5),
                     config.get("max_shift", 1.15))
    return _vp_plan(config, n, fam, mu, sigmas)


# --------------------------------------------------------------------------------------------
# public


def diffusers_timesteps(config: Mapping[str, Any], n_steps: int, *, mu: float | None = None,
                        image_seq_len: int | None = None, sigmas=None) -> np.ndarray:
    """The timesteps diffusers' ``set_timesteps(n_steps)`` gives for ``config`` (float64).

    Follows ``timestep_spacing`` (``linspace``, ``leading``, ``trailing``) and ``steps_offset`` as
    ``DDIMScheduler`` (also DDPM/PNDM), ``EulerDiscreteScheduler`` (float32 timesteps, also
    Heun/LMS), ``DPMSolverMultistepScheduler`` (with ``lambda_min_clipped``), UniPC, DEIS and
    ``DPMSolverSinglestepScheduler`` (linspace only) do, and the timesteps of
    ``use_karras_sigmas`` / ``use_exponential_sigmas`` / ``use_beta_sigmas`` /
    ``use_lu_lambdas`` (the levels' fractional timesteps, rounded or truncated as each scheduler
    does) and of flow matching (``sigma N``; ``mu`` / ``image_seq_len`` / ``sigmas`` as in
    ``flow_match``). Heun-type schedulers list each inner timestep twice; this returns each
    once (the grid)."""
    return np.ascontiguousarray(_plan(config, n_steps, mu, image_seq_len, sigmas).timesteps,
                                dtype=np.float64)


def diffusers_sigmas(config: Mapping[str, Any], n_steps: int, *, mu: float | None = None,
                     image_seq_len: int | None = None, sigmas=None) -> np.ndarray:
    """diffusers' ``scheduler.sigmas`` after ``set_timesteps(n_steps)`` (``n_steps + 1`` values,
    float64 where diffusers rounds to float32): ``sigma / alpha`` for beta schedules, the flow's
    sigma for flow matching (``1 - sigma`` then 1 with ``invert_sigmas``)."""
    return _plan(config, n_steps, mu, image_seq_len, sigmas).levels


def from_diffusers(config: Mapping[str, Any], n_steps: int, *, mu: float | None = None,
                   image_seq_len: int | None = None, sigmas=None) -> Array:
    """The grid, in times of ``diffusers_schedule`` ``(config)``, through the same noise levels
    as a diffusers scheduler with this config and ``set_timesteps(n_steps)``: ``n_steps + 1``
    times, ``t(s) = t_from_log_snr(-2 log s)`` of diffusers' ``sigmas`` (integer timestep ``k``
    is exactly ``t = (k + 1) / N``; for flow matching ``t`` is the flow's sigma).

    The final point follows ``final_sigmas_type``: ``"zero"`` gives ``t = 0`` and
    ``"sigma_min"`` ``t = 1 / N`` (DEIS always); after Karras / exponential / beta sigmas
    (UniPC, DEIS, DPM-Solver) ``"sigma_min"`` repeats the last level: the grid then ends in a
    step of zero length, as diffusers' does (``validate_grid`` rejects it unless told
    ``allow_zero_final_step=True``; ``grid[:-1]`` drops it). DDIM-type configs step to
    ``alphas_cumprod[0]`` (``t = 1 / N``) or, with ``set_alpha_to_one``, to ``t = 0``. diffusers'
    DDIM steps from timestep ``k`` to ``k - N // n_steps``, the next listed timestep only for
    ``leading`` spacing (and ``trailing`` when ``n_steps`` divides ``N``); the grid steps between
    consecutive timesteps. Flow-matching grids end at ``t = 0`` (with ``invert_sigmas`` too: the
    model is then conditioned on ``1 - t``).
    """
    plan = _plan(config, n_steps, mu, image_seq_len, sigmas)
    if plan.flow:
        times = np.asarray(plan.exact, np.float64)
    else:
        schedule = diffusers_schedule(config)
        from_levels = times_from_levels(schedule, plan.levels,
                                        what=f"{config.get('_class_name')} sigmas")
        times = np.where(np.isnan(plan.exact), from_levels, plan.exact)
    steps = np.diff(times)
    if np.any(steps[:-1] >= 0) or steps[-1] > 0:
        raise ValueError(
            f"n_steps={n_steps} with "
            f"timestep_spacing={config.get('timestep_spacing', 'linspace')!r} "
            "gives repeated timesteps; use fewer steps or 'trailing' spacing."
        )
    return jnp.asarray(times, dtype=float_dtype())


def timestep_spacing(schedule: Schedule, n_steps: int, spacing: str = "trailing", *,
                     steps_offset: int = 0, final_zero: bool = True) -> Array:
    """diffusers' ``timestep_spacing`` (``"linspace"``, ``"leading"``, ``"trailing"``; Lin et al.
    2024, Table 2) as the multistep schedulers (DPM-Solver, UniPC, DEIS) space ``n_steps``
    training timesteps of a ``VPDiscrete`` schedule, then ``t = 0`` (or ``t = 1 / N``, diffusers'
    ``sigma_min``, with ``final_zero=False``). For a whole config use ``from_diffusers``."""
    if not isinstance(schedule, VPDiscrete):
        raise ValueError(f"timestep_spacing picks training timesteps and needs a VPDiscrete "
                         f"schedule, got {describe(schedule)}; use time_uniform.")
    T = schedule.num_train_timesteps
    config = {"num_train_timesteps": T, "timestep_spacing": spacing, "steps_offset": steps_offset}
    ts = _spaced_timesteps(config, check_steps(n_steps), "dpm")
    times = np.append((ts + 1.0) / T, 0.0 if final_zero else 1.0 / T)
    if np.any(np.diff(times) >= 0) or times[0] > 1.0:
        raise ValueError(f"timestep_spacing={spacing!r} with n_steps={n_steps} and "
                         f"steps_offset={steps_offset} repeats or leaves the training timesteps.")
    return jnp.asarray(times, dtype=float_dtype())


def flow_match(config: Mapping[str, Any] | None = None, n_steps: int | None = None, *,
               mu: float | None = None, image_seq_len: int | None = None, sigmas=None,
               **options: Any) -> Array:
    """The ``RectifiedFlow`` grid of diffusers' ``FlowMatchEulerDiscreteScheduler`` for
    ``config`` (a dict; ``options`` override its keys: ``shift``, ``use_dynamic_shifting``,
    ``base_shift``, ``max_shift``, ``base_image_seq_len``, ``max_image_seq_len``,
    ``time_shift_type``, ``shift_terminal``, ``invert_sigmas``, ``use_karras_sigmas``, ...;
    defaults in ``FLOW_MATCH_DEFAULTS``): ``n_steps + 1`` times ending at ``t = 0``.

    - SD3: ``flow_match({"shift": 3.0}, 28)``: ``t = linspace(1, shift(1/N), n)`` shifted by
      ``flow_shift`` (diffusers shifts the smallest time twice; so does this).
    - Flux: ``flow_match(flux_config, n, image_seq_len=4096, sigmas=np.linspace(1, 1/n, n))``
      with ``use_dynamic_shifting=True``: ``mu`` from ``flux_mu`` (or pass ``mu=``), then
      ``time_shift`` (``time_shift_type``). The Flux pipeline passes those ``sigmas``.
    - ``shift_terminal``: ``stretch_to_terminal``; ``use_karras_sigmas`` & co. respace the
      shifted times between their ends (in ``t``, as diffusers does for flows).
    - ``invert_sigmas`` (Mochi) changes what diffusers stores (``1 - t``), not the noise levels.
    """
    if n_steps is None:
        raise ValueError("flow_match needs n_steps.")
    unknown = sorted(set(options) - set(FLOW_MATCH_DEFAULTS))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(FLOW_MATCH_DEFAULTS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"flow_match got unknown options {unknown}.{hint} Known: "
                         f"{', '.join(sorted(FLOW_MATCH_DEFAULTS))}.")
    plan = _flow_plan(_flow_config(config, options), check_steps(n_steps), mu, image_seq_len,
                      sigmas)
    return jnp.asarray(plan.exact, dtype=float_dtype())
