"""LMS (linear multistep in sigma: k-diffusion's ``sample_lms``, diffusers' LMSDiscreteScheduler)
and PLMS (diffusers' PNDMScheduler with ``skip_prk_steps=True``).

Oracle: Gaussian data (closed-form probability-flow ODE), as in test_deis.py. LMS-4 has local
order 5 on a log-SNR grid (its weights are the variable-step Adams-Bashforth weights in ``rho``)
and global order 2 (first-order first step: tests/solvers/test_contract.py measures it, as for
every registered solver); its last step to ``sigma = 0`` integrates the
polynomial (iPNDM-v returns ``x0_hat`` there), checked against the reference formula written in
NumPy. PLMS (Heun first step) and PNDM (three pseudo-RK4 steps): diffusers' loops written in
NumPy, and global order 2.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxdist as jd
from jaxdist.solvers import IPNDM, LMS, PLMS
from multistep_local import local_errors, local_order
from problems import SCHEDULES, gaussian_problem

HS_FINE = (0.025, 0.0125, 0.00625)


@pytest.mark.parametrize("name", ["vp", "edm"])
def test_lms_local_order(x64, name):
    errors = local_errors(LMS(order=4), SCHEDULES[name][0], HS_FINE, knots="lambda")
    assert abs(local_order(errors, HS_FINE) - 5) <= 0.15, errors


@pytest.mark.parametrize("warmup", ["heun", "prk"])
def test_plms_global_order(x64, warmup):
    solver = PLMS(warmup=warmup)
    schedule, t0, t1, gmm, x_T = gaussian_problem("vp", 4)
    res = jd.testing.measure_order(
        solver, gmm.denoiser(schedule), x_T, (64, 128, 256),
        lambda n: jd.grids.logsnr_uniform(schedule, n, t0, t1),
        lambda grid: gmm.ode_solution(schedule, x_T, grid[0], grid[-1]))
    assert abs(res.order - 2) <= 0.15, res
    assert solver.order == 2


def _lms_reference(den, x, sigmas, order=4):
    """k-diffusion's / diffusers' LMS in sigma (``alpha = 1``): ``x += sum_j c_j d_{i-j}``,
    ``c_j`` the integral of the Lagrange basis over ``[sigma_i, sigma_{i+1}]``."""
    ds = []
    for i in range(len(sigmas) - 1):
        ds = (ds + [(x - np.asarray(den(jnp.asarray(x), sigmas[i])[0])) / sigmas[i]])[-order:]
        k = len(ds)
        for j in range(k):  # j: d_{i-j}
            others = [sigmas[i - m] for m in range(k) if m != j]
            basis = np.poly1d(others, r=True) / np.prod([sigmas[i - j] - o for o in others])
            anti = np.polyint(basis)
            x = x + (anti(sigmas[i + 1]) - anti(sigmas[i])) * ds[-1 - j]
    return x


def test_lms_is_the_reference_formula_and_ipndm_v_above_zero(x64):
    schedule, t0, t1, gmm, x_T = gaussian_problem("edm", 4)
    den = gmm.denoiser(schedule)
    grid = jd.grids.karras(schedule, 9, t_start=t0, t_end=t1, final_zero=True)
    want = _lms_reference(den, np.asarray(x_T), np.asarray(grid))
    np.testing.assert_allclose(jd.sample(LMS(), den, x_T, grid).x, want, rtol=1e-11, atol=1e-12)
    # above sigma = 0 the weights are iPNDM-v's; at sigma = 0 iPNDM-v returns x0_hat
    positive = grid[:-1]
    np.testing.assert_allclose(jd.sample(LMS(), den, x_T, positive).x,
                               jd.sample(IPNDM(order=4, variable_step=True), den, x_T,
                                         positive).x, rtol=1e-12, atol=1e-13)
    ipndm = jd.sample(IPNDM(order=4, variable_step=True), den, x_T, grid).x
    assert np.abs(np.asarray(ipndm) - want).max() > 1e-6  # (the reference matches to 1e-11)


def _plms_reference(den, x, grid, schedule, prk=False):
    """diffusers' ``PNDMScheduler.step_plms`` (``skip_prk_steps=True``) in NumPy: the DDIM
    transfer with the Adams-Bashforth sum, the first step Heun; with ``prk``, ``step_prk``'s
    three pseudo-RK4 steps first (stages at the midpoint time)."""
    def transfer(x, e, s, t):
        a_s, a_t = float(schedule.alpha(s)), float(schedule.alpha(t))
        x0 = (x - float(schedule.sigma(s)) * e) / a_s
        return a_t * x0 + float(schedule.sigma(t)) * e

    def eps(x, t):
        return np.asarray(den(jnp.asarray(x), t)[1])

    ets, weights = [], ([1], [3, -1], [23, -16, 5], [55, -59, 37, -9])
    denom = (1, 2, 12, 24)
    for i in range(len(grid) - 1):
        e = eps(x, grid[i])
        if prk and i < 3:
            m = 0.5 * (grid[i] + grid[i + 1])
            e2 = eps(transfer(x, e, grid[i], m), m)
            e3 = eps(transfer(x, e2, grid[i], m), m)
            e4 = eps(transfer(x, e3, grid[i], grid[i + 1]), grid[i + 1])
            ets.append(e)
            x = transfer(x, (e + 2 * e2 + 2 * e3 + e4) / 6, grid[i], grid[i + 1])
            continue
        if i == 0:
            e = (e + eps(transfer(x, e, grid[0], grid[1]), grid[1])) / 2
            ets = [eps(x, grid[0])]
        else:
            ets = (ets + [e])[-4:]
            k = len(ets)
            e = sum(w * d for w, d in zip(weights[k - 1], ets[::-1])) / denom[k - 1]
        x = transfer(x, e, grid[i], grid[i + 1])
    return x


@pytest.mark.parametrize("warmup,nfe", [("heun", 8), ("prk", 16)])
def test_plms_is_diffusers_step_plms(x64, warmup, nfe):
    schedule, t0, t1, gmm, x_T = gaussian_problem("vp", 4)
    den = gmm.denoiser(schedule)
    grid = jd.grids.logsnr_uniform(schedule, 7, t0, t1)
    out = jd.sample(PLMS(warmup=warmup), den, x_T, grid)
    assert out.nfe == PLMS(warmup=warmup).nfe(7) == nfe
    want = _plms_reference(den, np.asarray(x_T), np.asarray(grid), schedule, warmup == "prk")
    np.testing.assert_allclose(out.x, want, rtol=1e-11, atol=1e-12)
    with pytest.raises(ValueError, match="4 steps"):
        jd.sample(PLMS(warmup="prk"), den, x_T, grid[:4])
