"""Objectives: loss minimisers on Gaussian data, weightings and their parameterisation invariance.

Minimiser tests (B.5 of anchors_jax_style.md): data x0 ~ N(mu, diag(s^2)) with distinct scales
s = (0.3, 1.7, 4.0), at a fixed time t. The model is the exact optimal prediction plus a linear
perturbation ``a * x + b`` (params ``a, b``, zero at the optimum). With B = 4096 examples in
float64 we assert (i) the MC loss equals the closed-form minimum ``w(lambda) mean_d Var[x0_d | x_t]``
within 4 standard errors, (ii) each component of the gradient w.r.t. ``(a, b)`` at ``0`` is within
4 standard errors of zero. A wrong target or a wrong weight conversion fails (i) or (ii).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdist as jd
from jaxdist.objectives import dsm, weighting
from jaxdist.predictions import from_x0_eps

MU = np.array([0.5, -1.0, 2.0])
SCALES = np.array([0.3, 1.7, 4.0])
B = 4096


def gaussian():
    return jd.testing.GaussianMixture([1.0], jnp.asarray(MU)[None], jnp.asarray(SCALES**2)[None])


def perturbed_optimum(schedule, prediction):
    """apply_fn(params, x, t) = exact prediction + a * x + b (model_time is the identity here)."""
    gmm = gaussian()

    def apply_fn(params, x, t):
        x0, eps = jax.vmap(lambda xi, ti: gmm.predictions(schedule, xi, ti))(x, t)
        return from_x0_eps(x0, eps, x, t, schedule, prediction) + params["a"] * x + params["b"]

    return apply_fn


def edm_raw_optimum(schedule, sigma_data=0.5):
    """The EDM raw network F* with D = c_skip x + c_out F* = E[x0 | x] (+ a x + b on F)."""
    gmm = gaussian()

    def apply_fn(params, x_in, c_noise):
        s = jnp.exp(4.0 * c_noise)[:, None]
        x = x_in * jnp.sqrt(s**2 + sigma_data**2)
        t = schedule.t_from_log_snr(-2.0 * jnp.log(s[:, 0]))
        x0, _ = jax.vmap(lambda xi, ti: gmm.predictions(schedule, xi, ti))(x, t)
        c_skip = sigma_data**2 / (s**2 + sigma_data**2)
        c_out = s * sigma_data / jnp.sqrt(s**2 + sigma_data**2)
        return (x0 - c_skip * x) / c_out + params["a"] * x_in + params["b"]

    return apply_fn


def posterior_x0_variance(schedule, t):
    a, s = schedule.alpha(t), schedule.sigma(t)
    return np.mean(SCALES**2 * s**2 / (a**2 * SCALES**2 + s**2))


def check_optimum(loss, expected_min, key=0):
    data = gaussian().sample(jax.random.key(100 + key), B)
    batch = {"x": data}
    params = {"a": jnp.zeros(3), "b": jnp.zeros(3)}

    def per_example(p):
        aux = loss(p, jax.random.key(key), batch)[1]
        return aux["per_example"], aux

    grads, aux = jax.jit(jax.jacfwd(per_example, has_aux=True))(params)  # one compilation
    per = np.asarray(aux["per_example"])
    se = per.std(ddof=1) / np.sqrt(B)
    assert abs(per.mean() - expected_min) < 4 * se, (per.mean(), expected_min, se)
    for name, g in grads.items():
        g = np.asarray(g)  # [B, 3]
        mean, se_g = g.mean(0), g.std(0, ddof=1) / np.sqrt(B)
        assert np.all(np.abs(mean) < 4 * se_g), (name, mean, se_g)
    return aux


SCHEDULE_TIMES = {"vp": (jd.schedules.VPLinear(), 0.3), "edm": (jd.schedules.EDM(), 1.5),
                  "rf": (jd.schedules.RectifiedFlow(), 0.6)}


CASES = ([("vp", p) for p in ["eps", "x0", "v", "score", "velocity"]]
         + [(s, p) for s in ["edm", "rf"] for p in ["eps", "velocity"]])


@pytest.mark.parametrize("which,prediction", CASES)
def test_dsm_minimiser_is_the_exact_denoiser(x64, which, prediction):
    """Min-SNR(5): the same x0-scale minimum ``min(SNR, 5) Var[x0|x_t]`` for every target."""
    schedule, t0 = SCHEDULE_TIMES[which]
    loss = dsm.make_dsm_loss(perturbed_optimum(schedule, prediction), schedule=schedule,
                             prediction=prediction, weighting="min_snr", gamma=5.0,
                             time_sampler=dsm.constant_time(t0))
    w = min(float(np.exp(schedule.log_snr(t0))), 5.0)
    check_optimum(loss, w * posterior_x0_variance(schedule, t0))


@pytest.mark.parametrize("name", ["uniform", "snr", "likelihood", "edm", "sigmoid"])
def test_dsm_minimum_for_every_weighting(x64, name):
    schedule, t0 = jd.schedules.VPCosine(), 0.45
    wfn = weighting.get_weighting(name)
    lam = schedule.log_snr(jnp.asarray(t0))
    neg_dlam = -jax.grad(schedule.log_snr)(jnp.asarray(t0))
    loss = dsm.make_dsm_loss(perturbed_optimum(schedule, "v"), schedule=schedule, prediction="v",
                             weighting=name, time_sampler=dsm.constant_time(t0))
    check_optimum(loss, float(wfn(lam, neg_dlam)) * posterior_x0_variance(schedule, t0), key=1)


def test_edm_objective_minimiser_is_the_exact_denoiser(x64):
    """EDM's preconditioned F at its optimum: loss = lambda(sigma) Var[x0 | x] (fixed sigma)."""
    schedule, t0 = jd.schedules.EDM(), 0.8
    obj = jd.objectives.make_objective("edm", edm_raw_optimum(schedule), schedule=schedule,
                                       time_sampler=dsm.constant_time(t0))
    w = (t0**2 + 0.25) / (t0**2 * 0.25)
    check_optimum(obj.loss, w * posterior_x0_variance(schedule, t0), key=2)


