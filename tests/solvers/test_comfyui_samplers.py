"""ComfyUI's newer samplers (RES multistep, gradient estimation, ER-SDE, SEEDS, SA-Solver): parity
with ComfyUI's own code draw for draw, the ODE limits, and the convergence orders not covered by
the contract test (which checks ``res-multistep`` and ``gradient-estimation``).

``golden/parity_comfyui.json`` (``benchmarks/parity_comfyui.py``, ComfyUI's
``comfy/k_diffusion/sampling.py`` in float64): the k-diffusion parity problem (exact mixture
denoiser, Karras sigmas 80 -> 0.002 and 0, 10 steps, 16 points) with ComfyUI's sigmas as the grid
and its ``noise_sampler`` draws handed to the same sub-steps (matched by their start sigma).
"""

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sde_helpers import logsnr_grid, weak_error

import jaxdist as jd
from jaxdist.solvers import (DPMSolverPP, ERSDE, SEEDS, GradientEstimation, RESMultistep,
                             SASolver)
from jaxdist.solvers.er_sde import identity_noise_scaler
from jaxdist.testing import empirical_order
from jaxdist.testing.kdiffusion_problem import MIXTURE, SIGMA_MAX, SIGMA_MIN

GOLDEN = json.loads((Path(__file__).resolve().parents[1] / "golden" / "parity_comfyui.json")
                    .read_text())
#: relative to max |x|: float64 round-off of 10 steps (measured <= 3.3e-15)
RTOL = 1e-13
VP = jd.schedules.VPLinear()


@dataclasses.dataclass(frozen=True, eq=False)
class CallTable:
    """Noise source: the draw of ComfyUI's ``noise_sampler`` call that started at the same sigma."""

    starts: np.ndarray  # [calls]
    table: np.ndarray   # [>= calls, *x.shape]

    def sample(self, key, x, t, t_next):
        del key, t_next
        i = jnp.argmin(jnp.abs(jnp.asarray(self.starts, x.dtype) - t))
        return jnp.asarray(self.table, x.dtype)[i]


SOLVERS = {
    "res_multistep": lambda nz: RESMultistep(),
    "res_multistep_ancestral": lambda nz: RESMultistep(eta=1.0, noise=nz),
    "res_multistep_ancestral_eta0.5": lambda nz: RESMultistep(eta=0.5, noise=nz),
    "gradient_estimation": lambda nz: GradientEstimation(),
    "gradient_estimation_gamma1.5": lambda nz: GradientEstimation(gamma=1.5),
    "er_sde": lambda nz: ERSDE(noise=nz),
    "er_sde_stage2_s_noise0.5": lambda nz: ERSDE(order=2, s_noise=0.5, noise=nz),
    "seeds_2": lambda nz: SEEDS(stage_count=2, noise=nz),
    "seeds_2_eta0": lambda nz: SEEDS(stage_count=2, eta=0.0),
    "seeds_3": lambda nz: SEEDS(stage_count=3, noise=nz),
    "sa_solver": lambda nz: SASolver(noise=nz),
    "sa_solver_pece": lambda nz: SASolver(pece=True, noise=nz),
    "sa_solver_p2_c3": lambda nz: SASolver(predictor_order=2, corrector_order=3, noise=nz),
}


def test_comfyui_parity(x64):
    """Every golden row: max |jaxdist - ComfyUI| <= 1e-13 max |ComfyUI| (float64)."""
    schedule = jd.schedules.EDM(sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)
    den = jd.testing.GaussianMixture(*(jnp.asarray(a, jnp.float64) for a in MIXTURE)
                                     ).denoiser(schedule)
    grid = jnp.asarray(GOLDEN["sigmas"], jnp.float64)
    x_T, draws = jnp.asarray(GOLDEN["x_T"]), np.asarray(GOLDEN["noise"])
    assert {row["name"] for row in GOLDEN["samplers"]} == set(SOLVERS)
    errors = {}
    for row in GOLDEN["samplers"]:
        starts = np.asarray(row["noise_starts"] or [0.0])
        solver = SOLVERS[row["name"]](CallTable(starts, draws[:len(starts)]))
        key = jax.random.key(0) if solver.stochastic else None
        ours = np.asarray(jd.sample(solver, den, x_T, grid, key).x)
        want = np.asarray(row["x"])
        errors[row["name"]] = float(np.abs(ours - want).max() / np.abs(want).max())
    assert max(errors.values()) <= RTOL, errors


