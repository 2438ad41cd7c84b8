"""``--grid NAME``: the time grids the command line offers, a name -> ``jaxdist.grids`` table.

``jaxdist sample --solver dpm++2m --grid karras`` is "DPM++ 2M Karras". Every grid runs from the
schedule's start time to its ``t_min`` (the start is ``t_max``, except rectified flow, which
starts at ``t = 0.999`` so that noise-prediction solvers can run there). The diffusers spacings
place diffusers' timestep indices ``i`` of a 1000-step discretisation at ``t = t_start (i + 1) /
1000`` (for the VP-linear schedule exactly DDPM's timesteps) and end at ``t_min``.
"""

from __future__ import annotations

from typing import Any

from .options import CLIError

__all__ = ["GRIDS", "DIFFUSERS_SPACINGS", "default_grid", "time_range", "build_grid"]

#: name -> what it is (the names ``--grid`` accepts)
GRIDS = {
    "default": "the schedule's usual grid: karras for EDM, time-uniform for rectified flow, "
               "logsnr otherwise",
    "karras": "Karras et al. (2022), rho = 7, in sigma / alpha (k-diffusion; diffusers' "
              "use_karras_sigmas)",
    "logsnr": "uniform in log-SNR (DPM-Solver's logSNR; k-diffusion's exponential)",
    "time-uniform": "uniform in t",
    "time-quadratic": "uniform in sqrt(t) (DPM-Solver's time_quadratic)",
    "linspace": "diffusers' timestep_spacing='linspace'",
    "leading": "diffusers' timestep_spacing='leading' (first step below t_max)",
    "trailing": "diffusers' timestep_spacing='trailing'",
}
DIFFUSERS_SPACINGS = ("linspace", "leading", "trailing")
#: ``--grid`` name -> function of ``jaxdist.grids`` taking ``(schedule, n, t_start, t_end)``
_FUNCTIONS = {"logsnr": "logsnr_uniform", "time-uniform": "time_uniform",
              "time-quadratic": "time_quadratic"}
_TRAIN_TIMESTEPS = 1000


def default_grid(schedule: Any) -> str:
    """The grid name a schedule is sampled on by default."""
    kind = type(schedule).__name__
    return {"EDM": "karras", "RectifiedFlow": "time-uniform"}.get(kind, "logsnr")


def time_range(schedule: Any) -> tuple[float, float]:
    """``(t_start, t_end)`` of the command line's grids for ``schedule``."""
    if type(schedule).__name__ == "RectifiedFlow":
        return 0.999, float(schedule.t_min)
    return float(schedule.t_max), float(schedule.t_min)


def build_grid(name: str, schedule: Any, n_steps: int):
    """The grid ``name`` (see :data:`GRIDS`) of ``n_steps`` steps for ``schedule``."""
    from .. import grids

    if name == "default":
        name = default_grid(schedule)
    if name not in GRIDS:
        raise CLIError(f"unknown grid {name!r}; use one of {', '.join(GRIDS)}")
    t_start, t_end = time_range(schedule)
    if name == "karras":
        return grids.karras(schedule, n_steps, t_start=t_start, t_end=t_end)
    if name in _FUNCTIONS:
        return getattr(grids, _FUNCTIONS[name])(schedule, n_steps, t_start, t_end)
    kind = type(schedule).__name__
    if kind in ("EDM", "VE"):
        raise CLIError(f"--grid {name} places diffusers' timesteps in a VP or flow schedule's time "
                       f"in [0, 1]; this run's schedule is {kind}: use --grid karras")
    import jax.numpy as jnp
    import numpy as np

    config = {"_class_name": "DPMSolverMultistepScheduler", "timestep_spacing": name,
              "num_train_timesteps": _TRAIN_TIMESTEPS}
    index = grids.diffusers_timesteps(config, n_steps)
    times = np.concatenate([t_start * (index + 1.0) / _TRAIN_TIMESTEPS, [t_end]])
    return jnp.asarray(times, dtype=jnp.result_type(float))
