"""The public oracles: exact mixture predictions, the ODE reference and the order fit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdist as jd


def test_empirical_order_recovers_slopes():
    n = np.array([8, 16, 32, 64, 128])
    assert jd.testing.empirical_order(n, 3.0 * n**-2.0) == pytest.approx(2.0, abs=1e-12)
    # Points at the round-off floor are ignored; `last` selects the asymptotic window.
    errors = np.concatenate([5.0 * n[:3] ** -1.0, [1e-16, 1e-17]])
    assert jd.testing.empirical_order(n, errors) == pytest.approx(1.0, abs=1e-12)
    assert jd.testing.empirical_order(n, n**-1.0 + n**-3.0, last=2) == pytest.approx(1.0, abs=0.01)
    with pytest.raises(ValueError, match="at least two errors"):
        jd.testing.empirical_order([8, 16], [1e-20, 1e-20])


@pytest.mark.parametrize("schedule,t0,t1", [
    (jd.schedules.VPLinear(), 1.0, 1e-3), (jd.schedules.EDM(), 80.0, 2e-3),
    (jd.schedules.RectifiedFlow(), 0.999, 0.0)])
def test_mixture_reference_agrees_with_closed_form(x64, schedule, t0, t1):
    """Two identical components make a single Gaussian: the adaptive reference must match the
    closed form (so the reference solve is trustworthy for real mixtures)."""
    mean, var = [[0.5, -1.0]], [[0.3, 2.0]]
    single = jd.testing.GaussianMixture([1.0], mean, var)
    double = jd.testing.GaussianMixture([0.5, 0.5], mean * 2, var * 2)
    x_T = jax.random.normal(jax.random.key(0), (5, 2), jnp.float64) * schedule.sigma(t0)
    exact = single.ode_solution(schedule, x_T, t0, t1)
    np.testing.assert_allclose(double.ode_solution(schedule, x_T, t0, t1), exact, atol=1e-8)


def test_ode_solution_maps_marginals(x64):
    """The exact flow carries N(mu, s^2) at t=0 to the noised marginal at t (in distribution):
    pushing data samples to t_max and back returns them."""
    schedule = jd.schedules.VPLinear()
    gmm = jd.testing.GaussianMixture([1.0], [[1.0, -2.0]], [[0.5, 0.2]])
    x0 = gmm.sample(jax.random.key(1), 4)
    there = gmm.ode_solution(schedule, x0, 0.0, 1.0)
    np.testing.assert_allclose(gmm.ode_solution(schedule, there, 1.0, 0.0), x0, atol=1e-12)


def test_mixture_moments_and_sampling():
    gmm = jd.testing.GaussianMixture([1.0, 3.0], [[0.0, 0.0], [4.0, 0.0]], [[1.0, 1.0], [0.5, 2.0]])
    x = gmm.sample(jax.random.key(0), 200_000)
    np.testing.assert_allclose(x.mean(0), gmm.mean, atol=0.02)
    np.testing.assert_allclose(jnp.cov(x.T), gmm.covariance, atol=0.05)
    with pytest.raises(ValueError, match="weights has 3 components"):
        jd.testing.GaussianMixture([1, 1, 1], [[0.0], [1.0]], [1.0, 1.0])


def test_exact_denoiser_accepts_per_example_times(x64):
    schedule = jd.schedules.EDM()
    gmm = jd.testing.GaussianMixture([0.5, 0.5], [[1.0, 1.0], [-1.0, 0.0]], [[0.2, 0.1], [0.1, 0.3]])
    den = gmm.denoiser(schedule)
    x, t = jnp.ones((3, 2)), jnp.array([0.1, 1.0, 10.0])
    x0, eps = den(x, t)
    for i in range(3):
        x0_i, eps_i = den(x[i:i + 1], t[i])
        np.testing.assert_allclose(x0[i], x0_i[0], rtol=1e-12)
        np.testing.assert_allclose(eps[i], eps_i[0], rtol=1e-12)
    np.testing.assert_allclose(schedule.marginal(x0, eps, t), x, rtol=1e-12)
