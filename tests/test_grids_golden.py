"""jaxdist's grids against their peers' numbers, with no torch installed.

``golden/grids_peers.json`` is written by ``benchmarks/parity_grids.py`` from real diffusers
0.42.1 ``set_timesteps`` (beta-schedule configs rerun with float64 ``alphas_cumprod``: the same
algorithm without float32 rounding; ``sigmas_stock`` is the shipped float32 run), k-diffusion's
``get_sigmas_*`` (float64) and ComfyUI's own scheduler code (``comfy/samplers.py``,
``ModelSamplingDiscrete`` / ``ModelSamplingDiscreteFlow``, the AYS and GITS nodes). Sigmas are
stored to 12 digits (float32 where the peer rounds to float32); the targets are relative 1e-6.
"""

import json
from pathlib import Path

import numpy as np
import pytest

import jaxdist as jd
from jaxdist.grids import (diffusers_schedule, diffusers_sigmas, diffusers_timesteps,
                           from_diffusers, validate_grid)
from jaxdist.grids.common import evaluate

from test_schedules import SD

GOLDEN = json.loads((Path(__file__).parent / "golden" / "grids_peers.json").read_text())
DIFFUSERS = {row["name"]: row for row in GOLDEN["diffusers"]}
RTOL = 1e-6


def _noise_levels(schedule, grid, config):
    """diffusers' ``sigmas`` of a jaxdist grid: sigma/alpha, or the flow's sigma (inverted)."""
    g = np.asarray(grid, np.float64)
    if isinstance(schedule, jd.schedules.RectifiedFlow):
        return np.append(1.0 - g[:-1], 1.0) if config.get("invert_sigmas") else g
    return evaluate(schedule, "sigma_over_alpha", grid)


@pytest.mark.parametrize("name", list(DIFFUSERS))
def test_from_diffusers_matches_set_timesteps(x64, name):
    row = DIFFUSERS[name]
    config, n, kwargs = row["config"], row["n_steps"], row["kwargs"]
    want = np.asarray(row["sigmas"])
    schedule = diffusers_schedule(config)
    grid = from_diffusers(config, n, **kwargs)
    assert grid.shape == (n + 1,)
    np.testing.assert_allclose(_noise_levels(schedule, grid, config), want, rtol=RTOL, atol=0)
    np.testing.assert_allclose(diffusers_sigmas(config, n, **kwargs), want, rtol=RTOL, atol=0)
    if "sigmas_stock" in row:  # shipped diffusers: float32 alphas_cumprod (up to 2.6e-4 off)
        np.testing.assert_allclose(_noise_levels(schedule, grid, config), row["sigmas_stock"],
                                   rtol=5e-4, atol=0)
    ts, want_ts = diffusers_timesteps(config, n, **kwargs), np.asarray(row["timesteps"])
    assert ts.shape == want_ts.shape
    integer = not (config["_class_name"].startswith(("Euler", "Heun", "LMS", "FlowMatch")))
    np.testing.assert_allclose(ts, want_ts, rtol=0, atol=0 if integer else 1e-3)  # float32 ulps
    # a valid grid for jd.sample; diffusers' sigma_min after converted sigmas repeats the end
    zero_final = bool(want[-1] == want[-2])
    validate_grid(schedule, grid, allow_zero_final_step=zero_final)
    if zero_final:
        with pytest.raises(ValueError, match="repeats its last time"):
            validate_grid(schedule, grid)
        validate_grid(schedule, grid[:-1])


def test_integer_timesteps_are_exact_times(x64):
    """Integer diffusers timesteps k are jaxdist times (k + 1) / N exactly, so the model is
    called at the same index (model_time = N t - 1)."""
    row = DIFFUSERS["dpm_leading_offset1"]
    grid = np.asarray(from_diffusers(row["config"], row["n_steps"]))
    np.testing.assert_array_equal(grid[:-1], (np.asarray(row["timesteps"]) + 1) / 1000)
    schedule = diffusers_schedule(row["config"])
    np.testing.assert_allclose(evaluate(schedule, "model_time", grid[:-1]), row["timesteps"],
                               atol=1e-9)


def test_kdiffusion_sigmas(x64):
    """k-diffusion's get_sigmas_karras / exponential / polyexponential (n points and 0) on EDM."""
    fns = {"karras": lambda s, a: jd.grids.karras(s, a["n"], rho=a["rho"], final_zero=True),
           "exponential": lambda s, a: jd.grids.exponential(s, a["n"]),
           "polyexponential": lambda s, a: jd.grids.polyexponential(s, a["n"], rho=a["rho"])}
    for row in GOLDEN["kdiffusion"]:
        a = row["args"]
        schedule = jd.schedules.EDM(sigma_min=a["sigma_min"], sigma_max=a["sigma_max"])
        got = np.asarray(fns[row["fn"]](schedule, a))
        np.testing.assert_allclose(got, row["sigmas"], rtol=1e-11, atol=0, err_msg=str(row))


def _comfy_schedule(model):
    if model == "flow":
        return jd.schedules.RectifiedFlow()
    if model == "svd":
        return jd.schedules.EDM(sigma_min=0.002, sigma_max=700.0)
    return jd.schedules.VPDiscrete.from_diffusers_config(SD)  # ComfyUI's SD 1.5 / SDXL sampling


@pytest.mark.parametrize("row", GOLDEN["comfyui"],
                         ids=lambda r: f"{r['scheduler']}-{r['model']}-{r['steps']}"
                                       + (f"-{r['coeff']}" if "coeff" in r else ""))
def test_comfyui_schedulers(x64, row):
    """ComfyUI's schedulers, run from its source: the same noise levels (float32 there)."""
    options = {"coeff": row["coeff"]} if "coeff" in row else {}
    if row["scheduler"] == "ays":
        options["model"] = row["model"]
    schedule = _comfy_schedule(row["model"])
    grid = jd.grids.by_name(row["scheduler"], schedule, row["steps"], **options)
    levels = np.asarray(grid) if row["model"] == "flow" else evaluate(schedule, "sigma_over_alpha",
                                                                       grid)
    # ComfyUI's karras / exponential / kl_optimal start from float32 sigma_min / sigma_max
    rtol = 2e-6 if row["scheduler"] in ("karras", "exponential", "kl_optimal") else RTOL
    np.testing.assert_allclose(levels, row["sigmas"], rtol=rtol, atol=0)
    validate_grid(schedule, grid)


def test_diffusers_ays_table(x64):
    """diffusers' AysSchedules: the published sigmas (3 decimals) and, for SD 1.5 / SDXL, the
    timesteps whose training sigmas they are."""
    ays = GOLDEN["diffusers_ays"]
    for key, model in (("StableDiffusionSigmas", "sd1"), ("StableDiffusionXLSigmas", "sdxl"),
                       ("StableDiffusionVideoSigmas", "svd")):
        ours = np.asarray(jd.grids.AYS_NOISE_LEVELS[model])
        np.testing.assert_allclose(ours[:-1], ays[key][:-1], rtol=0, atol=5.1e-4 * ours[0])
        assert ays[key][-1] == 0.0
    schedule = jd.schedules.VPDiscrete.from_diffusers_config(SD)
    for key, model in (("StableDiffusionTimesteps", "sd1"), ("StableDiffusionXLTimesteps", "sdxl")):
        grid = jd.grids.ays(schedule, 10, model, final_zero=False)
        np.testing.assert_allclose(evaluate(schedule, "model_time", grid), ays[key] + [0],
                                   atol=1e-6)
