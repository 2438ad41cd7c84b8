"""Guidance transformations: CFG, APG, CFG++, intervals / adaptive guidance, the combinator and
classifier guidance, checked against closed forms (float64) on Gaussian (mixture) data."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

import jaxdist as jd
from jaxdist.guidance import (APG, CFG, CFGPlusPlus, ClassifierGuidance, Guided, WithCond,
                              calibrated_log_prob, cfgpp_solver, guided_until, switch_time)

SCHED = jd.schedules.VPLinear()
NULL = 2  # the null label of the class-conditional test models
#: the high-NFE sampler of the distribution tests (3M: 8e-6 max error at 100 steps on N(mu, 0.3))
HI = jd.solvers.DPMSolverPP(order=3)


def class_model(classes, uncond, *, counter=None):
    """A class-conditional eps-model with exact predictions: label k -> ``classes[k]``, the null
    label -> ``uncond`` (all ``GaussianMixture``s). ``counter`` records the rows evaluated."""
    mixtures = list(classes) + [uncond]

    def fn(x, t, y):
        if counter is not None:
            jax.debug.callback(lambda _: counter.append(x.shape[0]), jnp.zeros(()))
        eps = jnp.stack([m.predictions(SCHED, x, t)[1] for m in mixtures])  # [K+1, B, D]
        return jnp.take_along_axis(eps, y[None, :, None].astype(jnp.int32), 0)[0]

    return jd.Denoiser(fn, SCHED, prediction="eps")


def two_classes(dim=2):
    m0 = jd.testing.GaussianMixture([1.0], [[-2.0] + [0.5] * (dim - 1)], [[0.5] * dim])
    m1 = jd.testing.GaussianMixture([1.0], [[2.0] + [-0.5] * (dim - 1)], [[0.3] * dim])
    full = jd.testing.GaussianMixture([0.4, 0.6], jnp.concatenate([m0.means, m1.means]),
                                      jnp.concatenate([m0.variances, m1.variances]))
    return class_model([m0, m1], full), (m0, m1, full)


def grid(n, final_zero=False):
    return jd.grids.logsnr_uniform(SCHED, n, final_zero=final_zero)


def noise(n, dim, seed=0):
    return jax.random.normal(jax.random.key(seed), (n, dim), jnp.float64)


def labels(n, k=1):
    return {"y": jnp.full((n,), k, jnp.int32)}


# --------------------------------------------------------------------------------------------
# CFG


def test_cfg_one_batched_call_and_pair_consistency(x64):
    """One model call on [x; x]; same pair as two calls; x = alpha x0 + sigma eps holds, so
    guiding eps or x0 is the same (the documented choice)."""
    rows = []
    den = class_model(two_classes()[1][:2], two_classes()[1][2], counter=rows)
    x, t = noise(5, 2), 0.4
    g = CFG(den, 3.0, {"y": NULL})
    x0, eps = jax.jit(lambda x: g(x, t, **labels(5)))(x)
    assert rows == [10]
    x0b, epsb = CFG(den, 3.0, {"y": NULL}, batched=False)(x, t, **labels(5))
    np.testing.assert_allclose(x0, x0b, atol=1e-13)
    np.testing.assert_allclose(eps, epsb, atol=1e-13)
    a, s = SCHED.alpha(t), SCHED.sigma(t)
    np.testing.assert_allclose(a * x0 + s * eps, x, atol=1e-13)
    c, u = den(x, t, **labels(5)), den(x, t, y=jnp.full((5,), NULL))
    np.testing.assert_allclose(eps, u[1] + 3.0 * (c[1] - u[1]), atol=1e-13)
    np.testing.assert_allclose(x0, (x - s * eps) / a, atol=1e-12)


def test_cfg_time_varying_scale_and_errors():
    den, _ = two_classes()
    x = jnp.ones((3, 2))
    w_fn = CFG(den, lambda t: 1.0 + 2.0 * t, {"y": NULL})(x, 0.5, **labels(3))
    w_2 = CFG(den, 2.0, {"y": NULL})(x, 0.5, **labels(3))
    np.testing.assert_allclose(w_fn[0], w_2[0], rtol=1e-5)
    with pytest.raises(ValueError, match="null_cond"):
        CFG(den, 2.0, None)
    # null conditioning: values broadcast to the conditioning's shape, or a function
    ctx = {"y": jnp.arange(3), "emb": jnp.ones((3, 4, 5))}
    out = jd.guidance.null_conditioning(ctx, {"y": NULL, "emb": jnp.zeros(5)})
    assert out["y"].tolist() == [NULL] * 3 and out["emb"].shape == (3, 4, 5)
    assert float(jnp.abs(out["emb"]).sum()) == 0.0
    assert jd.guidance.null_conditioning(ctx, lambda c: {**c, "y": c["y"] * 0})["y"].sum() == 0
    with pytest.raises(ValueError, match="interval"):
        CFG(den, 2.0, {"y": NULL}, interval=(2.0, 1.0))


def test_cfg_gaussian_classes_closed_form(x64):
    """Conditional N(mu_c, s^2) and unconditional N(mu_u, s^2) with equal covariance: the
    guided score is that of N(mu_u + w (mu_c - mu_u), s^2) at every t, so the guided PF-ODE
    solution is closed form. 3M with 100 steps matches it pointwise; moments match within a
    Monte Carlo tolerance of 5 standard errors (N = 4000)."""
    var = jnp.array([[0.3, 0.7]])
    mc = jd.testing.GaussianMixture([1.0], [[1.0, -0.5]], var)
    mu = jd.testing.GaussianMixture([1.0], [[0.2, 0.1]], var)
    w = 4.0
    mw = jd.testing.GaussianMixture([1.0], mu.means + w * (mc.means - mu.means), var)
    den = class_model([mu, mc], mu)
    n, g = 4000, grid(100)
    x_T = noise(n, 2, seed=1)
    out = jd.sample(HI, CFG(den, w, {"y": NULL}), x_T, g,
                    cond=labels(n)).x
    exact = mw.ode_solution(SCHED, x_T, g[0], g[-1])
    assert float(jnp.max(jnp.abs(out - exact))) < 1e-4
    se_mean = jnp.sqrt(var[0] / n)
    assert np.all(np.abs(out.mean(0) - mw.means[0]) < 5 * se_mean)
    se_var = var[0] * math.sqrt(2 / n)
    assert np.all(np.abs(out.var(0) - var[0]) < 5 * se_var)


def _guided_ode_reference(score, x_T, t0, t1):
    import diffrax

    def drift(t, x, args):
        return SCHED.f(t) * x - 0.5 * SCHED.g2(t) * score(x, t)

    sol = diffrax.diffeqsolve(diffrax.ODETerm(drift), diffrax.Dopri8(), t0=t0, t1=t1,
                              dt0=(t1 - t0) / 64, y0=x_T,
                              stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-10),
                              max_steps=100_000, saveat=diffrax.SaveAt(t1=True))
    return sol.ys[0]


def test_cfg_on_class_conditional_mixture_matches_guided_ode(x64):
    """Class 1 is one component of a 2-component unconditional mixture (1-D): the guided score
    ``s_u + w (s_c - s_u)`` is not Gaussian, so the reference is a Dopri8 solve (rtol 1e-10) of
    the guided PF-ODE from the same x_T. Samples match pointwise and in mean / variance."""
    m0 = jd.testing.GaussianMixture([1.0], [[-1.5]], [[0.4]])
    m1 = jd.testing.GaussianMixture([1.0], [[1.5]], [[0.4]])
    full = jd.testing.GaussianMixture([0.5, 0.5], [[-1.5], [1.5]], [[0.4], [0.4]])
    w, n, g = 3.0, 512, grid(200)  # the guided ODE is harder: 3M error 5e-4 at 100 steps
    x_T = noise(n, 1, seed=2)
    out = jd.sample(HI, CFG(class_model([m0, m1], full), w, {"y": NULL}), x_T, g,
                    cond=labels(n)).x

    def score(x, t):
        su, sc = full.score(SCHED, x, t), m1.score(SCHED, x, t)
        return su + w * (sc - su)

    ref = _guided_ode_reference(score, x_T, float(g[0]), float(g[-1]))
    assert float(jnp.max(jnp.abs(out - ref))) < 3e-4
    np.testing.assert_allclose(out.mean(), ref.mean(), atol=5e-5)
    np.testing.assert_allclose(out.var(), ref.var(), atol=5e-5)
    # Guidance moved the class mean beyond the conditional one (saturation / extrapolation).
    assert float(ref.mean()) > 1.5


# --------------------------------------------------------------------------------------------
# APG


def test_apg_eta1_no_threshold_no_momentum_equals_cfg(x64):
    den, _ = two_classes()
    x_T, g = noise(64, 2, seed=3), grid(16)
    solver = jd.solvers.DPMSolverPP(order=2)
    cfg = jd.sample(solver, CFG(den, 5.0, {"y": NULL}), x_T, g, cond=labels(64)).x
    apg = jd.sample(solver, APG(den, 5.0, {"y": NULL}, eta=1.0), x_T, g, cond=labels(64)).x
    assert float(jnp.max(jnp.abs(apg - cfg))) < 1e-6
    apg0 = jd.sample(solver, APG(den, 5.0, {"y": NULL}, eta=0.0), x_T, g, cond=labels(64)).x
    assert float(jnp.max(jnp.abs(apg0 - cfg))) > 1e-3  # the projection does something


def test_apg_momentum_is_carried_across_steps(x64):
    """``jd.sample`` threads the momentum buffer: DDIM with APG(momentum, threshold) equals a
    Python loop that applies the paper's update with an explicit buffer."""
    den, _ = two_classes()
    w, beta, r, eta = 4.0, -0.5, 1.0, 0.3
    x_T, g = noise(8, 2, seed=4), grid(16)
    apg = APG(den, w, {"y": NULL}, eta=eta, norm_threshold=r, momentum=beta)
    out = jd.sample(jd.solvers.DDIM(), apg, x_T, g, cond=labels(8)).x

    x, m = x_T, jnp.zeros_like(x_T)
    for i in range(len(g) - 1):
        t = g[i]
        xc, _ = den(x, t, **labels(8))
        xu, _ = den(x, t, y=jnp.full((8,), NULL))
        m = (xc - xu) + beta * m
        d = m * jnp.minimum(1.0, r / jnp.linalg.norm(m, axis=1, keepdims=True))
        v = xc / jnp.linalg.norm(xc, axis=1, keepdims=True)
        par = jnp.sum(d * v, 1, keepdims=True) * v
        x0 = xc + (w - 1) * (d - par + eta * par)
        eps = (x - SCHED.alpha(t) * x0) / SCHED.sigma(t)
        x = SCHED.alpha(g[i + 1]) * x0 + SCHED.sigma(g[i + 1]) * eps
    np.testing.assert_allclose(out, x, atol=1e-10)
    no_mom = jd.sample(jd.solvers.DDIM(), APG(den, w, {"y": NULL}, eta=eta, norm_threshold=r),
                       x_T, g, cond=labels(8)).x
    assert float(jnp.max(jnp.abs(no_mom - out))) > 1e-3


