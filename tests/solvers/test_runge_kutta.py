"""Explicit Runge-Kutta on the PF-ODE (jaxdist.solvers.runge_kutta), float64.

Orders against the exact single-Gaussian oracle: RK3, RK4 on VP / EDM (variable ``sigma``, karras
grids) and rectified flow (variable ``t``, time-uniform grid). The midpoint rule superconverges on a
single Gaussian (empirical order ~3 in ``sigma``, the error constant of its h^2 term vanishes for
this linear ODE), so its order is measured on a 2-component mixture against the diffrax Dopri8
reference (rtol 1e-11). The Euler and Heun tableaux are checked to equal EulerEDM / HeunEDM
(whose orders tests/test_edm.py measures).
"""

import jax
import jax.numpy as jnp
import pytest

import jaxdist as jd
from jaxdist.solvers import ButcherTableau, EulerEDM, HeunEDM, RungeKutta
from jaxdist.solvers.tableaux import EULER, HEUN, MIDPOINT, RALSTON, RK3, RK4
from problems import GAUSSIAN as GAUSS
MIXTURE = dict(weights=[0.3, 0.7], means=[[1.0, -0.5], [-1.0, 0.5]],
               variances=[[0.2, 0.5], [0.4, 0.1]])
CASES = {
    "vp": (jd.schedules.VPLinear(), lambda s, n: jd.grids.karras(s, n, t_start=1.0, t_end=1e-3),
           "sigma"),
    "edm": (jd.schedules.EDM(), lambda s, n: jd.grids.karras(s, n), "sigma"),
    "rf": (jd.schedules.RectifiedFlow(), lambda s, n: jd.grids.time_uniform(s, n, 0.99, 1e-3), "t"),
}


def _problem(name, data=GAUSS, batch=4):
    schedule, grid_fn, variable = CASES[name]
    gmm = jd.testing.GaussianMixture(**data)
    g = grid_fn(schedule, 4)
    x_T = jax.random.normal(jax.random.key(0), (batch, gmm.dim), jnp.float64) * schedule.sigma(g[0])
    exact = gmm.ode_solution(schedule, x_T, g[0], g[-1])
    return gmm.denoiser(schedule), x_T, (lambda n: grid_fn(schedule, n)), (lambda grid: exact), \
        variable


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("tableau,steps", [(RK3, (96, 192, 384)), (RK4, (64, 128, 256))])
def test_order_gaussian(x64, name, tableau, steps):
    den, x_T, grid_fn, exact, variable = _problem(name)
    solver = RungeKutta(tableau, variable)
    res = jd.testing.measure_order(solver, den, x_T, steps, grid_fn, exact, last=3)
    assert abs(res.order - tableau.order) <= 0.15, res
    assert res.nfe == tuple(n * tableau.stages for n in steps)


@pytest.mark.parametrize("name", list(CASES))
def test_midpoint_order_mixture(x64, name):
    den, x_T, grid_fn, exact, variable = _problem(name, MIXTURE)
    steps = (32, 64, 128) if name == "rf" else (128, 256, 512)
    res = jd.testing.measure_order(RungeKutta(MIDPOINT, variable), den, x_T, steps, grid_fn, exact,
                                   last=3)
    assert abs(res.order - 2) <= 0.15, res


def test_lambda_variable_order(x64):
    den, x_T, grid_fn, exact, _ = _problem("edm")
    res = jd.testing.measure_order(RungeKutta(RK4, "lambda"), den, x_T, (128, 256, 512), grid_fn,
                                   exact, last=3)
    assert abs(res.order - 4) <= 0.15, res


@pytest.mark.parametrize("name", ["vp", "rf"])
def test_euler_and_heun_tableaux_equal_edm_solvers(x64, name):
    den, x_T, grid_fn, _, _ = _problem(name)
    grid = grid_fn(10)
    pairs = [(RungeKutta(EULER, "sigma"), EulerEDM()),
             (RungeKutta(HEUN, "sigma"), HeunEDM(heun_final=True))]
    for rk, ref in pairs:
        a, b = jd.sample(rk, den, x_T, grid), jd.sample(ref, den, x_T, grid)
        assert jnp.max(jnp.abs(a.x - b.x)) < 1e-12
        assert int(a.nfe) == int(b.nfe)


