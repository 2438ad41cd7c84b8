"""EDM's stochastic sampler (Karras et al. 2022, Alg. 2; jaxdist.solvers.edm_sde): without churn
it is EDM's deterministic Heun sampler (order 2, final Euler step: NFE 2N - 1); the churn scale
is exactly 0 outside the churn window (strong/weak order and mixture weights: test_sde.py)."""

import jax
import jax.numpy as jnp

import jaxdist as jd
from jaxdist.solvers import EDMStochastic, HeunEDM
from sde_helpers import two_mode_mixture

SCHED = jd.schedules.VPLinear()


def test_edm_sde_without_churn_is_deterministic_heun(x64):
    """S_churn = 0: EDM's Heun sampler, second order against the exact PF-ODE on one Gaussian."""
    g = jd.testing.GaussianMixture([1.0], [[0.5, -0.2]], 0.3)
    sched = jd.schedules.EDM()
    den = g.denoiser(sched)
    x_T = jax.random.normal(jax.random.key(0), (8, 2)) * 80.0
    solver = EDMStochastic(S_churn=0.0)
    assert not solver.stochastic
    res = jd.testing.measure_order(solver, den, x_T, [16, 32, 64],
                                   lambda n: jd.grids.karras(sched, n),
                                   lambda grid: g.ode_solution(sched, x_T, grid[0], grid[-1]))
    assert abs(res.order - 2.0) <= 0.2, res
    assert res.nfe == tuple(2 * n - 1 for n in (16, 32, 64)) == tuple(solver.nfe(n) for n in
                                                                    (16, 32, 64))
    # it is HeunEDM then
    grid = jd.grids.karras(sched, 12)
    a = jd.sample(solver, den, x_T, grid).x
    b = jd.sample(HeunEDM(), den, x_T, grid).x
    assert float(jnp.max(jnp.abs(a - b))) < 1e-4


def test_edm_sde_default_churn_window_is_finite_under_jit():
    """Regression: with the default S_min/S_max some steps have gamma = 0; the churn scale must
    be exactly 0 there (sqrt(s_hat^2 - s^2) became NaN under XLA fusion)."""
    mix = two_mode_mixture()
    grid = jd.grids.logsnr_uniform(SCHED, 10).astype(jnp.float32)
    x_T = jax.random.normal(jax.random.key(0), (64, 2))
    res = jax.jit(lambda x: jd.sample(EDMStochastic(), mix.denoiser(SCHED), x, grid,
                                      key=jax.random.key(1)))(x_T)
    assert bool(res.all_finite)
