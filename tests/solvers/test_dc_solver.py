"""DC-Solver (UniPC with dynamic compensation): identities, the interpolation, fitting, errors.

Fitting (measured, float64): the built-in 2-D mixture, VP-linear, 5-step log-SNR grid to
``t_min`` (5 NFE), UniPC-2 bh2; ratios fitted on 16 starting points to a fine reference
trajectory (40 Adam steps, rate 0.1); held-out RMS error on 128 other points against the
reference endpoints: UniPC 0.31, DC-Solver 0.23 (6 NFE: 0.28 -> 0.23 with 256 held-out points).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdist as jd
from jaxdist.solvers import DCSolver, UniPC
from jaxdist.solvers.dc_solver import lagrange_weights
from jaxdist.tune import fit_dc_ratios, reference_trajectory
from problems import gaussian_problem


def test_unit_ratios_are_unipc(x64):
    base = UniPC(order=2)
    schedule, t0, t1, gmm, x_T = gaussian_problem("vp", 8)
    den = gmm.denoiser(schedule)
    grid = jd.grids.logsnr_uniform(schedule, 7, t0, t1)
    ref = jd.sample(base, den, x_T, grid).x
    out = jd.sample(DCSolver.identity(7, base=base), den, x_T, grid)
    np.testing.assert_allclose(out.x, ref, rtol=0, atol=1e-13)
    assert int(out.nfe) == 7


def test_lagrange_weights_interpolate_quadratics(x64):
    grid = np.asarray([1.0, 0.8, 0.55, 0.3, 0.2, 0.05])
    rho = np.asarray([0.3, 1.7, 0.8, 1.2, 0.6])
    lag = np.asarray(lagrange_weights(jnp.asarray(grid), jnp.asarray(rho), 2, 4))
    t = grid[:-1]
    quad = lambda u: 1.0 - 2.0 * u + 3.0 * u**2  # noqa: E731
    for i in range(2, 5):  # m_{i-k} = quad(t_{i-k}): the interpolant is exact
        vals = np.asarray([quad(t[i - k]) for k in range(3)] + [123.0])
        target = quad(rho[i] * t[i] + (1 - rho[i]) * t[i - 1])
        np.testing.assert_allclose(lag[i] @ vals, target, rtol=1e-12)
    np.testing.assert_array_equal(lag[:2], np.eye(4)[:1].repeat(2, 0))  # no compensation yet


def test_fit_reduces_held_out_error(x64):
    schedule = jd.schedules.VPLinear()
    den = jd.testing.builtin_mixture(2).denoiser(schedule)
    grid = jd.grids.logsnr_uniform(schedule, 5)
    x = jax.random.normal(jax.random.key(1), (16 + 128, 2), jnp.float64)
    ref = reference_trajectory(den, x, grid)
    x_train, ref_train, x_test, y_test = x[:16], ref[:, :16], x[16:], ref[-1, 16:]
    base = UniPC(order=2)
    err_base = float(jd.tune.rms(jd.sample(base, den, x_test, grid).x, y_test))
    dc, losses = fit_dc_ratios(base, den, x_train, grid, ref_train, steps=40, lr=0.1)
    err_dc = float(jd.tune.rms(jd.sample(dc, den, x_test, grid).x, y_test))
    assert losses[-1] < 0.6 * losses[0]
    assert 0.25 < err_base < 0.4 and err_dc < 0.85 * err_base, (err_base, err_dc)
    assert np.all(np.asarray(dc.rho[:2]) == 1.0)  # no gradient where nothing is compensated


def test_bad_input(x64):
    schedule, t0, t1, gmm, x_T = gaussian_problem("vp", 4)
    den = gmm.denoiser(schedule)
    grid = jd.grids.logsnr_uniform(schedule, 5, t0, t1)
    with pytest.raises(ValueError, match="base=DDIM"):
        DCSolver(jnp.ones(5), base=jd.solvers.DDIM())
    with pytest.raises(ValueError, match="dc_order"):
        DCSolver.identity(5, dc_order=4)
    with pytest.raises(ValueError, match="rho must be a 1-D"):
        DCSolver(jnp.ones((5, 2)))
    with pytest.raises(ValueError, match="rho has 4 ratios but the grid has 5"):
        jd.sample(DCSolver.identity(4), den, x_T, grid)
    with pytest.raises(ValueError, match="reference has shape"):
        fit_dc_ratios(UniPC(), den, x_T, grid, jnp.zeros((3, 4, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        fit_dc_ratios(UniPC(), den, x_T, grid, jnp.full(x_T.shape, jnp.nan))
