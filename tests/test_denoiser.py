"""Denoisers and denoiser transforms, checked against the exact Gaussian-mixture predictions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdist as jd
from jaxdist.predictions import PREDICTIONS, from_x0_eps

from test_schedules import make_schedules


def _mixture():
    return jd.testing.GaussianMixture(
        weights=[0.4, 0.6], means=[[1.0, -1.0, 0.5], [-1.5, 0.5, 0.0]], variances=[0.3, 0.05])


def _gmm_model(gmm, schedule, prediction):
    """A network ``fn(x, model_time)`` that outputs the exact GMM prediction of type ``prediction``.

    It maps the model time back to jaxdist time (VPDiscrete: ``t = (index + 1) / N``)."""

    def fn(x, t_model):
        t = t_model
        if isinstance(schedule, jd.schedules.VPDiscrete):
            t = (t_model + 1.0) / schedule.num_train_timesteps
        x0, eps = gmm.predictions(schedule, x, t)
        return from_x0_eps(x0, eps, x, t, schedule, prediction)

    return fn


@pytest.mark.parametrize("name", ["VPLinear", "VPDiscrete", "EDM", "RectifiedFlow"])
def test_denoiser_recovers_each_prediction(x64, name):
    schedule, gmm = make_schedules()[name], _mixture()
    x = jax.random.normal(jax.random.key(1), (6, 3))
    t = schedule.t_min + 0.37 * (schedule.t_max - schedule.t_min)
    x = x * (schedule.sigma(t) + schedule.alpha(t))
    want_x0, want_eps = gmm.predictions(schedule, x, t)

    @jax.jit
    def all_pairs(x):
        return {p: jd.Denoiser(_gmm_model(gmm, schedule, p), schedule, p)(x, t) for p in PREDICTIONS}

    for p, (x0, eps) in all_pairs(x).items():
        np.testing.assert_allclose(x0, want_x0, rtol=1e-9, atol=1e-11, err_msg=p)
        np.testing.assert_allclose(eps, want_eps, rtol=1e-9, atol=1e-11, err_msg=p)


def test_denoiser_per_example_time_and_broadcast(x64):
    schedule, gmm = jd.schedules.VPLinear(), _mixture()
    x = jax.random.normal(jax.random.key(2), (4, 3))
    t = jnp.asarray([0.2, 0.4, 0.6, 0.8])
    seen = []

    def fn(x, t_model):
        seen.append(jnp.shape(t_model))
        return jax.vmap(lambda xi, ti: gmm.predictions(schedule, xi, ti)[1])(x, t_model)

    x0, eps = jd.Denoiser(fn, schedule, "eps")(x, t)
    want = jax.vmap(lambda xi, ti: gmm.predictions(schedule, xi, ti))(x, t)
    np.testing.assert_allclose(x0, want[0], rtol=1e-10)
    jd.Denoiser(fn, schedule, "eps", broadcast_time=True)(x, 0.5)
    assert seen == [(4,), (4,)]


def test_wrong_shape_and_bad_arguments():
    schedule = jd.schedules.VPLinear()
    den = jd.Denoiser(lambda x, t: x[:, :2], schedule, "eps")
    with pytest.raises(ValueError, match=r"shape \(5, 2\).*shape \(5, 3\)"):
        den(jnp.ones((5, 3)), 0.5)
    with pytest.raises(TypeError, match="fn must be callable"):
        jd.Denoiser("not a function", schedule)
    with pytest.raises(TypeError, match="schedule"):
        jd.Denoiser(lambda x, t: x, "vp")
    with pytest.raises(ValueError, match="ratio"):
        jd.DynamicThreshold(den, ratio=99.5)


def test_bf16_output_is_upcast():
    schedule = jd.schedules.VPLinear()
    den = jd.Denoiser(lambda x, t: (0.5 * x).astype(jnp.bfloat16), schedule, "eps")
    x = jnp.linspace(-1.0, 1.0, 6, dtype=jnp.float32).reshape(2, 3)
    x0, eps = den(x, 0.5)
    assert eps.dtype == jnp.float32 and x0.dtype == jnp.float32
    np.testing.assert_allclose(eps, 0.5 * x, rtol=1e-2)
    # bf16 inputs too: the pair comes back in float32
    x0, eps = den(x.astype(jnp.bfloat16), 0.5)
    assert eps.dtype == jnp.float32 and x0.dtype == jnp.float32
    assert den.model_output(x.astype(jnp.bfloat16), 0.5).dtype == jnp.float32


def _ideal_edm_network(gmm, schedule, sigma_data):
    """``F = (D - c_skip x~) / c_out`` with ``D`` the exact GMM x0, as a function of
    the network inputs ``(c_in x~, c_noise)`` only."""

    def F(x_in, c_noise):
        s = jnp.exp(4.0 * c_noise)  # c_noise = log(s) / 4
        c_in = 1.0 / jnp.sqrt(s**2 + sigma_data**2)
        c_skip = sigma_data**2 / (s**2 + sigma_data**2)
        c_out = s * sigma_data / jnp.sqrt(s**2 + sigma_data**2)
        x_scaled = x_in / c_in
        t = schedule.t_from_log_snr(-2.0 * jnp.log(s))
        x = schedule.alpha(t) * x_scaled
        x0, _ = gmm.predictions(schedule, x, t)
        return (x0 - c_skip * x_scaled) / c_out

    return F


@pytest.mark.parametrize("name", ["EDM", "VPLinear"])
def test_edm_preconditioning_with_the_ideal_network(x64, name):
    schedule, gmm = make_schedules()[name], _mixture()
    den = jd.EDMPreconditioned(_ideal_edm_network(gmm, schedule, 0.5), schedule, sigma_data=0.5)
    for u in (0.05, 0.4, 0.9):
        t = schedule.t_min + u * (schedule.t_max - schedule.t_min)
        x = jax.random.normal(jax.random.key(3), (5, 3)) * (schedule.sigma(t) + schedule.alpha(t))
        x0, eps = den(x, t)
        want_x0, want_eps = gmm.predictions(schedule, x, t)
        np.testing.assert_allclose(x0, want_x0, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(eps, want_eps, rtol=1e-7, atol=1e-9)
    # Karras et al. Table 1 scalings at sigma = 1.3 (EDM: t is sigma)
    if name == "EDM":
        c_skip, c_out, c_in, c_noise = den.scalings(1.3)
        assert float(c_skip) == pytest.approx(0.25 / (1.69 + 0.25), rel=1e-14)
        assert float(c_out) == pytest.approx(1.3 * 0.5 / np.sqrt(1.94), rel=1e-14)
        assert float(c_in) == pytest.approx(1 / np.sqrt(1.94), rel=1e-14)
        assert float(c_noise) == pytest.approx(0.25 * np.log(1.3), rel=1e-14)


def _fixed_denoiser(schedule, x0):
    """A denoiser whose x0 prediction is the fixed array ``x0``."""
    return jd.Denoiser(lambda x, t: x0, schedule, "x0")


def test_clip_x0(x64):
    schedule = jd.schedules.VPLinear()
    x0 = jnp.asarray([[-3.0, -0.5, 0.2, 2.5], [0.9, 1.1, -1.0, 0.0]])
    x = jax.random.normal(jax.random.key(4), x0.shape)
    t = 0.3
    got_x0, got_eps = jd.ClipX0(_fixed_denoiser(schedule, x0), max_value=1.0)(x, t)
    np.testing.assert_array_equal(got_x0, np.clip(np.asarray(x0), -1.0, 1.0))
    np.testing.assert_allclose(schedule.alpha(t) * got_x0 + schedule.sigma(t) * got_eps, x, rtol=1e-12)


@pytest.mark.parametrize("ratio,max_value", [(0.9, 2.0), (0.5, 1.0), (1.0, 10.0)])
def test_dynamic_threshold(x64, ratio, max_value):
    """Per example: ``s = clip(quantile(|x0|, ratio), 1, max_value)``, ``x0 <- clip(x0, -s, s) / s``."""
    schedule = jd.schedules.VPCosine()
    x0 = 1.7 * jax.random.normal(jax.random.key(5), (3, 2, 5))
    x0 = x0.at[1].multiply(0.2)  # a small example: s = 1, plain clipping
    x = jax.random.normal(jax.random.key(6), x0.shape)
    t = 0.6
    got_x0, got_eps = jd.DynamicThreshold(_fixed_denoiser(schedule, x0), ratio, max_value)(x, t)
    for b in range(3):
        ex = np.asarray(x0[b])
        s = np.clip(np.quantile(np.abs(ex), ratio), 1.0, max_value)
        np.testing.assert_allclose(got_x0[b], np.clip(ex, -s, s) / s, rtol=1e-13)
    assert float(jnp.abs(got_x0).max()) <= 1.0 + 1e-12
    np.testing.assert_allclose(schedule.alpha(t) * got_x0 + schedule.sigma(t) * got_eps, x, rtol=1e-12)


def test_transforms_thread_state():
    """Transforms pass ``init_state`` / ``apply`` through to the inner denoiser."""

    class Counting(jd.BaseDenoiser):
        schedule = jd.schedules.VPLinear()

        def init_state(self, x):
            return jnp.zeros((), jnp.int32)

        def apply(self, state, x, t, **cond):
            return (3.0 * x, jnp.zeros_like(x)), state + 1

    den = jd.ClipX0(Counting(), max_value=1.0)
    x = jnp.full((2, 2), 0.5)
    state = den.init_state(x)
    (x0, _), state = den.apply(state, x, 0.5)
    (x0, _), state = den.apply(state, x, 0.5)
    assert int(state) == 2
    np.testing.assert_array_equal(x0, jnp.ones((2, 2)))
