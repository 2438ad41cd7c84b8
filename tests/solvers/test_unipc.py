"""UniPC (UniP predictor + UniC corrector): convergence orders, identities and edge cases.

Oracle: Gaussian data with distinct per-dimension variances (closed-form probability-flow ODE).
* Global order (32..128 steps, log-SNR grid, VP / EDM / rectified flow): UniPC-p without the
  corrector converges at order p, with the corrector at p + 1 (Zhao et al. 2023), for p = 1, 2.
  For p = 3 the lower-order warm-up (first step UniP-1 + UniC-1, local error O(h^3)) bounds the
  global order by 3, so orders 3 and 4 are measured locally instead.
* Local order (one full-order step from the exact state and exact model-output history):
  UniP-p has local error O(h^(p+1)), the UniC-corrected value O(h^(p+2)), p = 1, 2, 3.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxdist as jd
from jaxdist.solvers import DDIM, UniPC
from multistep_local import assert_point_mass_exact, local_errors, local_order
from problems import GAUSSIAN, SCHEDULES, gaussian_problem

HS = (0.1, 0.05, 0.025, 0.0125)


def _problem(name, n=4):
    return gaussian_problem(name, n)


def _global_order(solver, name, steps=(32, 64, 128)):
    schedule, t0, t1, gmm, x_T = _problem(name)
    return jd.testing.measure_order(
        solver, gmm.denoiser(schedule), x_T, steps,
        lambda n: jd.grids.logsnr_uniform(schedule, n, t0, t1),
        lambda grid: gmm.ode_solution(schedule, x_T, grid[0], grid[-1]))


@pytest.mark.parametrize("name,solver,expected", [
    (name, UniPC(order=2, corrector=True, lower_order_final=False), 3) for name in SCHEDULES
] + [
    ("vp", UniPC(order=1, corrector=True, lower_order_final=False), 2),
    ("edm", UniPC(order=2, corrector=False, lower_order_final=False, prediction="eps"), 2),
    ("rf", UniPC(order=2, corrector=True, lower_order_final=False, variant="bh1",
                 prediction="eps"), 3),
], ids=["unipc2-vp", "unipc2-edm", "unipc2-rf", "unipc1-vp", "unip2-eps-edm",
        "unipc2-bh1-eps-rf"])
def test_global_order(x64, name, solver, expected):
    res = _global_order(solver, name)
    assert abs(res.order - expected) <= 0.15, res
    assert solver.order == expected
    assert res.nfe == res.step_counts  # the corrector is free


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("name,prediction,variant", [
    ("vp", "x0", "bh2"), ("edm", "x0", "bh2"), ("rf", "x0", "bh2"), ("vp", "eps", "bh1")])
def test_local_order(x64, name, order, prediction, variant):
    schedule = SCHEDULES[name][0]
    solver = UniPC(order=order, variant=variant, prediction=prediction, lower_order_final=False)
    p_pred = local_order(local_errors(solver, schedule, HS), HS)
    p_corr = local_order(local_errors(solver, schedule, HS, corrected=True), HS)
    assert abs(p_pred - (order + 1)) <= 0.15, (p_pred, order)
    assert abs(p_corr - (order + 2)) <= 0.15, (p_corr, order)


@pytest.mark.parametrize("name,prediction", [("vp", "x0"), ("edm", "eps"), ("rf", "x0"),
                                             ("rf", "eps")])
def test_order_one_without_corrector_is_ddim(x64, name, prediction):
    schedule, t0, t1, gmm, x_T = _problem(name)
    den, grid = gmm.denoiser(schedule), jd.grids.time_uniform(schedule, 12, t0, t1)
    ddim = jd.sample(DDIM(), den, x_T, grid).x
    uni = jd.sample(UniPC(order=1, corrector=False, prediction=prediction), den, x_T, grid).x
    np.testing.assert_allclose(uni, ddim, rtol=0, atol=1e-10)


def test_variants_differ_only_through_reference_rho(x64):
    """With every rho system solved, B(h) cancels (bh1 == bh2); the reference rho = 1/2 for
    UniP-2 / UniC-1 makes them differ."""
    schedule, t0, t1, gmm, x_T = _problem("vp")
    den, grid = gmm.denoiser(schedule), jd.grids.logsnr_uniform(schedule, 8, t0, t1)
    def run(**kw):
        return jd.sample(UniPC(order=2, **kw), den, x_T, grid).x
    np.testing.assert_allclose(run(variant="bh1", rho="solve"), run(variant="bh2", rho="solve"),
                               rtol=0, atol=1e-10)
    assert float(jnp.max(jnp.abs(run(variant="bh1") - run(variant="bh2")))) > 1e-4


@pytest.mark.parametrize("solver", [UniPC(order=1), UniPC(order=3),
                                    UniPC(order=3, prediction="eps", variant="bh1")], ids=repr)
@pytest.mark.parametrize("n_steps", [3])
def test_point_mass_and_step_to_zero(x64, solver, n_steps):
    """Point-mass data: x0_hat is constant, every step is exact, and a final step to t = 0
    returns x0_hat (float64)."""
    assert_point_mass_exact(solver, n_steps)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="order"):
        UniPC(order=4)
    with pytest.raises(ValueError, match="variant"):
        UniPC(variant="bh3")
    with pytest.raises(ValueError, match="prediction"):
        UniPC(prediction="v")
    schedule = jd.schedules.RectifiedFlow()
    gmm = jd.testing.GaussianMixture(**GAUSSIAN)
    with pytest.raises(ValueError, match="alpha = 0"):
        jd.sample(UniPC(prediction="eps"), gmm.denoiser(schedule), jnp.zeros((2, 3)),
                  jd.grids.time_uniform(schedule, 4, 1.0, 0.01))