def test_edm_lognormal_levels_and_unit_weight_on_F(x64):
    """EDM's weight makes the loss a unit-weight MSE on F's target, and noise levels are
    log-normal(P_mean, P_std): the mean of log(sigma) is within 4 SE of P_mean."""
    schedule = jd.schedules.EDM()
    apply_fn = lambda p, x, c: p * x  # noqa: E731
    obj = jd.objectives.make_objective("edm", apply_fn, schedule=schedule)
    x0 = gaussian().sample(jax.random.key(0), B)
    _, aux = obj.loss(0.7, jax.random.key(1), {"x": x0})
    log_s = np.log(np.asarray(aux["t"]))
    assert abs(log_s.mean() + 1.2) < 4 * 1.2 / np.sqrt(B)
    assert abs(log_s.std() - 1.2) < 0.05
    # Recompute with F_target = (x0 - c_skip x) / c_out for the same draws.
    s = jnp.asarray(aux["t"])[:, None]
    k_t, k_eps, _, _ = jax.random.split(jax.random.key(1), 4)
    noise = jax.random.normal(k_eps, x0.shape, x0.dtype)
    x = x0 + s * noise
    c_skip, c_out, c_in, _ = jd.EDMPreconditioned(lambda x, c: x, schedule).scalings(s)
    f_target = (x0 - c_skip * x) / c_out
    manual = jnp.mean((0.7 * c_in * x - f_target) ** 2, axis=1)
    np.testing.assert_allclose(aux["per_example"], manual, rtol=1e-10)


def test_min_snr_weights_identical_in_every_parameterisation(x64):
    """Min-SNR: the same x0 estimate gives identical per-example weights and losses whether the
    network predicts eps, x0, v, score or velocity; the eps and v weights equal the published
    ``min(SNR, g) / SNR`` and (VP) ``min(SNR, g) / (SNR + 1)``."""
    schedule, gamma = jd.schedules.VPLinear(), 5.0
    x0 = gaussian().sample(jax.random.key(0), 512)
    results = {}
    for prediction in ["eps", "x0", "v", "score", "velocity"]:
        def apply_fn(params, x, t, prediction=prediction):
            x0_hat = 0.8 * x + 0.1  # an arbitrary (wrong) estimate of x0, the same for all
            a, s = schedule.alpha(t)[:, None], schedule.sigma(t)[:, None]
            return from_x0_eps(x0_hat, (x - a * x0_hat) / s, x, t, schedule, prediction)

        loss = dsm.make_dsm_loss(apply_fn, schedule=schedule, prediction=prediction,
                                 weighting="min_snr", gamma=gamma)
        _, aux = jax.jit(loss)(None, jax.random.key(3), {"x": x0})
        results[prediction] = aux
    ref = results["x0"]
    snr = np.exp(np.asarray(ref["log_snr"]))
    np.testing.assert_allclose(ref["weights"], np.minimum(snr, gamma), rtol=1e-12)
    for prediction, aux in results.items():
        np.testing.assert_allclose(aux["weights"], ref["weights"], rtol=1e-12, err_msg=prediction)
        np.testing.assert_allclose(aux["per_example"], ref["per_example"], rtol=1e-8,
                                   err_msg=prediction)
    t = jnp.asarray(ref["t"])
    w = weighting.min_snr(gamma)
    np.testing.assert_allclose(weighting.target_weight(w, "eps", schedule, t)[1],
                               np.minimum(snr, gamma) / snr, rtol=1e-10)
    np.testing.assert_allclose(weighting.target_weight(w, "v", schedule, t)[1],
                               np.minimum(snr, gamma) / (snr + 1), rtol=1e-10)


@pytest.mark.parametrize("schedule", [jd.schedules.VPLinear(), jd.schedules.VE(),
                                      jd.schedules.EDM()], ids=["vp", "ve", "edm"])
def test_likelihood_weighting_is_g2_over_sigma2_on_the_eps_scale(x64, schedule):
    t = jnp.linspace(schedule.t_min * 2, schedule.t_max * 0.9, 7)
    w, w_eps = weighting.target_weight(weighting.likelihood(), "eps", schedule, t)
    np.testing.assert_allclose(w_eps, schedule.g2(t) / schedule.sigma(t) ** 2, rtol=1e-9)
    _, w_score = weighting.target_weight(weighting.likelihood(), "score", schedule, t)
    np.testing.assert_allclose(w_score, schedule.g2(t), rtol=1e-9)