# --------------------------------------------------------------------------------------------
# CFG++


def test_cfgpp_scale0_equals_unconditional(x64):
    den, _ = two_classes()
    uncond = WithCond(den, y=jnp.full((32,), NULL))
    x_T, g = noise(32, 2, seed=5), grid(16)
    for solver in (jd.solvers.DDIM(), jd.solvers.DPMSolverPP(order=2)):
        ref = jd.sample(solver, uncond, x_T, g).x
        out = jd.sample(cfgpp_solver(solver), CFGPlusPlus(den, 0.0, {"y": NULL}), x_T, g,
                        cond=labels(32)).x
        np.testing.assert_allclose(out, ref, atol=1e-12)


def test_cfgpp_ddim_update_and_multistep_first_order(x64):
    """DDIM with CFG++ is ``alpha' x0_g + sigma' eps_u`` (checked on one step); DPM-Solver++
    order 1 wrapped by ``cfgpp_solver`` equals it over a whole run; 2M-CFG++ differs from
    2M-CFG (the wrapper changes the update) and from DDIM-CFG++ (second-order terms)."""
    den, _ = two_classes()
    lam, x_T, g = 0.6, noise(16, 2, seed=6), grid(16)
    cpp = CFGPlusPlus(den, lam, {"y": NULL})
    one = jd.sample(jd.solvers.DDIM(), cpp, x_T, g[:2], cond=labels(16)).x
    c = den(x_T, g[0], **labels(16))
    u = den(x_T, g[0], y=jnp.full((16,), NULL))
    manual = SCHED.alpha(g[1]) * (u[0] + lam * (c[0] - u[0])) + SCHED.sigma(g[1]) * u[1]
    np.testing.assert_allclose(one, manual, atol=1e-12)

    ddim = jd.sample(jd.solvers.DDIM(), cpp, x_T, g, cond=labels(16)).x
    pp1 = jd.sample(cfgpp_solver(jd.solvers.DPMSolverPP(order=1)), cpp, x_T, g,
                    cond=labels(16)).x
    np.testing.assert_allclose(pp1, ddim, atol=1e-10)
    pp2 = jd.sample(cfgpp_solver(jd.solvers.DPMSolverPP(order=2)), cpp, x_T, g,
                    cond=labels(16))
    plain = jd.sample(jd.solvers.DPMSolverPP(order=2), cpp, x_T, g, cond=labels(16)).x
    assert bool(pp2.all_finite) and int(pp2.nfe) == 16
    assert float(jnp.max(jnp.abs(pp2.x - plain))) > 1e-3
    assert float(jnp.max(jnp.abs(pp2.x - ddim))) > 1e-6
    with pytest.raises(ValueError, match="cfgpp_solver"):
        cfgpp_solver(jd.solvers.DPMSolverPP(method="singlestep"))


