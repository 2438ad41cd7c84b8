"""Time grids: decreasing arrays of times ``t_0 > t_1 > ... > t_N`` (``N`` steps, ``N + 1`` times).

Every grid function takes the schedule and the number of steps and returns float times (never
rounded: only the model's input time is quantised, by the schedule), from noise to data. Noise
levels are the EDM-equivalent ``s = sigma / alpha`` (k-diffusion's, ComfyUI's and diffusers'
``sigma``), mapped to times by ``t_from_log_snr(-2 log s)``; ``t = 0`` is clean data.

- formula spacings (``jaxdist.grids.spacing``): ``time_uniform``, ``time_quadratic``,
  ``logsnr_uniform``, ``karras``, ``exponential``, ``polyexponential``, ``kl_optimal``;
- ComfyUI's time-based schedulers (``jaxdist.grids.comfy``): ``simple``, ``normal``,
  ``sgm_uniform``, ``ddim_uniform``, ``beta``, ``linear_quadratic``;
- published tables (``jaxdist.grids.published``): ``ays`` (Align Your Steps), ``gits``;
- flow shifts (``jaxdist.grids.flow``): ``flow_shift``, ``time_shift``, ``flux_mu``,
  ``stretch_to_terminal``, and ``flow_match`` (diffusers' ``FlowMatchEulerDiscreteScheduler``);
- diffusers configs (``jaxdist.grids.diffusers_config``): ``from_diffusers``,
  ``diffusers_timesteps``, ``diffusers_sigmas``, ``diffusers_schedule``, ``timestep_spacing``;
- by name: ``GRIDS`` and ``by_name(name, schedule, n_steps, **options)``;
- ``validate_grid``, the check ``jd.sample`` runs.
"""

from __future__ import annotations

from .comfy import beta, ddim_uniform, linear_quadratic, normal, sgm_uniform, simple
from .common import append_zero
from .diffusers_config import (FLOW_MATCH_DEFAULTS, diffusers_schedule, diffusers_sigmas,
                               diffusers_timesteps, flow_match, from_diffusers, timestep_spacing)
from .flow import flow_shift, flux_mu, stretch_to_terminal, time_shift
from .published import AYS_NOISE_LEVELS, GITS_COEFFS, ays, gits, loglinear_interp
from .registry import GRIDS, by_name
from .spacing import (exponential, karras, kl_optimal, logsnr_uniform, polyexponential,
                      time_quadratic, time_uniform)
from .validation import validate_grid

__all__ = [
    "time_uniform",
    "time_quadratic",
    "logsnr_uniform",
    "karras",
    "exponential",
    "polyexponential",
    "kl_optimal",
    "simple",
    "normal",
    "sgm_uniform",
    "ddim_uniform",
    "beta",
    "linear_quadratic",
    "ays",
    "gits",
    "loglinear_interp",
    "AYS_NOISE_LEVELS",
    "GITS_COEFFS",
    "flow_shift",
    "time_shift",
    "flux_mu",
    "stretch_to_terminal",
    "flow_match",
    "FLOW_MATCH_DEFAULTS",
    "from_diffusers",
    "diffusers_timesteps",
    "diffusers_sigmas",
    "diffusers_schedule",
    "timestep_spacing",
    "GRIDS",
    "by_name",
    "append_zero",
    "validate_grid",
]
