"""Align Your Steps and GITS against the published tables.

``golden/grids_published.json`` holds ComfyUI's ``NOISE_LEVELS`` of its AYS and GITS nodes
verbatim (NVIDIA's 10-step AYS sigmas for SD 1.5 / SDXL / SVD; the GITS authors' SD 1.5 schedules
for every coefficient and 2..20 steps). jaxdist stores GITS as points of its 101-point teacher
grid, so this checks that representation against every published number.
"""

import json
from pathlib import Path

import numpy as np
import pytest

import jaxdist as jd
from jaxdist.grids.common import evaluate

from test_schedules import SD

PUBLISHED = json.loads((Path(__file__).parent / "golden" / "grids_published.json").read_text())


def _levels(schedule, grid):
    return evaluate(schedule, "sigma_over_alpha", grid)


def test_gits_equals_every_published_schedule(x64):
    sd = jd.schedules.VPDiscrete.from_diffusers_config(SD)
    assert sorted(float(c) for c in PUBLISHED["gits"]) == list(jd.grids.GITS_COEFFS)
    for coeff, rows in PUBLISHED["gits"].items():
        assert len(rows) == 19
        for n, want in enumerate(rows, start=2):
            grid = jd.grids.gits(sd, n, float(coeff), final_zero=False)
            assert grid.shape == (n + 1,)
            np.testing.assert_allclose(_levels(sd, grid), want, rtol=1e-9, err_msg=f"{coeff} {n}")
            # ComfyUI's sigmas: the last level replaced by clean data
            zero = np.asarray(jd.grids.gits(sd, n, float(coeff)))
            np.testing.assert_array_equal(zero[:-1], np.asarray(grid)[:-1])
            assert zero[-1] == 0.0


def test_ays_equals_published_levels(x64):
    sd = jd.schedules.VPDiscrete.from_diffusers_config(SD)
    svd = jd.schedules.EDM(sigma_min=0.002, sigma_max=700.0)
    for model, want in PUBLISHED["ays"].items():
        schedule = svd if model == "SVD" else sd
        grid = jd.grids.ays(schedule, 10, model.lower(), final_zero=False)
        np.testing.assert_allclose(_levels(schedule, grid), want, rtol=1e-9)
        np.testing.assert_allclose(jd.grids.AYS_NOISE_LEVELS[model.lower()], want, rtol=0)
    # SD 1.5's levels are SD's training sigmas at the published timesteps (to the 10 digits given)
    np.testing.assert_allclose(evaluate(sd, "model_time", jd.grids.ays(sd, 10, final_zero=False)),
                               [999, 850, 736, 645, 545, 455, 343, 233, 124, 24, 0], atol=1e-6)


def test_loglinear_interpolation_rule():
    """21 points from 11: the originals at even indices, geometric means between them; the same
    count returns the table; the end points are always kept."""
    table = np.asarray(jd.grids.AYS_NOISE_LEVELS["sd1"])
    np.testing.assert_allclose(jd.grids.loglinear_interp(table, 11), table, rtol=1e-14)
    fine = jd.grids.loglinear_interp(table, 21)
    np.testing.assert_allclose(fine[::2], table, rtol=1e-14)
    np.testing.assert_allclose(fine[1::2], np.sqrt(table[:-1] * table[1:]), rtol=1e-13)
    for n in (2, 5, 40):
        out = jd.grids.loglinear_interp(table, n)
        assert out.shape == (n,) and out[0] == pytest.approx(table[0]) and \
            out[-1] == pytest.approx(table[-1]) and np.all(np.diff(out) < 0)
    with pytest.raises(ValueError, match="strictly decreasing"):
        jd.grids.loglinear_interp(table[::-1], 5)
    with pytest.raises(ValueError, match="n_points"):
        jd.grids.loglinear_interp(table, 1)


def test_ays_and_gits_other_step_counts(x64):
    sd = jd.schedules.VPDiscrete.from_diffusers_config(SD)
    table = np.asarray(jd.grids.AYS_NOISE_LEVELS["sdxl"])
    grid = jd.grids.ays(sd, 20, "sdxl")
    np.testing.assert_allclose(_levels(sd, grid[:-1]), jd.grids.loglinear_interp(table, 21)[:-1],
                               rtol=1e-9)
    last = PUBLISHED["gits"]["1.20"][-1]  # beyond 20 steps: the 20-step schedule, interpolated
    grid = jd.grids.gits(sd, 30, final_zero=False)
    np.testing.assert_allclose(_levels(sd, grid), jd.grids.loglinear_interp(last, 31), rtol=1e-9)


def test_published_grids_on_other_schedules(x64):
    """The SD levels on any schedule that covers them (same noise levels); SVD needs
    sigma_max >= 700 or rescale=True, which maps the table's log range onto the schedule's."""
    table = np.asarray(jd.grids.AYS_NOISE_LEVELS["sd1"])
    for schedule in (jd.schedules.EDM(), jd.schedules.VE(), jd.schedules.VPLinear(),
                     jd.schedules.RectifiedFlow()):
        grid = jd.grids.ays(schedule, 10)
        np.testing.assert_allclose(_levels(schedule, grid[:-1]), table[:-1], rtol=1e-8)
        jd.grids.validate_grid(schedule, grid)
    edm = jd.schedules.EDM()
    with pytest.raises(ValueError, match="outside.*rescale=True"):
        jd.grids.ays(edm, 10, "svd")
    grid = np.asarray(jd.grids.ays(edm, 10, "svd", rescale=True, final_zero=False))
    assert grid[0] == pytest.approx(80.0) and grid[-1] == pytest.approx(0.002)
    svd = np.asarray(jd.grids.AYS_NOISE_LEVELS["svd"])
    np.testing.assert_allclose(np.diff(np.log(grid)) / np.log(80 / 0.002),
                               np.diff(np.log(svd)) / np.log(700 / 0.002), rtol=1e-9)
    with pytest.raises(ValueError, match="finite noise level"):
        jd.grids.ays(jd.schedules.RectifiedFlow(), 10, rescale=True)


def test_published_grid_errors():
    sd = jd.schedules.VPDiscrete.from_diffusers_config(SD)
    with pytest.raises(ValueError, match="model='sd2'.*sd1"):
        jd.grids.ays(sd, 10, "sd2")
    with pytest.raises(ValueError, match=r"coeff=1.23.*0.80, 0.85"):
        jd.grids.gits(sd, 10, 1.23)
    with pytest.raises(ValueError, match="n_steps=1 must be an integer >= 2"):
        jd.grids.gits(sd, 1)
    with pytest.raises(ValueError, match="n_steps=0"):
        jd.grids.ays(sd, 0)
