"""jaxdist against diffusers' and k-diffusion's own numbers, with no torch installed.

``golden/parity_diffusers.json`` (``benchmarks/parity_diffusers.py``, diffusers 0.42.1 in
float64): the full loops of diffusers' scheduler tests (their configs, dummy model
``x t / (t + 1)`` and ``dummy_sample_deter``), run here through ``from_diffusers_scheduler`` /
``denoiser_from_diffusers`` (``jaxdist.testing.scheduler_tests.full_loop``). Target: relative
1e-4 on the stored slice and on ``sum |x|`` for every config jaxdist expresses; the others must
raise ``ValueError`` with the stored reason.

``golden/parity_kdiffusion.json`` (``benchmarks/parity_kdiffusion.py``): k-diffusion's
``sample_*`` on an exact Gaussian-mixture denoiser with Karras sigmas, stochastic ones with a
shared noise table (``jaxdist.testing.kdiffusion_problem``). Target: relative 1e-14 in float64.
"""

import json
from pathlib import Path

import numpy as np
import pytest

import jaxdist as jd
from jaxdist.testing import kdiffusion_problem, scheduler_tests

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
DIFFUSERS = json.loads((GOLDEN / "parity_diffusers.json").read_text())
KDIFFUSION = json.loads((GOLDEN / "parity_kdiffusion.json").read_text())


def _relative_error(ours: np.ndarray, row: dict) -> float:
    flat = ours.reshape(-1)
    want = np.asarray(row["slice"])
    return float(max(np.abs(flat[::32] - want).max() / np.abs(want).max(),
                     abs(np.abs(flat).sum() - row["sum_abs"]) / row["sum_abs"]))


@pytest.mark.parametrize("row", DIFFUSERS["cases"], ids=lambda r: r["name"])
def test_diffusers_full_loops(x64, row):
    if not row["expressible"]:
        with pytest.raises(ValueError):
            scheduler_tests.full_loop(row)
        return
    ours = scheduler_tests.full_loop(row)
    assert ours.shape == (4, 3, 8, 8)
    assert _relative_error(ours, row) <= DIFFUSERS["rtol"], row["config"]


def test_diffusers_golden_covers_the_scheduler_tests():
    """Every scheduler family of diffusers' tests that jaxdist translates is in the golden."""
    classes = {row["config"]["_class_name"] for row in DIFFUSERS["cases"]}
    assert set(jd.solvers.diffusers_compat.SUPPORTED_SCHEDULERS) <= classes
    assert DIFFUSERS["versions"]["diffusers"] == "0.42.1"


@pytest.mark.parametrize("row", KDIFFUSION["samplers"], ids=lambda r: r["name"])
def test_kdiffusion_samplers(x64, row):
    x_T, noise = np.asarray(KDIFFUSION["x_T"]), np.asarray(KDIFFUSION["noise"])
    ours = kdiffusion_problem.run(row["name"], x_T, noise, KDIFFUSION["n_steps"],
                                  np.asarray(KDIFFUSION["stage_noise"]))
    want = np.asarray(row["x"])
    assert np.abs(ours - want).max() <= KDIFFUSION["rtol"] * np.abs(want).max()


def test_noise_table_is_the_noise_a_sampler_sees(x64):
    """The shared table reaches the solver step by step (a wrong index would still be normal
    noise: check that changing one row changes the result and the others do not)."""
    x_T, noise = np.asarray(KDIFFUSION["x_T"]), np.asarray(KDIFFUSION["noise"])
    base = kdiffusion_problem.run("euler_ancestral", x_T, noise, KDIFFUSION["n_steps"])
    last = noise.copy()
    last[-1] += 1.0  # the step to sigma = 0 draws no noise
    np.testing.assert_array_equal(
        kdiffusion_problem.run("euler_ancestral", x_T, last, KDIFFUSION["n_steps"]), base)
    first = noise.copy()
    first[0] += 1.0
    assert np.abs(kdiffusion_problem.run("euler_ancestral", x_T, first,
                                         KDIFFUSION["n_steps"]) - base).max() > 1e-3


#: ``result_mean`` that diffusers' own tests assert (tests/schedulers/test_scheduler_*.py, 1e-3)
DIFFUSERS_ASSERTED_MEANS = {
    "dpm_multi": 0.3301, "dpm_multi_v": 0.2251, "dpm_multi_karras_v": 0.2096,
    "dpm_multi_lu_v": 0.1554, "dpm_multi_noise": 0.4146, "dpm_single": 0.2791,
    "dpm_single_karras": 0.2248, "dpm_single_v": 0.1453, "dpm_single_karras_v": 0.0649,
    "dpm_single_noise": 0.3505, "unipc": 0.2464, "unipc_karras": 0.2925, "unipc_v": 0.1014,
    "unipc_karras_v": 0.1966, "pndm_prk": 0.2580, "pndm_prk_alpha_one": 0.2995,
    "pndm_prk_no_alpha_one": 0.2434,
}


def test_golden_reproduces_diffusers_own_assertions():
    """The golden loops are diffusers' test loops: their means are the values diffusers' tests
    assert (to the tests' 1e-3; the golden runs in float64)."""
    rows = {row["name"]: row for row in DIFFUSERS["cases"]}
    for name, mean in DIFFUSERS_ASSERTED_MEANS.items():
        assert abs(rows[name]["mean_abs"] - mean) < 1e-3, name