def test_error_scale_is_the_exact_factor_between_target_errors(x64):
    """``||P(x0 + d) - P(x0)||^2 = c_P^2 ||d||^2`` at fixed (x_t, t), for every prediction."""
    key = jax.random.key(0)
    x, d, x0 = jax.random.normal(key, (3, 5, 4))

    @functools.partial(jax.jit, static_argnames="prediction")
    def both(t, schedule, prediction):
        a, s = schedule.alpha(t)[:, None], schedule.sigma(t)[:, None]
        p = lambda z: from_x0_eps(z, (x - a * z) / s, x, t, schedule, prediction)  # noqa: E731
        lhs = jnp.sum((p(x0 + d) - p(x0)) ** 2, 1)
        return lhs, weighting.error_scale(prediction, schedule, t) * jnp.sum(d**2, 1)

    for schedule in [jd.schedules.VPLinear(), jd.schedules.VE(), jd.schedules.RectifiedFlow()]:
        t = jnp.linspace(0.1, 0.9, 5) * schedule.t_max
        for prediction in ["eps", "x0", "v", "score", "velocity"]:
            lhs, rhs = both(t, schedule, prediction)
            np.testing.assert_allclose(lhs, rhs, rtol=1e-9, err_msg=prediction)


def test_objective_denoisers_sample(x64):
    """Every objective's ``denoiser`` runs through ``jd.sample`` and recovers the trained model."""
    schedule = jd.schedules.VPLinear()
    apply_fn = perturbed_optimum(schedule, "eps")
    obj = jd.objectives.make_objective("dsm", apply_fn, schedule=schedule)
    params = {"a": jnp.zeros(3), "b": jnp.zeros(3)}
    den = obj.denoiser(apply_fn, params)
    x = jax.random.normal(jax.random.key(0), (6, 3))
    t = jnp.full(6, 0.4)
    for got, want in zip(den(x, t), gaussian().denoiser(schedule)(x, t)):
        np.testing.assert_allclose(got, want, rtol=1e-10)


def test_bad_arguments_raise_clear_errors():
    f = lambda p, x, t: x  # noqa: E731
    with pytest.raises(ValueError, match="unknown objective"):
        jd.objectives.make_objective("gan", f)
    with pytest.raises(ValueError, match="weighting="):
        jd.objectives.make_objective("dsm", f, weighting="snr2")
    with pytest.raises(ValueError, match="prediction="):
        jd.objectives.make_objective("dsm", f, prediction="noise")
    with pytest.raises(ValueError, match="gamma"):
        weighting.min_snr(-1.0)
    with pytest.raises(ValueError, match="time_sampler"):
        jd.objectives.make_objective("dsm", f, time_sampler="beta")
    obj = jd.objectives.make_objective("dsm", f)
    with pytest.raises(ValueError, match="batch must be a dict"):
        obj.loss(None, jax.random.key(0), jnp.ones((4, 2)))


def test_sliced_score_matching_minimiser_and_unbiased_trace(x64):
    """SSM-VR at the true Gaussian score ``-(x - mu)/s^2`` (+ ``a * x + b``): the MC loss equals
    Hyvarinen's minimum ``-1/2 sum_d 1/s_d^2`` within 4 SE and the gradient is within 4 SE of 0.
    The sliced trace ``v^T J v`` averaged over probes equals ``tr J`` of a nonlinear model."""
    def score(params, x, t):
        return -(x - MU) / SCALES**2 + params["a"] * x + params["b"]

    for variance_reduced in (True, False):
        loss = jd.objectives.make_objective("ssm", score, n_projections=2,
                                            variance_reduced=variance_reduced).loss
        check_optimum(loss, -0.5 * np.sum(1 / SCALES**2), key=5)

    w = jax.random.normal(jax.random.key(0), (3, 3))
    nonlinear = lambda p, x, t: jnp.tanh(x @ w) * x  # noqa: E731
    x = jax.random.normal(jax.random.key(1), (4, 3))
    loss = jax.jit(jd.objectives.make_objective("ssm", nonlinear, n_projections=20_000,
                                                variance_reduced=True).loss)
    _, aux = loss(None, jax.random.key(2), {"x": x})
    jac = jax.vmap(jax.jacfwd(lambda xi: nonlinear(None, xi[None], 0.0)[0]))(x)
    exact = jnp.trace(jac, axis1=1, axis2=2) + 0.5 * jnp.sum(nonlinear(None, x, 0.0) ** 2, 1)
    # Rademacher: Var[v^T J v] = sum_{i != j} (J_ij^2 + J_ij J_ji) <= 2 ||J||_F^2; 4 SE bound.
    se = jnp.sqrt(2 * jnp.sum(jac**2, (1, 2)) / 20_000)
    assert np.all(np.abs(aux["per_example"] - exact) < 4 * se), (aux["per_example"], exact, se)
