"""Convergence orders and identities of DDIM and the DPM-Solver(++) family.

Oracle: Gaussian data with distinct per-dimension variances, whose probability-flow ODE has the
closed-form solution ``x_t = alpha_t mu + sqrt(v_t / v_s) (x_s - alpha_s mu)``; the error is the
max over 16 samples at ``t_end``. First-order methods are also DPM-Solver-1, checked against
DDIM to 1e-10.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdist as jd
from jaxdist.solvers import DDIM, DPMSolver, DPMSolverPP
from problems import GAUSSIAN, SCHEDULES, gaussian_problem

ORDER_CASES = [
    # (solver, step counts, fitting window)
    (DDIM(), (32, 64, 128), 3),
    (DPMSolver(order=2), (32, 64, 128), 3),
    (DPMSolver(order=3), (64, 128, 256), 2),
    (DPMSolver(order=2, method="multistep", lower_order_final=False), (32, 64, 128), 3),
    (DPMSolver(order=2, solver_type="heun"), (32, 64, 128), 3),
    (DPMSolverPP(order=2, lower_order_final=False), (32, 64, 128), 3),
    (DPMSolverPP(order=2, lower_order_final=False, solver_type="heun"), (32, 64, 128), 3),
    (DPMSolverPP(order=2, method="singlestep"), (32, 64, 128), 3),
    (DPMSolverPP(order=3, method="singlestep", lower_order_final=False), (64, 128, 256), 2),
]


def _problem(name, spec, n=16):
    return gaussian_problem(name, n, spec)


@pytest.mark.parametrize("name", list(SCHEDULES))
@pytest.mark.parametrize("solver,steps,last", ORDER_CASES, ids=lambda v: repr(v)[:60])
def test_order_on_exact_gaussian(x64, name, solver, steps, last):
    schedule, t0, t1, gmm, x_T = _problem(name, GAUSSIAN)
    res = jd.testing.measure_order(
        solver, gmm.denoiser(schedule), x_T, steps,
        lambda n: jd.grids.logsnr_uniform(schedule, n, t0, t1),
        lambda grid: gmm.ode_solution(schedule, x_T, grid[0], grid[-1]), last=last)
    assert abs(res.order - solver.order) <= 0.15, res


@pytest.mark.parametrize("name", list(SCHEDULES))
@pytest.mark.parametrize("solver", [
    DPMSolverPP(order=3, lower_order_final=False, warmup="singlestep"),
    DPMSolver(order=3, method="multistep", lower_order_final=False, warmup="singlestep"),
], ids=["dpm++3m", "dpm-solver-3m"])
def test_third_order_multistep(x64, name, solver):
    """On uniform log-SNR grids the Gaussian oracle makes 3M superconverge (order ~4), so the
    third-order multistep methods are measured on Karras (rho = 7) grids."""
    schedule, t0, t1, gmm, x_T = _problem(name, GAUSSIAN)
    res = jd.testing.measure_order(
        solver, gmm.denoiser(schedule), x_T, (64, 128, 256),
        lambda n: jd.grids.karras(schedule, n, t_start=t0, t_end=t1),
        lambda grid: gmm.ode_solution(schedule, x_T, grid[0], grid[-1]))
    assert abs(res.order - 3) <= 0.15, res


@pytest.mark.parametrize("third_order,expected", [("taylor", 3), ("reference", 2)])
def test_third_order_update_weight(x64, third_order, expected):
    """The 3M update of the reference implementations (DPM-Solver, diffusers) weights the
    second difference by ``phi_3`` instead of ``2 phi_3``: it converges at order 2 (Karras grids,
    order-preserving warm-up and final steps)."""
    schedule, t0, t1, gmm, x_T = _problem("vp", GAUSSIAN)
    solver = DPMSolverPP(order=3, warmup="singlestep", lower_order_final=False,
                         third_order=third_order)
    res = jd.testing.measure_order(
        solver, gmm.denoiser(schedule), x_T, (64, 128, 256),
        lambda n: jd.grids.karras(schedule, n, t_start=0.6, t_end=0.05),
        lambda grid: gmm.ode_solution(schedule, x_T, grid[0], grid[-1]))
    assert abs(res.order - expected) <= 0.15, res
    assert solver.order == expected


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_ddim_equals_first_order_dpm_solvers(x64, name):
    schedule, t0, t1, gmm, x_T = _problem(name, GAUSSIAN)
    den, grid = gmm.denoiser(schedule), jd.grids.time_uniform(schedule, 12, t0, t1)
    ddim = jd.sample(DDIM(), den, x_T, grid).x
    for solver in (DPMSolver(order=1), DPMSolverPP(order=1),
                   DPMSolver(order=1, method="multistep"), DPMSolverPP(order=1, method="singlestep")):
        np.testing.assert_allclose(jd.sample(solver, den, x_T, grid).x, ddim, rtol=0, atol=1e-10)


def _point_mass_error(solver, n_steps, dtype):
    schedule = jd.schedules.VPLinear()
    mu = jnp.array([0.3, -1.2, 2.0], dtype)
    gmm = jd.testing.GaussianMixture([1.0], [mu], [[0.0, 0.0, 0.0]])
    x_T = jax.random.normal(jax.random.key(1), (8, 3), dtype)
    grid = jd.grids.logsnr_uniform(schedule, n_steps).astype(dtype)
    x = jd.sample(solver, gmm.denoiser(schedule), x_T, grid).x
    assert x.dtype == dtype
    return float(jnp.max(jnp.abs(x - gmm.ode_solution(schedule, x_T, grid[0], grid[-1]))))


@pytest.mark.parametrize("solver", [
    DDIM(), DPMSolverPP(order=1), DPMSolverPP(order=2), DPMSolverPP(order=3),
    DPMSolverPP(order=2, method="singlestep"), DPMSolverPP(order=3, method="singlestep")],
    ids=repr)
@pytest.mark.parametrize("n_steps", [1, 2, 5, 10])
def test_point_mass_is_solved_exactly(solver, n_steps):
    """With point-mass data x0_hat is constant, so every data-prediction exponential integrator
    is exact at any step count (float32, 1e-5)."""
    assert _point_mass_error(solver, n_steps, jnp.float32) < 1e-5


@pytest.mark.parametrize("solver", [
    DPMSolver(order=1), DPMSolver(order=2), DPMSolver(order=3),
    DPMSolver(order=2, method="multistep"), DPMSolver(order=3, method="multistep")], ids=repr)
@pytest.mark.parametrize("n_steps", [1, 2, 5, 10])
def test_point_mass_noise_prediction_exact_in_float64(x64, solver, n_steps):
    """eps_hat is constant along the exact path of point-mass data, so noise-prediction solvers
    are exact too; in float32 their rounding is amplified by ``alpha_t/alpha_s ~ e^h`` over a
    huge step (the reason DPM-Solver++ exists), so they are checked in float64."""
    assert _point_mass_error(solver, n_steps, jnp.float64) < 1e-10


@pytest.mark.parametrize("solver", [DDIM(), DPMSolverPP(order=2), DPMSolverPP(order=3),
                                    DPMSolver(order=3, lower_order_final=True),
                                    DPMSolverPP(order=2, method="singlestep")], ids=repr)
@pytest.mark.parametrize("name", list(SCHEDULES))
def test_step_to_zero_noise_returns_x0_hat(x64, solver, name):
    """A grid ending at t = 0: a first-order last step returns x0_hat exactly."""
    schedule, t0, t1, gmm, x_T = _problem(name, GAUSSIAN)
    den = gmm.denoiser(schedule)
    grid = jd.grids.logsnr_uniform(schedule, 6, t0, t1, final_zero=True)
    res = jd.sample(solver, den, x_T, grid, save_trajectory=True)
    x0_hat, _ = den(res.trajectory[-2], grid[-2])
    np.testing.assert_allclose(res.x, x0_hat, rtol=0, atol=1e-12)
    assert bool(res.all_finite)


def test_nfe_counts(x64):
    schedule, t0, t1, gmm, x_T = _problem("vp", GAUSSIAN)
    den, grid = gmm.denoiser(schedule), jd.grids.logsnr_uniform(schedule, 10, t0, t1)
    assert int(jd.sample(DPMSolverPP(order=3), den, x_T, grid).nfe) == 10
    assert int(jd.sample(DPMSolver(order=3), den, x_T, grid).nfe) == 30
    assert int(jd.sample(DPMSolver(order=3, lower_order_final=True), den, x_T, grid).nfe) == 27
    assert int(jd.sample(DPMSolverPP(order=3, warmup="singlestep"), den, x_T, grid).nfe) == 11
    zero = jd.grids.logsnr_uniform(schedule, 10, t0, t1, final_zero=True)
    assert int(jd.sample(DPMSolverPP(order=2, method="singlestep"), den, x_T, zero).nfe) == 19


def test_noise_prediction_from_pure_noise_is_an_error():
    schedule = jd.schedules.RectifiedFlow()
    gmm = jd.testing.GaussianMixture(**GAUSSIAN)
    grid = jd.grids.time_uniform(schedule, 4)
    with pytest.raises(ValueError, match="alpha = 0"):
        jd.sample(DPMSolver(order=2), gmm.denoiser(schedule), jnp.zeros((2, 3)), grid)
    # Data prediction steps from alpha = 0 exactly.
    x = jd.sample(DPMSolverPP(order=2), gmm.denoiser(schedule), jnp.ones((2, 3)), grid).x
    assert bool(jnp.all(jnp.isfinite(x)))


@pytest.mark.parametrize("kwargs,match", [
    (dict(order=4), "order=4 is out of range"),
    (dict(order=0), "order=0 is out of range"),
    (dict(method="adams"), "method='adams'"),
    (dict(solver_type="rk"), "solver_type='rk'"),
    (dict(warmup="none"), "warmup='none'"),
    (dict(third_order="exact"), "third_order='exact'"),
])
def test_bad_solver_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DPMSolverPP(**kwargs)


def test_solvers_are_hashable_static():
    assert hash(DPMSolverPP(order=2)) == hash(DPMSolverPP(order=2))
    assert jax.tree.leaves(DPMSolverPP()) == []

@pytest.mark.parametrize("solver", [DPMSolver(order=3), DPMSolverPP(order=2, method="singlestep",
                                                                 lower_order_final=False)],
                         ids=repr)
def test_singlestep_step_to_zero_uses_its_last_stage(x64, solver):
    """A full singlestep step to t = 0 (``lower_order_final=False``) spends its stages (the same
    NFE eagerly and under jit: a static stage table) and takes the first-order step from the last
    one: finite, and as accurate as the plain first-order step (the error is that of the earlier
    steps)."""
    schedule, t0, _, gmm, x_T = _problem("vp", GAUSSIAN)
    den = gmm.denoiser(schedule)
    grid = jd.grids.logsnr_uniform(schedule, 6, t0, 1e-3, final_zero=True)
    res = jd.sample(solver, den, x_T, grid, save_trajectory=True)
    exact = gmm.ode_solution(schedule, x_T, t0, 0.0)
    x0_hat, _ = den(res.trajectory[-2], grid[-2])
    assert bool(res.all_finite)
    assert float(jnp.max(jnp.abs(res.x - exact))) < 1.01 * float(jnp.max(jnp.abs(x0_hat - exact)))
    jitted = jax.jit(lambda x: jd.sample(solver, den, x, grid))(x_T)
    assert int(res.nfe) == int(jitted.nfe) == solver.nfe(6) == 6 * solver.solver_order


@pytest.mark.parametrize("solver", [
    DPMSolverPP(order=3, method="singlestep", lower_order_final=False),
    DPMSolverPP(order=2, method="singlestep"), DPMSolverPP(order=3, method="singlestep"),
    DPMSolver(order=2), DPMSolver(order=3)], ids=repr)
def test_regression_eager_and_jit_take_the_same_evaluations(solver):
    """Regression (issue 10): plans used to read grid values, so these solvers took 16 vs 18
    (3S, no lower-order final), and on grids ending at 0 9 vs 10 and 13 vs 15 evaluations eagerly
    and under jit for the same 6 steps."""
    schedule = jd.schedules.VPLinear()
    den = jd.testing.GaussianMixture(**GAUSSIAN).denoiser(schedule)
    x_T = jnp.ones((2, 3))
    for final_zero in (False, True):
        grid = jd.grids.logsnr_uniform(schedule, 6, final_zero=final_zero)
        eager = int(jd.sample(solver, den, x_T, grid).nfe)
        traced = int(jax.jit(lambda g: jd.sample(solver, den, x_T, g).nfe)(grid))
        assert eager == traced == solver.nfe(6)