# --------------------------------------------------------------------------------------------
# guidance interval and adaptive guidance


def test_interval_outside_sampled_range_equals_conditional(x64):
    den, _ = two_classes()
    x_T, g = noise(32, 2, seed=7), grid(16)
    solver = jd.solvers.DPMSolverPP(order=2)
    cond_only = jd.sample(solver, den, x_T, g, cond=labels(32)).x
    s_max = float(SCHED.sigma_over_alpha(g[0]))
    off = CFG(den, 5.0, {"y": NULL}, interval=(2 * s_max, 4 * s_max))
    np.testing.assert_allclose(jd.sample(solver, off, x_T, g, cond=labels(32)).x, cond_only,
                               atol=1e-13)
    full = CFG(den, 5.0, {"y": NULL}, interval=(0.0, math.inf))
    np.testing.assert_allclose(jd.sample(solver, full, x_T, g, cond=labels(32)).x,
                               jd.sample(solver, CFG(den, 5.0, {"y": NULL}), x_T, g,
                                         cond=labels(32)).x, atol=1e-13)


def test_interval_with_per_example_times(x64):
    """With ``t [batch]`` (no lax.cond possible) each example is guided iff its own noise level
    is inside the interval."""
    den, _ = two_classes()
    x, t = noise(4, 2, seed=14), jnp.array([0.05, 0.3, 0.6, 0.9])
    s = SCHED.sigma_over_alpha(t)
    lo, hi = float(s[1]) * 0.99, float(s[2]) * 1.01
    out = CFG(den, 4.0, {"y": NULL}, interval=(lo, hi))(x, t, **labels(4))
    cfg = CFG(den, 4.0, {"y": NULL})(x, t, **labels(4))
    cond = den(x, t, **labels(4))
    inside = np.array([False, True, True, False])
    for k in range(2):
        np.testing.assert_allclose(out[k][inside], cfg[k][inside], atol=1e-12)
        np.testing.assert_allclose(out[k][~inside], cond[k][~inside], atol=1e-12)