def test_seeds_eta_zero_is_dpm_solver_pp_singlestep(x64):
    """SEEDS-3 with eta = 0 and full steps is DPM-Solver++(3S) with r = 1/3, 2/3 (to 1e-12)."""
    den = jd.testing.GaussianMixture([0.3, 0.7], [[-2.0, 0.0], [2.0, 0.5]], [[0.09, 0.04],
                                                                            [0.04, 0.09]]).denoiser(VP)
    x_T = jax.random.normal(jax.random.key(0), (8, 2), jnp.float64)
    grid = jd.grids.logsnr_uniform(VP, 6)
    seeds = jd.sample(SEEDS(stage_count=3, eta=0.0, denoise_final=False), den, x_T, grid)
    dpm = jd.sample(DPMSolverPP(order=3, method="singlestep", lower_order_final=False), den, x_T,
                    grid)
    assert int(seeds.nfe) == int(dpm.nfe) == 18
    np.testing.assert_allclose(seeds.x, dpm.x, rtol=0, atol=1e-12)


@pytest.mark.parametrize("solver", [
    SASolver(predictor_order=2, corrector_order=3, eta=0.0),
    ERSDE(noise_scaler=identity_noise_scaler, quadrature="gauss"),
], ids=["sa-solver-ode", "er-sde-ode"])
def test_ode_limits_converge_at_their_order(x64, solver):
    """tau = 0 SA-Solver (2-step predictor, 3-step corrector: order 3) and ER-SDE with the
    identity noise scaler (no noise; order 2): the contract's protocol, order within 0.15."""
    gmm = jd.testing.GaussianMixture([1.0], [[0.3, -0.2, 0.5]], [[0.5, 0.2, 0.3]])
    den = gmm.denoiser(VP)
    x_T = jax.random.normal(jax.random.key(0), (8, 3), jnp.float64)
    res = jd.testing.measure_order(
        solver, den, x_T, (64, 128, 256), lambda n: jd.grids.karras(VP, n, t_start=0.6, t_end=0.05),
        lambda g: gmm.ode_solution(VP, x_T, g[0], g[-1]))
    assert not solver.stochastic and abs(res.order - solver.order) <= 0.15, res


@pytest.mark.parametrize("make", [
    lambda nz: ERSDE(noise=nz, quadrature="gauss"),
    lambda nz: RESMultistep(eta=1.0, noise=nz),
], ids=["er-sde", "res-multistep-ancestral"])
def test_weak_order_exact_moments(x64, make):
    """Exact mean/variance recursions on 1-D Gaussian data (sde_helpers.weak_error, no Monte
    Carlo), 16, 32, 64 log-SNR-uniform steps: slope >= weak_order - 0.2."""
    ns = [16, 32, 64]
    errs = [sum(weak_error(make, VP, n, logsnr_grid)) for n in ns]
    p = empirical_order(ns, errs)
    assert p >= make(None).weak_order - 0.2, (p, errs)


def test_bad_arguments():
    with pytest.raises(ValueError, match="eta"):
        RESMultistep(eta=-1.0)
    with pytest.raises(ValueError, match="gamma"):
        GradientEstimation(gamma=float("nan"))
    with pytest.raises(ValueError, match="order"):
        ERSDE(order=4)
    with pytest.raises(ValueError, match="quadrature"):
        ERSDE(quadrature="simpson")
    with pytest.raises(ValueError, match="stage_count"):
        SEEDS(stage_count=4)
    with pytest.raises(ValueError, match="r="):
        SEEDS(stage_count=3, r=(0.7, 0.2))
    with pytest.raises(ValueError, match="corrector"):
        SASolver(corrector_order=5)
    with pytest.raises(ValueError, match="tau_interval"):
        SASolver(tau_interval=(0.1, 1.0))
    with pytest.raises(ValueError, match="denoise_final"):
        jd.sample(SEEDS(eta=0.0, denoise_final=False), jd.testing.GaussianMixture(
            [1.0], [[0.0]], [[1.0]]).denoiser(VP), jnp.zeros((1, 1)), jd.grids.karras(
            VP, 4, final_zero=True))