def test_flow_euler_is_euler_in_t(x64):
    """Euler in t on rectified flow: x <- x + (t_next - t) (eps_hat - x0_hat) (FlowMatchEuler)."""
    den, x_T, grid_fn, _, _ = _problem("rf")
    grid = grid_fn(6)
    x = x_T
    for t, t_next in zip(grid[:-1], grid[1:]):
        x0, eps = den(x, t)
        x = x + (t_next - t) * (eps - x0)
    out = jd.sample(RungeKutta(EULER, "t"), den, x_T, grid).x
    assert jnp.max(jnp.abs(out - x)) < 1e-12


def test_tableau_validation_and_derived_order():
    ralston = ButcherTableau(a=[[], [2 / 3]], b=[1 / 4, 3 / 4], c=[0, 2 / 3])
    assert ralston.order == 2 and ralston.stages == 2 and ralston.a == RALSTON.a
    assert (EULER.order, MIDPOINT.order, HEUN.order, RK3.order, RK4.order) == (1, 2, 2, 3, 4)
    with pytest.raises(ValueError, match="row sums"):
        ButcherTableau(a=[[0, 0], [1, 0]], b=[0.5, 0.5], c=[0, 0.5])
    with pytest.raises(ValueError, match="lower triangular"):
        ButcherTableau(a=[[0, 1], [1, 0]], b=[0.5, 0.5], c=[1, 1])
    with pytest.raises(ValueError, match="sum to 1"):
        ButcherTableau(a=[[0, 0], [1, 0]], b=[0.5, 0.4], c=[0, 1])
    with pytest.raises(ValueError, match="variable"):
        RungeKutta(RK4, "log")
    with pytest.raises(TypeError, match="tableau must be a ButcherTableau"):
        RungeKutta("rk4")
    assert RungeKutta(tableau=RK3).tableau is RK3
    schedule = jd.schedules.EDM()
    den = jd.testing.GaussianMixture(**GAUSS).denoiser(schedule)
    with pytest.raises(ValueError, match="finite log-SNR"):
        jd.sample(RungeKutta(RK4, "lambda"), den, jnp.ones((1, 3)),
                  jd.grids.karras(schedule, 4, final_zero=True))


@pytest.mark.parametrize("tableau", [RK3, RK4], ids=["rk3", "rk4"])
@pytest.mark.parametrize("name", ["vp", "rf"])
def test_a_step_to_t_zero_is_the_denoised_point_for_x0_models(x64, tableau, name):
    """A step ending at t = 0 returns ``alpha(0) x0_hat`` of its start (Euler in sigma / t): finite
    for an x0-predicting model (its eps at sigma = 0 is 0/0), the same as for an eps model."""
    schedule, _, variable = CASES[name]
    gmm = jd.testing.GaussianMixture(**GAUSS)
    x0_model = jd.Denoiser(lambda x, t: gmm.predictions(schedule, x, t, time="model")[0],
                          schedule, "x0")
    grid = jd.grids.karras(schedule, 4, t_start=0.9, t_end=1e-2, final_zero=True)
    x_T = jax.random.normal(jax.random.key(0), (4, gmm.dim), jnp.float64)
    solver = RungeKutta(tableau, variable)
    out = jd.sample(solver, x0_model, x_T, grid)
    before = jd.sample(solver, x0_model, x_T, grid[:-1]).x
    x0_hat = gmm.predictions(schedule, before, grid[-2])[0]
    assert bool(out.all_finite) and out.nfe == solver.nfe(grid.shape[0] - 1)
    assert jnp.allclose(out.x, schedule.alpha(0.0) * x0_hat, rtol=1e-12, atol=1e-12)
    eps_out = jd.sample(solver, gmm.denoiser(schedule), x_T, grid).x
    assert jnp.allclose(eps_out, out.x, rtol=1e-10, atol=1e-10)