def test_adaptive_guidance_skips_unconditional_evaluations(x64):
    """Guided for the first k steps, conditional after: inside one jitted sampler the model
    sees 2B rows on guided steps and B rows after (lax.cond), and the result equals a
    two-segment run (CFG on grid[:k+1], then conditional on grid[k:])."""
    rows = []
    m = two_classes()[1]
    den = class_model(m[:2], m[2], counter=rows)
    b, n, k = 4, 16, 6
    x_T, g = noise(b, 2, seed=8), grid(n)
    ag = CFG(den, 3.0, {"y": NULL}, interval=guided_until(SCHED, switch_time(g, k)))
    run = jax.jit(lambda x: jd.sample(jd.solvers.DDIM(), ag, x, g, cond=labels(b)).x)
    out = run(x_T)
    jax.block_until_ready(out)
    rows.clear()
    out = jax.block_until_ready(run(x_T))
    assert sorted(rows) == sorted([2 * b] * k + [b] * (n - k))
    first = jd.sample(jd.solvers.DDIM(), CFG(den, 3.0, {"y": NULL}), x_T, g[:k + 1],
                      cond=labels(b)).x
    ref = jd.sample(jd.solvers.DDIM(), den, first, g[k:], cond=labels(b)).x
    np.testing.assert_allclose(out, ref, atol=1e-12)


