"""Prediction conversions (eps, x0, v, score, velocity) on every schedule, and the exact GMM oracle.

Conversions are checked against the ground truth built from a known ``(x0, eps)`` pair: for all 20
ordered pairs ``convert(pred_src, src -> dst) == pred_dst`` and the round trip back to ``src``.
Errors are measured relative to the largest entry of the expected array.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxdist as jd
from jaxdist.predictions import PREDICTIONS, from_x0_eps, to_x0_eps

from test_schedules import NAMES, make_schedules

PAIRS = [(a, b) for a, b in itertools.permutations(PREDICTIONS, 2)]
assert len(PAIRS) == 20


def rel_err(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


@jax.jit
def _all_conversions(schedule, x0, eps, t):
    """Ground-truth predictions and every converted / round-tripped one (``convert(.., src,
    "x0")`` and ``(.., "eps")`` also check ``to_x0_eps`` for every type). The schedule is a
    pytree argument (VPDiscrete's knots are an input, not a constant)."""
    x = schedule.marginal(x0, eps, t)
    truth = {p: from_x0_eps(x0, eps, x, t, schedule, p) for p in PREDICTIONS}
    conv, back = {}, {}
    for src, dst in PAIRS:
        conv[src, dst] = jd.convert(truth[src], x, t, schedule, src, dst)
        back[src, dst] = jd.convert(conv[src, dst], x, t, schedule, dst, src)
    return truth, conv, back


def _check_conversions(name, dtype, rtol, u, seed):
    schedule = make_schedules()[name]
    rng = np.random.default_rng(seed)
    x0, eps = rng.standard_normal((2, 4, 3)).astype(dtype)
    # per-example times in [0.05, 0.95] of the range: u (from hypothesis) and 3 random ones
    lo = schedule.t_min + 0.05 * (schedule.t_max - schedule.t_min)
    hi = schedule.t_min + 0.95 * (schedule.t_max - schedule.t_min)
    t = (lo + (hi - lo) * np.concatenate([[u], rng.uniform(size=3)])).astype(dtype)
    truth, conv, back = jax.device_get(_all_conversions(schedule, x0, eps, t))
    for src, dst in PAIRS:
        assert conv[src, dst].dtype == dtype
        assert rel_err(conv[src, dst], truth[dst]) <= rtol, (src, dst, rel_err(conv[src, dst], truth[dst]))
        assert rel_err(back[src, dst], truth[src]) <= rtol, (src, dst, rel_err(back[src, dst], truth[src]))
    np.testing.assert_array_equal(truth["x0"], x0)
    np.testing.assert_array_equal(truth["eps"], eps)


_settings = settings(max_examples=25, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
_u = st.floats(0.0, 1.0)
_seed = st.integers(0, 2**31 - 1)


@pytest.mark.parametrize("name", NAMES)
@_settings
@given(u=_u, seed=_seed)
def test_convert_all_pairs_float64(x64, name, u, seed):
    _check_conversions(name, np.float64, 1e-10, u, seed)


@pytest.mark.parametrize("name", NAMES)
@_settings
@given(u=_u, seed=_seed)
def test_convert_all_pairs_float32(name, u, seed):
    _check_conversions(name, np.float32, 1e-4, u, seed)


def test_v_and_velocity_definitions(x64):
    """Spot values of the definitions: v = alpha eps - sigma x0, u = alpha' x0 + sigma' eps."""
    s = jd.schedules.VPLinear()
    x0, eps, t = jnp.asarray([0.3, -1.2]), jnp.asarray([0.7, 0.1]), 0.4
    x = s.marginal(x0, eps, t)
    a, sg, da, ds = s.alpha(t), s.sigma(t), s.d_alpha(t), s.d_sigma(t)
    np.testing.assert_allclose(from_x0_eps(x0, eps, x, t, s, "v"), a * eps - sg * x0, rtol=1e-14)
    np.testing.assert_allclose(from_x0_eps(x0, eps, x, t, s, "velocity"), da * x0 + ds * eps,
                               rtol=1e-14)
    np.testing.assert_allclose(from_x0_eps(x0, eps, x, t, s, "score"), -eps / sg, rtol=1e-14)
    # rectified flow: velocity = eps - x0
    rf = jd.schedules.RectifiedFlow()
    x = rf.marginal(x0, eps, 0.3)
    np.testing.assert_allclose(from_x0_eps(x0, eps, x, 0.3, rf, "velocity"), eps - x0, rtol=1e-14)


def test_unknown_prediction_names_the_argument():
    s, x = jd.schedules.VPLinear(), jnp.ones((2, 3))
    with pytest.raises(ValueError, match="src='epsilon'"):
        jd.convert(x, x, 0.5, s, "epsilon", "x0")
    with pytest.raises(ValueError, match="dst='sample'"):
        jd.convert(x, x, 0.5, s, "eps", "sample")
    with pytest.raises(ValueError, match="src='foo'"):
        jd.convert(x, x, 0.5, s, "foo", "foo")
    with pytest.raises(ValueError, match="prediction='v_prediction'"):
        to_x0_eps(x, x, 0.5, s, "v_prediction")
    with pytest.raises(ValueError, match="prediction='flow'"):
        jd.Denoiser(lambda x, t: x, s, prediction="flow")


def _mixture():
    return jd.testing.GaussianMixture(
        weights=[0.3, 0.7], means=[[1.5, -0.5], [-1.0, 0.8]], variances=[[0.2, 0.4], [0.5, 0.1]])


@pytest.mark.parametrize("name", NAMES)
def test_gmm_pf_ode_identity_and_score(x64, name):
    """``alpha' x0 + sigma' eps = f x - g2/2 score`` with the exact GMM predictions, and the GMM
    score equals ``grad_x log p_t(x)``."""
    s, gmm = make_schedules()[name], _mixture()

    @jax.jit
    def check(x, t):
        x0, eps = gmm.predictions(s, x, t)
        score = gmm.score(s, x, t)
        lhs = s.d_alpha(t) * x0 + s.d_sigma(t) * eps
        rhs = s.f(t) * x - 0.5 * s.g2(t) * score
        grad = jax.vmap(jax.grad(lambda xi: gmm.log_prob(xi, t, s)))(x)
        eps_from_score = -s.sigma(t) * score
        return lhs, rhs, score, grad, eps, eps_from_score

    x = jax.random.normal(jax.random.key(0), (5, 2)) * 2.0
    for u in (0.05, 0.3, 0.6, 0.95):
        t = jnp.asarray(s.t_min + u * (s.t_max - s.t_min))
        lhs, rhs, score, grad, eps, eps_from_score = check(x * s.sigma(t) ** 0.5, t)
        assert rel_err(lhs, rhs) <= 1e-10, (u, rel_err(lhs, rhs))
        np.testing.assert_allclose(score, grad, rtol=1e-10, atol=1e-12 * float(np.abs(grad).max()))
        np.testing.assert_allclose(eps, eps_from_score, rtol=1e-10, atol=1e-14)
