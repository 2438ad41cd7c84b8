"""Grids by name: ``GRIDS`` maps the names people use (jaxdist's, k-diffusion's, ComfyUI's and
diffusers' spacings) to grid functions ``fn(schedule, n_steps, **options)``, with the defaults
those tools use (every k-diffusion / ComfyUI schedule ends at ``t = 0``); ``by_name`` looks
one up with a did-you-mean for typos."""

from __future__ import annotations

import difflib
import functools
import inspect
from typing import Any, Callable

import jax

from ..schedules import RectifiedFlow, Schedule
from .comfy import beta, ddim_uniform, linear_quadratic, normal, sgm_uniform, simple
from .common import describe
from .diffusers_config import flow_match, timestep_spacing
from .published import ays, gits
from .spacing import (exponential, karras, kl_optimal, logsnr_uniform, polyexponential,
                      time_quadratic, time_uniform)

Array = jax.Array

__all__ = ["GRIDS", "by_name"]


def flow_match_grid(schedule: Schedule, n_steps: int, **options: Any) -> Array:
    """``flow_match`` (diffusers' ``FlowMatchEulerDiscreteScheduler``, e.g. ``shift=3.0``)
    on a ``RectifiedFlow`` schedule."""
    if not isinstance(schedule, RectifiedFlow):
        raise ValueError(f"flow_match is a rectified-flow grid; got {describe(schedule)}.")
    return flow_match(None, n_steps, **options)


GRIDS: dict[str, Callable[..., Array]] = {
    # jaxdist / DPM-Solver spacings (end at t_min unless final_zero=True)
    "time_uniform": time_uniform,
    "time_quadratic": time_quadratic,
    "logsnr_uniform": logsnr_uniform,
    # k-diffusion / ComfyUI / A1111 schedulers (end at t = 0)
    "karras": functools.partial(karras, final_zero=True),
    "exponential": exponential,
    "polyexponential": polyexponential,
    "kl_optimal": kl_optimal,
    "simple": simple,
    "normal": normal,
    "sgm_uniform": sgm_uniform,
    "ddim_uniform": ddim_uniform,
    "beta": beta,
    "linear_quadratic": linear_quadratic,
    # published, optimised tables
    "ays": ays,
    "ays_sd1": functools.partial(ays, model="sd1"),
    "ays_sdxl": functools.partial(ays, model="sdxl"),
    "ays_svd": functools.partial(ays, model="svd"),
    "gits": gits,
    # diffusers
    "linspace": functools.partial(timestep_spacing, spacing="linspace"),
    "leading": functools.partial(timestep_spacing, spacing="leading"),
    "trailing": functools.partial(timestep_spacing, spacing="trailing"),
    "flow_match": flow_match_grid,
}

_ALIASES = {"logsnr": "logsnr_uniform", "uniform": "time_uniform", "quadratic": "time_quadratic",
            "lu": "exponential", "align_your_steps": "ays", "kl": "kl_optimal",
            "sgm": "sgm_uniform", "flow": "flow_match", "sd3": "flow_match"}


def _normalise(name: str) -> str:
    return str(name).strip().lower().replace("-", "_").replace(" ", "_")


def by_name(name: str, schedule: Schedule, n_steps: int, **options: Any) -> Array:
    """``GRIDS[name](schedule, n_steps, **options)``. Names are case-insensitive, ``-`` and ``_``
    alike (``"time-uniform"``), with a few aliases (``"logsnr"``, ``"lu"``, ``"sd3"``). An
    unknown name or option raises a ``ValueError`` with the closest known ones."""
    key = _normalise(name)
    key = _ALIASES.get(key, key)
    if key not in GRIDS:
        known = sorted(GRIDS) + sorted(_ALIASES)
        close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown grid {name!r}.{hint} Known grids: {', '.join(sorted(GRIDS))}.")
    fn = GRIDS[key]
    params = inspect.signature(fn).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    allowed = [p for p in list(params)[2:] if params[p].kind is not inspect.Parameter.VAR_KEYWORD]
    for option in options:
        if option not in allowed and not accepts_any:
            close = difflib.get_close_matches(option, allowed, n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"grid {key!r} has no option {option!r}.{hint} Its options: "
                             f"{', '.join(allowed) or 'none'}.")
    return fn(schedule, n_steps, **options)