# --------------------------------------------------------------------------------------------
# the general combinator


def test_guided_combinator_autoguidance_closed_form(x64):
    """``pos + w (pos - neg)`` with pos N(mu_p, s^2), neg N(mu_n, s^2) (a 'weaker model' with a
    biased mean) has the score of N(mu_p + w (mu_p - mu_n), s^2): closed-form PF-ODE solution.
    It also reproduces CFG: Guided(den, WithCond(den, y=NULL), w - 1) == CFG(den, w)."""
    var = jnp.array([[0.4, 0.4]])
    pos = jd.testing.GaussianMixture([1.0], [[1.0, 0.0]], var)
    neg = jd.testing.GaussianMixture([1.0], [[0.5, 0.3]], var)
    w = 1.5
    target = jd.testing.GaussianMixture([1.0], pos.means + w * (pos.means - neg.means), var)
    x_T, g = noise(64, 2, seed=9), grid(100)
    out = jd.sample(HI, Guided(pos.denoiser(SCHED), neg.denoiser(SCHED), w), x_T, g).x
    assert float(jnp.max(jnp.abs(out - target.ode_solution(SCHED, x_T, g[0], g[-1])))) < 1e-4

    den, _ = two_classes()
    x = noise(8, 2, seed=10)
    a = Guided(den, WithCond(den, y=jnp.full((8,), NULL)), 2.0)(x, 0.3, **labels(8))
    b = CFG(den, 3.0, {"y": NULL})(x, 0.3, **labels(8))
    np.testing.assert_allclose(a[0], b[0], atol=1e-12)
    np.testing.assert_allclose(a[1], b[1], atol=1e-12)


# --------------------------------------------------------------------------------------------
# classifier guidance


def _exact_classifier(mix):
    """``log p_t(y | x_t)`` of a mixture's components (the exact noisy classifier)."""

    comps = [jd.testing.GaussianMixture([1.0], mix.means[k:k + 1], mix.variances[k:k + 1])
             for k in range(mix.weights.shape[0])]

    def log_prob(x, t, y):
        logp = jnp.stack([jnp.log(mix.weights[k]) + c.log_prob(x, t, SCHED)
                          for k, c in enumerate(comps)], -1)
        return jnp.take_along_axis(logp, y[:, None], -1)[:, 0] - jax.nn.logsumexp(logp, -1)

    return log_prob


def test_classifier_guidance_scale1_gives_the_class_component(x64):
    """With the exact classifier, scale 1 turns the mixture score into the class component's
    score at every t: the sampler output matches that component's closed-form PF-ODE."""
    mix = jd.testing.GaussianMixture([0.3, 0.7], [[-1.0], [1.5]], [[0.6], [0.4]])
    comp0 = jd.testing.GaussianMixture([1.0], [[-1.0]], [[0.6]])
    guided = ClassifierGuidance(mix.denoiser(SCHED), _exact_classifier(mix), 1.0,
                                classifier_keys=("y",))
    x_T, g = noise(256, 1, seed=11), grid(100)
    out = jd.sample(HI, guided, x_T, g, cond={"y": jnp.zeros((256,), jnp.int32)}).x
    assert float(jnp.max(jnp.abs(out - comp0.ode_solution(SCHED, x_T, g[0], g[-1])))) < 1e-4


