"""Schedules: identities, exact inverses, closed-form SDE coefficients vs autodiff, diffusers betas.

Numerical checks run in float64 (``x64`` fixture); the float32 test only checks finiteness.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdist as jd
from jaxdist.schedules import Schedule, betas_from_diffusers_config

SD = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
DIFFUSERS_CONFIGS = {
    "linear": dict(num_train_timesteps=1000, beta_schedule="linear"),
    "scaled_linear": SD,
    "squaredcos_cap_v2": dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2"),
    "scaled_linear_zero_snr": dict(SD, rescale_betas_zero_snr=True),
}
# diffusers 0.42.1 (torch 2.13.0+cpu) EulerDiscreteScheduler(**config).alphas_cumprod (float32) at
# indices AC_INDICES (the zero-SNR terminal value is diffusers' 2^-24 clamp).
AC_INDICES = [0, 1, 499, 998, 999]
DIFFUSERS_ALPHAS_CUMPROD = {
    "linear": [0.9998999834060669, 0.9997800588607788, 0.07858723402023315, 4.118194192415103e-05,
               4.035830352222547e-05],
    "scaled_linear": [0.9991499781608582, 0.9982960224151611, 0.27766942977905273,
                      0.004716695751994848, 0.00466009508818388],
    "squaredcos_cap_v2": [0.9999586939811707, 0.9999125599861145, 0.4938434660434723,
                          2.428766265438753e-06, 2.4287349909002387e-09],
    "scaled_linear_zero_snr": [0.9991499781608582, 0.9982334971427917, 0.24235899746418,
                               1.9679633567193378e-07, 5.960464477539063e-08],
}


def make_schedules():
    """All six schedule types (built inside the test, so in the test's precision)."""
    return {
        "VPLinear": jd.schedules.VPLinear(),
        "VPCosine": jd.schedules.VPCosine(),
        "VPDiscrete": jd.schedules.VPDiscrete.from_diffusers_config(SD),
        "VE": jd.schedules.VE(),
        "EDM": jd.schedules.EDM(),
        "RectifiedFlow": jd.schedules.RectifiedFlow(),
    }


NAMES = list(make_schedules())
VP_NAMES = ["VPLinear", "VPCosine", "VPDiscrete"]


def interior_times(s: Schedule, n: int = 41) -> jax.Array:
    """Times inside ``[t_min, t_max]`` that avoid VPDiscrete's knots (where it has kinks)."""
    u = (np.arange(n) + 0.37) / n
    return jnp.asarray(s.t_min + u * (s.t_max - s.t_min))


def end_times(s: Schedule) -> jax.Array:
    span = s.t_max - s.t_min
    return jnp.asarray([s.t_min, s.t_min + 1e-6 * span, s.t_min + 1e-3 * span,
                        s.t_max - 1e-3 * span, s.t_max - 1e-6 * span, s.t_max])


@pytest.mark.parametrize("name", VP_NAMES)
def test_vp_variance_preserving(x64, name):
    s = make_schedules()[name]
    t = jnp.concatenate([interior_times(s), end_times(s)])
    np.testing.assert_allclose(s.alpha(t) ** 2 + s.sigma(t) ** 2, 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("float64", [True, False])
def test_clean_at_zero(request, name, float64):
    if float64:
        request.getfixturevalue("x64")
    s = make_schedules()[name]
    sigma, alpha = np.asarray(s.sigma(0.0)), np.asarray(s.alpha(0.0))
    assert sigma.dtype == (np.float64 if float64 else np.float32)
    assert sigma == 0.0 and not np.signbit(sigma)
    assert alpha == 1.0


@pytest.mark.parametrize("name", NAMES)
def test_log_snr_definition_and_monotone(x64, name):
    s = make_schedules()[name]
    t = jnp.linspace(s.t_min, s.t_max, 4001)
    lam = np.asarray(s.log_snr(t))
    ok = np.isfinite(lam)
    assert ok[:-1].all(), "log-SNR must be finite below t_max"
    assert np.all(np.diff(lam) < 0), "log-SNR must be strictly decreasing on [t_min, t_max]"
    with np.errstate(divide="ignore"):
        direct = np.log(np.asarray(s.alpha(t)) ** 2 / np.asarray(s.sigma(t)) ** 2)
    np.testing.assert_allclose(lam[ok], direct[ok], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(s.sigma_over_alpha(t), np.exp(-0.5 * lam), rtol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_t_from_log_snr_inverts(x64, name):
    s = make_schedules()[name]
    t = jnp.concatenate([interior_times(s), end_times(s)])
    np.testing.assert_allclose(s.t_from_log_snr(s.log_snr(t)), t, rtol=1e-8, atol=0)


def _autodiff_coefficients(s: Schedule, t: jax.Array):
    """``f = alpha'/alpha`` and ``g2 = (sigma^2)' - 2 f sigma^2`` by autodiff of alpha, sigma."""
    d_alpha = jax.vmap(jax.grad(lambda u: s.alpha(u)))(t)
    d_sigma = jax.vmap(jax.grad(lambda u: s.sigma(u)))(t)
    f = d_alpha / s.alpha(t)
    g2 = 2.0 * s.sigma(t) * d_sigma - 2.0 * f * s.sigma(t) ** 2
    return d_alpha, d_sigma, f, g2


@pytest.mark.parametrize("name", NAMES)
def test_sde_coefficients_match_autodiff(x64, name):
    s = make_schedules()[name]

    @jax.jit
    def everything(t):
        closed = (s.d_alpha(t), s.d_sigma(t), s.f(t), s.g2(t))
        # the generic (autodiff-based) base-class implementations
        base = (Schedule.d_alpha(s, t), Schedule.d_sigma(s, t), Schedule.f(s, t), Schedule.g2(s, t))
        return closed, base, _autodiff_coefficients(s, t)

    closed, base, autodiff = everything(interior_times(s))
    for what, c, b, a in zip(("d_alpha", "d_sigma", "f", "g2"), closed, base, autodiff):
        np.testing.assert_allclose(c, a, rtol=1e-8, atol=1e-12, err_msg=what)
        np.testing.assert_allclose(c, b, rtol=1e-8, atol=1e-12, err_msg=what)
    assert np.all(np.asarray(closed[3]) > 0)


@pytest.mark.parametrize("name", NAMES)
def test_finite_in_float32_near_the_ends(name):
    s = make_schedules()[name]
    t = end_times(s).astype(jnp.float32)
    fns = ("alpha", "sigma", "log_snr", "f", "g2", "d_alpha", "d_sigma", "sigma_over_alpha")
    outs = jax.jit(lambda u: {fn: getattr(s, fn)(u) for fn in fns})(t)
    for fn in fns:
        out = np.asarray(outs[fn])
        assert out.dtype == np.float32, fn
        assert not np.isnan(out).any(), f"{name}.{fn} is NaN near the ends: {out}"
        if name == "RectifiedFlow":  # t_max = 1 is pure noise: lambda = -inf and f, g2 blow up
            out = out[:-1]
        assert np.isfinite(out).all(), f"{name}.{fn} is not finite near the ends: {out}"
    back = np.asarray(s.t_from_log_snr(s.log_snr(t)))
    np.testing.assert_allclose(back, np.asarray(t), rtol=2e-3)


@pytest.mark.parametrize("kind", list(DIFFUSERS_CONFIGS))
def test_vp_discrete_matches_diffusers_betas(x64, kind):
    config = DIFFUSERS_CONFIGS[kind]
    s = jd.schedules.VPDiscrete.from_diffusers_config(config)
    n = s.num_train_timesteps
    assert n == 1000 and s.t_min == 1 / n and s.t_max == 1.0
    betas = betas_from_diffusers_config(config)
    expected = np.cumprod(1.0 - betas)  # numpy float64 reference
    if kind.endswith("zero_snr"):
        assert expected[-1] == 0.0
        expected[-1] = 2.0**-24  # diffusers' clamp of the zero terminal SNR
    t = (np.arange(n) + 1.0) / n
    np.testing.assert_allclose(s.alpha(t) ** 2, expected, rtol=1e-12)
    # the real diffusers values (computed there in float32: the zero-SNR rescale cancels
    # sqrt(abar_k) - sqrt(abar_T) in float32, ~4e-5 relative error at index 998)
    got = np.asarray(s.alpha(t[AC_INDICES])) ** 2
    np.testing.assert_allclose(got, DIFFUSERS_ALPHAS_CUMPROD[kind], rtol=1e-4)
    np.testing.assert_allclose(s.model_time(t), np.arange(n), atol=1e-9)


def test_betas_formulas(x64):
    n = 1000
    lin = betas_from_diffusers_config(DIFFUSERS_CONFIGS["linear"])
    np.testing.assert_allclose(lin[[0, -1]], [1e-4, 0.02], rtol=1e-14)
    np.testing.assert_allclose(np.diff(lin), (0.02 - 1e-4) / (n - 1), rtol=1e-9)
    sl = betas_from_diffusers_config(SD)
    np.testing.assert_allclose(np.sqrt(sl)[[0, -1]], [0.00085**0.5, 0.012**0.5], rtol=1e-14)
    np.testing.assert_allclose(np.diff(np.sqrt(sl)), (0.012**0.5 - 0.00085**0.5) / (n - 1), rtol=1e-9)
    cos = betas_from_diffusers_config(DIFFUSERS_CONFIGS["squaredcos_cap_v2"])
    abar = np.cos((np.arange(n + 1) / n + 0.008) / 1.008 * np.pi / 2) ** 2
    np.testing.assert_allclose(cos, np.minimum(1 - abar[1:] / abar[:-1], 0.999), rtol=1e-12)
    trained = betas_from_diffusers_config(dict(trained_betas=list(sl[:10])))
    np.testing.assert_array_equal(trained, sl[:10])


def test_rescale_zero_terminal_snr(x64):
    """Lin et al. (2024) Algorithm 1: sqrt(abar) shifted to 0 at T and rescaled to keep abar_1."""
    s = jd.schedules.VPDiscrete.from_diffusers_config(DIFFUSERS_CONFIGS["scaled_linear_zero_snr"])
    assert float(s.alpha(1.0)) ** 2 == pytest.approx(2.0**-24, rel=1e-12)  # clamped zero SNR
    assert float(s.log_snr(1.0)) == pytest.approx(np.log(2.0**-24 / (1 - 2.0**-24)), rel=1e-12)
    sqrt_ab = np.sqrt(np.cumprod(1.0 - betas_from_diffusers_config(SD)))
    k = 499  # a known value: index 499 sits at t = 500 / 1000
    expected = ((sqrt_ab[k] - sqrt_ab[-1]) * sqrt_ab[0] / (sqrt_ab[0] - sqrt_ab[-1])) ** 2
    assert float(s.alpha(0.5)) ** 2 == pytest.approx(expected, rel=1e-12)
    assert float(s.alpha(0.001)) ** 2 == pytest.approx(sqrt_ab[0] ** 2, rel=1e-12)  # abar_1 kept
    # the rescaled schedule is still invertible and finite at t_max
    t = jnp.asarray([0.5, 0.999, 1.0])
    np.testing.assert_allclose(s.t_from_log_snr(s.log_snr(t)), t, rtol=1e-8)


def test_vp_discrete_model_time_and_errors(x64):
    s = jd.schedules.VPDiscrete.from_diffusers_config(SD, quantize=True)
    np.testing.assert_array_equal(s.model_time(jnp.asarray([0.5004, 0.0106])), [499.0, 10.0])
    with pytest.raises(ValueError, match="betas"):
        jd.schedules.VPDiscrete(np.array([0.1, 1.5, 0.2]))
    with pytest.raises(ValueError, match="beta_schedule"):
        betas_from_diffusers_config(dict(beta_schedule="sigmoid"))


@pytest.mark.parametrize("name", NAMES)
def test_hashable_and_jittable(x64, name):
    s = make_schedules()[name]
    assert hash(s) == hash(s)
    t = jnp.asarray([0.3, 0.6]) * s.t_max
    ref = s.alpha(t) * s.sigma(t)
    closed = jax.jit(lambda u: s.alpha(u) * s.sigma(u))(t)  # closed over
    as_arg = jax.jit(lambda sch, u: sch.alpha(u) * sch.sigma(u))(s, t)  # pytree argument
    np.testing.assert_allclose(closed, ref, rtol=1e-14)
    np.testing.assert_allclose(as_arg, ref, rtol=1e-14)
    if name != "VPDiscrete":  # parameter-only schedules compare (and hash) by value
        assert s == type(s)() and hash(s) == hash(type(s)())


def test_vp_discrete_pytree_no_retrace(x64):
    """Two discrete schedules of the same length share one compiled function (knots are leaves)."""
    traces = []

    @jax.jit
    def fn(sch, u):
        traces.append(1)
        return sch.log_snr(u)

    a = jd.schedules.VPDiscrete.from_diffusers_config(SD)
    b = jd.schedules.VPDiscrete.from_diffusers_config(DIFFUSERS_CONFIGS["linear"])
    t = jnp.asarray([0.25, 0.75])
    np.testing.assert_allclose(fn(a, t), a.log_snr(t), rtol=1e-14)
    np.testing.assert_allclose(fn(b, t), b.log_snr(t), rtol=1e-14)
    assert len(traces) == 1
    leaves = jax.tree_util.tree_leaves(a)
    assert len(leaves) == 1 and leaves[0].shape == (1001,)


@pytest.mark.parametrize("make,argument", [
    (lambda: jd.schedules.VPLinear(beta_min=-1.0), "beta_min=-1.0"),
    (lambda: jd.schedules.VPLinear(beta_min=5.0, beta_max=1.0),
     "beta_max must be positive and at least beta_min"),
    (lambda: jd.schedules.VPLinear(beta_max=float("nan")), "must be finite"),
    (lambda: jd.schedules.VPLinear(t_min=0.0), "0 < t_min < t_max"),
    (lambda: jd.schedules.VPCosine(t_max=1.0), "t_max < 1"),
    (lambda: jd.schedules.VPCosine(s=-0.1), "s=-0.1"),
    (lambda: jd.schedules.VE(sigma_min=0.0), "VE(sigma_min=0.0): sigma_min must be positive"),
    (lambda: jd.schedules.VE(sigma_min=1.0, sigma_max=0.5), "sigma_max must be larger"),
    (lambda: jd.schedules.VE(t_max=0.01), "t_max must exceed t_min"),
    (lambda: jd.schedules.EDM(sigma_data=-1.0),
     "EDM(sigma_data=-1.0): sigma_data must be positive"),
    (lambda: jd.schedules.EDM(sigma_min=1.0, sigma_max=0.5), "sigma_max must be larger"),
    (lambda: jd.schedules.RectifiedFlow(t_max=1.5), "t_max <= 1"),
])
def test_bad_parameters_are_named(make, argument):
    with pytest.raises(ValueError, match=re.escape(argument)):
        make()


def test_parameter_checks_do_not_break_tracing_or_replace():
    import dataclasses

    s = jd.schedules.VPLinear(beta_min=0.0, beta_max=10.0)  # edge values are valid
    leaves, tree = jax.tree.flatten(s)
    assert jax.tree.unflatten(tree, leaves) == s
    assert float(jax.jit(lambda sched, t: sched.alpha(t))(s, 0.5)) == pytest.approx(
        float(s.alpha(0.5)))
    with pytest.raises(ValueError, match="beta_min"):
        dataclasses.replace(s, beta_min=-0.5)
    jd.schedules.EDM(sigma_data=np.float32(0.25))  # NumPy scalars are checked and accepted
    with pytest.raises(ValueError, match="sigma_data"):
        jd.schedules.EDM(sigma_data=np.float64(-0.25))


def test_t_from_model_time_inverts_model_time(x64):
    d = jd.schedules.VPDiscrete(np.linspace(1e-4, 0.02, 1000))
    t = jnp.array([0.001, 0.5, 1.0])
    np.testing.assert_allclose(d.t_from_model_time(d.model_time(t)), t, rtol=1e-12)
    assert float(jd.schedules.VPLinear().t_from_model_time(0.3)) == 0.3
