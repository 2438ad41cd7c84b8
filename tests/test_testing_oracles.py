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


def test_oracle_rejects_times_outside_the_schedule_and_takes_model_time(x64):
    """The README trap: a network inside jd.Denoiser receives schedule.model_time(t) (for
    VPDiscrete the index N t - 1); the oracle refuses such times unless time='model'."""
    gmm = jd.testing.GaussianMixture([0.3, 0.7], [[2.0, 0.0], [-1.0, 1.0]],
                                     [[0.1, 0.2], [0.3, 0.1]])
    discrete = jd.schedules.VPDiscrete(np.linspace(1e-4, 0.02, 1000))
    x = jnp.ones((4, 2))
    with pytest.raises(ValueError, match=r"t=999 is outside the time range \[0, 1\] of VPDiscrete.*"
                                         r"pass time='model'"):
        gmm.predictions(discrete, x, 999.0)
    with pytest.raises(ValueError, match="t=-0.1 is outside"):
        gmm.score(jd.schedules.VPLinear(), x, -0.1)
    with pytest.raises(ValueError, match="time='clock' must be one of"):
        gmm.predictions(discrete, x, 0.5, time="clock")
    t = 0.4
    want = gmm.predictions(discrete, x, t)
    got = gmm.predictions(discrete, x, discrete.model_time(t), time="model")
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
    # the oracle as the network of a Denoiser: exact with time="model", wrong without
    den = jd.Denoiser(lambda y, m: gmm.predictions(discrete, y, m, time="model")[1], discrete)
    np.testing.assert_allclose(den(x, t)[0], want[0], rtol=1e-9)
    traced = jax.jit(lambda y, s: gmm.predictions(discrete, y, s))(x, 999.0)  # not checked
    assert traced[0].shape == x.shape


class _Stop(Exception):
    pass


def _stopping_denoiser(schedule):
    """A denoiser that stops jd.sample at its first evaluation (the warning comes before)."""
    def fn(x, t):
        raise _Stop

    return jd.Denoiser(fn, schedule, "eps")


def test_measure_order_warns_in_float32():
    schedule = jd.schedules.VPLinear()
    x_T = jnp.ones((4, 1), jnp.float32)
    with pytest.warns(UserWarning, match="low precision .*x_T is float32.*jax_enable_x64"):
        with pytest.raises(_Stop):
            jd.testing.measure_order(jd.solvers.DDIM(), _stopping_denoiser(schedule), x_T,
                                     (2, 4), lambda n: jd.grids.logsnr_uniform(schedule, n), None)


def test_measure_order_is_quiet_in_float64(x64, recwarn):
    schedule = jd.schedules.VPLinear()
    with pytest.raises(_Stop):
        jd.testing.measure_order(jd.solvers.DDIM(), _stopping_denoiser(schedule),
                                 jnp.ones((4, 1)), (2, 4),
                                 lambda n: jd.grids.logsnr_uniform(schedule, n), None)
    assert not [w for w in recwarn if "low precision" in str(w.message)]


def test_builtin_mixture_is_the_bench_problem():
    gmm = jd.testing.builtin_mixture()
    assert gmm.means.shape == (8, 2) and float(gmm.weights.sum()) == pytest.approx(1.0)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(gmm.means), axis=1), 2.0, rtol=1e-6)