@pytest.mark.parametrize("w", [0.25, 0.5])
def test_classifier_guidance_tilts_mode_weights(x64, w):
    """Two separated modes (weights 0.5/0.5): guidance at scale w towards class 1 (scales
    >= 1 send every sample to class 1 here, so the informative range is w < 1). A 1-D ODE
    flow preserves order, so the class-1 weight of the output is P(x_T > x*), x* the point the
    guided PF-ODE maps to the decision boundary 0 (backward Dopri8 solve, rtol 1e-10): weight
    ``1 - Phi(x*)``. N = 4000 samples: the empirical weight is within 4 binomial standard errors,
    and at most 2 samples end on the other side than predicted from their own x_T."""
    mix = jd.testing.GaussianMixture([0.5, 0.5], [[-2.0], [2.0]], [[0.25], [0.25]])
    log_prob = _exact_classifier(mix)
    guided = ClassifierGuidance(mix.denoiser(SCHED), log_prob, w, classifier_keys=("y",))
    n, g = 4000, grid(100)
    x_T = noise(n, 1, seed=12)
    y = jnp.ones((n,), jnp.int32)
    out = jd.sample(HI, guided, x_T, g, cond={"y": y}).x

    def score(x, t):
        grad = jax.grad(lambda v: jnp.sum(log_prob(v, t, jnp.ones(v.shape[:1], jnp.int32))))(x)
        return mix.score(SCHED, x, t) + w * grad

    x_star = float(_guided_ode_reference(score, jnp.zeros((1, 1)), float(g[-1]), float(g[0]))[0, 0])
    p1 = 1.0 - float(norm.cdf(x_star))
    frac = float(jnp.mean(out[:, 0] > 0))
    assert abs(frac - p1) < 4 * math.sqrt(p1 * (1 - p1) / n)
    assert int(jnp.sum((out[:, 0] > 0) != (x_T[:, 0] > x_star))) <= 2
    assert p1 > 0.5  # tilted towards class 1 (0.5 without guidance)


def test_calibrated_log_prob_and_x0_input(x64):
    """Temperatures 1 give log_softmax; with ``input='x0'`` the update is
    ``x0 + w sigma^2/alpha grad_x0 log p(y | x0_hat)`` (denoiser held fixed)."""
    wmat = jnp.array([[1.0, -1.0, 0.5], [0.3, 0.2, -0.7]])
    logits_fn = lambda x: x @ wmat  # noqa: E731
    lp = calibrated_log_prob(logits_fn)
    x = noise(6, 2, seed=13)
    y = jnp.array([0, 1, 2, 0, 1, 2])
    np.testing.assert_allclose(lp(x, 0.0, y),
                               jnp.take_along_axis(jax.nn.log_softmax(logits_fn(x)), y[:, None],
                                                   1)[:, 0], atol=1e-12)
    lp2 = calibrated_log_prob(logits_fn, 2.0, 0.5)
    np.testing.assert_allclose(lp2(x, 0.0, y), 2.0 * logits_fn(x)[jnp.arange(6), y]
                               - jax.nn.logsumexp(0.5 * logits_fn(x), -1), atol=1e-12)
    mix = jd.testing.GaussianMixture([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.0]], [[0.5, 0.5]] * 2)
    den, t, w = mix.denoiser(SCHED), 0.3, 2.0
    x0, eps = den(x, t)
    gx0, geps = ClassifierGuidance(den, lp, w, input="x0", classifier_keys=("y",))(x, t, y=y)
    grad = wmat.T[y] - jax.nn.softmax(logits_fn(x0)) @ wmat.T
    a, s = SCHED.alpha(t), SCHED.sigma(t)
    np.testing.assert_allclose(gx0, x0 + w * s**2 / a * grad, atol=1e-12)
    np.testing.assert_allclose(a * gx0 + s * geps, x, atol=1e-12)
