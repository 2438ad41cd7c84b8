"""Reverse-SDE samplers (Euler-Maruyama, DDPM ancestral, DDIM with eta; EDM's stochastic sampler
through the same helpers, its own checks in test_edm_sde.py): strong order on one Brownian path,
exact weak errors on Gaussian data, mixture weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sde_helpers import (logsnr_grid, time_grid, BROWNIAN, mode_weights_check, smooth_mixture, strong_errors,
                         two_mode_mixture, weak_error)

import jaxdist as jd
from jaxdist.solvers import DDIM, DDPMAncestral, EDMStochastic, EulerMaruyama, SDEDPMSolverPP
from jaxdist.testing import empirical_order

SCHED = jd.schedules.VPLinear()
EDM_KW = dict(S_churn=2.0, S_min=0.0, S_max=1e9, S_noise=1.0)

MAKERS = {
    "euler-maruyama": lambda nz: EulerMaruyama(noise=nz),
    "ddpm": lambda nz: DDPMAncestral(noise=nz),
    "ddim-eta0.5": lambda nz: DDIM(eta=0.5, noise=nz),
    "edm-sde": lambda nz: EDMStochastic(**EDM_KW, noise=nz),
}


@pytest.mark.parametrize("name", ["euler-maruyama", "edm-sde"])
def test_strong_order_on_one_brownian_path(x64, name):
    """Strong order 1 (additive noise): RMS over 16 paths of |x_n - x_ref|, every run (n = 32,
    64, 128 uniform steps; reference 512 steps of the same solver, 1024 for EDM with S_churn=10)
    on the same Brownian path, on an overlapping 2-component 2-D mixture with its exact denoiser.
    Tolerance |p - 1| <= 0.25."""
    mix = smooth_mixture()
    x_T = jax.random.normal(jax.random.key(1), (16, 2))
    make = MAKERS[name]
    ref_steps = 512
    if name == "edm-sde":  # more churn so the noise (order 1) dominates the Heun drift (order 2)
        make = lambda nz: EDMStochastic(**{**EDM_KW, "S_churn": 10.0}, noise=nz)  # noqa: E731
        ref_steps = 1024
    errs = strong_errors(make, mix.denoiser(SCHED), x_T, [32, 64, 128], ref_steps, time_grid, BROWNIAN)
    p = empirical_order([32, 64, 128], errs)
    assert abs(p - make(None).strong_order) <= 0.25, (name, p, errs)


@pytest.mark.parametrize("name", ["euler-maruyama", "ddpm", "edm-sde"])
def test_weak_order_exact_moments(x64, name):
    """Weak order from exact mean/variance recursions on 1-D Gaussian data N(0.7, 0.25) with
    the exact (linear) denoiser, started from the exact marginal: no Monte Carlo noise.
    The measured slope (n = 32, 64, 128 log-SNR-uniform steps) must be at least the declared weak
    order - 0.2 (linear problems may superconverge: EDM's Heun step shows 2 here); the mean and
    variance errors must both vanish."""
    make = MAKERS[name]
    ns = [32, 64, 128]
    errs = [weak_error(make, SCHED, n, logsnr_grid) for n in ns]
    total = [m + v for m, v in errs]
    p = empirical_order(ns, total)
    assert p >= make(None).weak_order - 0.2, (name, p, errs)
    assert total[-1] < 0.02, errs


def test_ddim_eta_zero_is_deterministic_ddim_and_eta_one_is_ddpm(x64):
    mix = two_mode_mixture()
    den = mix.denoiser(SCHED)
    x_T = jax.random.normal(jax.random.key(0), (16, 2))
    grid = jd.grids.logsnr_uniform(SCHED, 12)
    key = jax.random.key(3)
    a = jd.sample(DDIM(), den, x_T, grid).x
    b = jd.sample(DDIM(eta=0.0), den, x_T, grid, key=key).x
    np.testing.assert_array_equal(a, b)
    assert not DDIM().stochastic and DDIM(eta=0.3).stochastic
    c = jd.sample(DDIM(eta=1.0), den, x_T, grid, key=key).x
    d = jd.sample(DDPMAncestral(), den, x_T, grid, key=key).x
    e = jd.sample(SDEDPMSolverPP(order=1), den, x_T, grid, key=key).x
    np.testing.assert_allclose(c, d, atol=1e-12)
    np.testing.assert_allclose(c, e, atol=1e-10)
    assert float(jnp.max(jnp.abs(a - c))) > 1e-2  # the noise does something


@pytest.mark.parametrize("name,n_steps", [("euler-maruyama", 200), ("ddpm", 100),
                                          ("ddim-eta0.5", 50), ("edm-sde", 40)])
def test_mixture_weights_20000_samples(name, n_steps):
    """Float32, 20,000 samples of a 2-mode 2-D mixture (weights 0.3 / 0.7); each component's
    fraction (nearest mean) within 4 binomial standard errors of its weight."""
    mix = two_mode_mixture()
    grid = jd.grids.time_uniform(SCHED, n_steps, 1.0, 1e-3)
    x_T = jax.random.normal(jax.random.key(0), (20000, 2))
    x = jax.jit(lambda x: jd.sample(MAKERS[name](None), mix.denoiser(SCHED), x, grid,
                                    key=jax.random.key(5)).x)(x_T)
    frac, z = mode_weights_check(x, mix)
    assert np.all(np.abs(z) < 4.0), (name, frac, z)


def test_samples_do_not_depend_on_batch_size():
    mix = two_mode_mixture()
    grid = jd.grids.time_uniform(SCHED, 20, 1.0, 1e-3)
    x_T = jax.random.normal(jax.random.key(0), (64, 2))
    for make in (MAKERS["edm-sde"],):
        big = jd.sample(make(None), mix.denoiser(SCHED), x_T, grid, key=jax.random.key(2)).x
        small = jd.sample(make(None), mix.denoiser(SCHED), x_T[:5], grid, key=jax.random.key(2)).x
        np.testing.assert_allclose(big[:5], small, rtol=1e-5, atol=1e-6)


def test_stochastic_solver_needs_key_and_checks_eta():
    mix = two_mode_mixture()
    grid = jd.grids.time_uniform(SCHED, 4)
    with pytest.raises(ValueError, match="key"):
        jd.sample(EulerMaruyama(), mix.denoiser(SCHED), jnp.zeros((2, 2)), grid)
    with pytest.raises(ValueError, match="eta"):
        jd.sample(DDIM(eta=1.5), mix.denoiser(SCHED), jnp.zeros((2, 2)), grid, key=jax.random.key(0))
