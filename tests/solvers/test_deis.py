"""DEIS (tAB / rhoAB) and iPNDM: convergence orders, identities and the reference formula.

Oracle: Gaussian data with distinct per-dimension variances (closed-form probability-flow ODE).
* Global order (64..256 steps, log-SNR grid, VP / EDM / rectified flow) for order 2. Order-3/4
  multisteps start with a first-order step (local error O(h^2)), which bounds their global order
  by 2, so their orders are measured locally: one full-order step from the exact state and
  exact history has local error O(h^(p+1)).
* iPNDM's fixed Adams-Bashforth weights are exact only for steps uniform in rho = sigma/alpha;
  on a log-SNR grid iPNDM-3/4 have local order 3 (global 2); ``variable_step=True`` restores p+1.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxdist as jd
from jaxdist.solvers import DDIM, DEIS, IPNDM
from jaxdist.solvers.deis import deis_tables
from multistep_local import assert_point_mass_exact, local_errors, local_order
from problems import GAUSSIAN, SCHEDULES, gaussian_problem

HS = (0.1, 0.05, 0.025, 0.0125)
HS_FINE = (0.025, 0.0125, 0.00625)  # fifth-order local errors leave the pre-asymptotic range later


def _problem(name, n=4):
    return gaussian_problem(name, n)


@pytest.mark.parametrize("name", list(SCHEDULES))
@pytest.mark.parametrize("solver,expected", [
    (DEIS(order=2, lower_order_final=False), 2),
    (IPNDM(order=2), 2),
    (IPNDM(order=4), 2),  # fixed weights on a non-rho-uniform grid: order 2 (see module doc)
], ids=["deis2", "ipndm2", "ipndm4-logsnr-grid"])
def test_global_order(x64, name, solver, expected):
    schedule, t0, t1, gmm, x_T = _problem(name)
    res = jd.testing.measure_order(
        solver, gmm.denoiser(schedule), x_T, (64, 128, 256),
        lambda n: jd.grids.logsnr_uniform(schedule, n, t0, t1),
        lambda grid: gmm.ode_solution(schedule, x_T, grid[0], grid[-1]))
    assert abs(res.order - expected) <= 0.15, res
    assert solver.order == expected
    assert res.nfe == res.step_counts


_LOCAL = {
    "tab1": (DEIS(order=1), "lambda", 2),
    "tab2": (DEIS(order=2, lower_order_final=False), "lambda", 3),
    "tab3": (DEIS(order=3, lower_order_final=False), "lambda", 4),
    "rhoab3": (DEIS(order=3, lower_order_final=False, variable="rho"), "lambda", 4),
    "logrhoab3": (DEIS(order=3, lower_order_final=False, variable="logrho"), "lambda", 4),
    "ipndm3-rho": (IPNDM(order=3), "rho", 4),
    "ipndm4-rho": (IPNDM(order=4), "rho", 5),
    "ipndm4-lambda": (IPNDM(order=4), "lambda", 3),
    "ipndm3v": (IPNDM(order=3, variable_step=True), "lambda", 4),
    "ipndm4v": (IPNDM(order=4, variable_step=True), "lambda", 5),
}
# every case on VP; the highest orders also on EDM and rectified flow
_LOCAL_CASES = [("vp", k) for k in _LOCAL] + [
    (name, k) for name in ("edm", "rf") for k in ("tab3", "ipndm4-rho", "ipndm4v")]


@pytest.mark.parametrize("name,case", _LOCAL_CASES, ids=[f"{n}-{k}" for n, k in _LOCAL_CASES])
def test_local_order(x64, name, case):
    solver, knots, expected = _LOCAL[case]
    hs = HS_FINE if expected == 5 else HS
    errors = local_errors(solver, SCHEDULES[name][0], hs, knots=knots)
    assert abs(local_order(errors, hs) - expected) <= 0.15, errors


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_first_order_is_ddim(x64, name):
    schedule, t0, t1, gmm, x_T = _problem(name)
    den, grid = gmm.denoiser(schedule), jd.grids.karras(schedule, 10, t_start=t0, t_end=t1)
    ddim = jd.sample(DDIM(), den, x_T, grid).x
    for solver in (DEIS(order=1), IPNDM(order=1), IPNDM(order=1, variable_step=True)):
        np.testing.assert_allclose(jd.sample(solver, den, x_T, grid).x, ddim, rtol=0, atol=1e-10)


def test_ipndm_matches_reference_formula_on_edm(x64):
    """k-diffusion / diff-solvers ``sample_ipndm`` in sigma: d = (x - D)/sigma, fixed AB4."""
    schedule, t0, t1, gmm, x_T = _problem("edm")
    den, grid = gmm.denoiser(schedule), jd.grids.karras(schedule, 12, t_start=t0, t_end=t1)
    x, buf = np.asarray(x_T), []
    sig = np.asarray(grid)
    for i in range(len(sig) - 1):
        d = (x - np.asarray(den(jnp.asarray(x), sig[i])[0])) / sig[i]
        dt, k = sig[i + 1] - sig[i], min(4, i + 1)
        if k == 1:
            x = x + dt * d
        elif k == 2:
            x = x + dt * (3 * d - buf[-1]) / 2
        elif k == 3:
            x = x + dt * (23 * d - 16 * buf[-1] + 5 * buf[-2]) / 12
        else:
            x = x + dt * (55 * d - 59 * buf[-1] + 37 * buf[-2] - 9 * buf[-3]) / 24
        buf = (buf + [d])[-3:]
    np.testing.assert_allclose(jd.sample(IPNDM(order=4), den, x_T, grid).x, x, rtol=0, atol=1e-10)


def test_tab_equals_rhoab_on_edm_and_quadrature_converged(x64):
    """On EDM t = sigma = rho, so tAB and rhoAB coincide; the default 32 Gauss nodes are
    converged on a coarse VP grid (16 nodes: relative error 1e-9)."""
    edm, vp = jd.schedules.EDM(), jd.schedules.VPLinear()
    g_edm = jd.grids.karras(edm, 10)
    np.testing.assert_allclose(deis_tables(edm, g_edm, 3),
                               deis_tables(edm, g_edm, 3, variable="rho"), rtol=1e-12, atol=1e-12)
    g_vp = jd.grids.time_uniform(vp, 10, 1.0, 1e-3)
    np.testing.assert_allclose(deis_tables(vp, g_vp, 3), deis_tables(vp, g_vp, 3, nodes=64),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("solver", [DEIS(order=2), DEIS(order=3), IPNDM(order=4),
                                    IPNDM(order=3, variable_step=True)], ids=repr)
@pytest.mark.parametrize("n_steps", [3])
def test_point_mass_and_step_to_zero(x64, solver, n_steps):
    """Point-mass data: eps_hat is constant along every trajectory (``x/alpha = mu + c rho``),
    so every step is exact; a final step to t = 0 returns x0_hat (float64)."""
    assert_point_mass_exact(solver, n_steps)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="order"):
        DEIS(order=4)
    with pytest.raises(ValueError, match="order"):
        IPNDM(order=5)
    with pytest.raises(ValueError, match="variable"):
        DEIS(variable="lambda")
    schedule = jd.schedules.RectifiedFlow()
    gmm = jd.testing.GaussianMixture(**GAUSSIAN)
    with pytest.raises(ValueError, match="alpha = 0"):
        jd.sample(DEIS(), gmm.denoiser(schedule), jnp.zeros((2, 3)),
                  jd.grids.time_uniform(schedule, 4, 1.0, 0.01))
