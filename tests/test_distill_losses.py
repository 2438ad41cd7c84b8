"""Distribution matching (DMD, DMD2, f-distill, VSD) and SDS against Gaussian oracles.

Teacher ``p = N(MU, diag(SCALES^2))`` (exact denoiser), generator ``G(z) = mu + L z`` (a
one-step generator of the EDM schedule), fake score and density ratio either exact (the closed
form for ``q = N(mu, L L^T)``) or learned (a Gaussian fake-score family trained by DSM on the
generator's samples; a discriminator head on quadratic features, trained by the logistic loss).

* with the exact ratio, the f-distill gradient at a fixed noise level equals the gradient of
  ``D_f(p_t || q_t)`` integrated on a grid (``jaxdist.testing.fewstep.gaussian_f_divergence``),
  within 4 standard errors, for reverse KL (= DMD/VSD), forward KL, Jensen-Shannon and squared
  Hellinger; at ``q = p`` it vanishes and a perturbation is pushed back;
* DMD and every f-divergence converge to the teacher's mean and covariance;
* the two-time-scale step with a learned fake score (and a learned discriminator for
  f-distill) converges too;
* SDS on a point converges to the teacher's mode (its mean) with zero gradient there.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxdist as jd
from fewstep_helpers import (MU, SCALES, exact_log_ratio, gaussian, gaussian_fake,
                             gaussian_x0, linear_generator)
from jaxdist.distill import init_distill_state, make_distill_step
from jaxdist.objectives import dmd, score_distillation
from jaxdist.objectives.dsm import constant_time
from jaxdist.testing.fewstep import gaussian_f_divergence, gaussian_kl

SCH = jd.schedules.EDM(sigma_data=1.0)
GRID = jnp.array([80.0, 0.002])
DIVERGENCES = ["reverse-kl", "forward-kl", "js", "squared-hellinger"]
THETA = {"mu": jnp.array([0.2, -0.4]), "L": jnp.array([[0.7, 0.0], [0.3, 1.1]])}
TEACHER_PARAMS = {"mu": jnp.asarray(MU), "L": jnp.diag(jnp.asarray(SCALES))}


def exact_fake(p):
    """The exact denoiser of the generator with parameters ``p``."""
    cov = p["L"] @ p["L"].T
    return jd.Denoiser(lambda x, t: gaussian_x0(SCH, p["mu"], cov, x, t), SCH, "x0")


def exact_logit(gen_params, disc_params, x_t, t):
    return exact_log_ratio(SCH, gen_params)(x_t, t)


def generator():
    return dmd.Generator(linear_generator(SCH, GRID), GRID)


def exact_loss(divergence, n, *, weighting="kl", time_sampler=None, normalize=False):
    """The generator loss with the exact fake score and ratio of the current generator, which
    the batch passes as ``fake_params``."""
    return dmd.make_generator_loss(
        generator(), gaussian().denoiser(SCH), exact_fake, sample_shape=(2,), batch_size=n,
        divergence=divergence, weighting=weighting, time_sampler=time_sampler,
        logit_fn=exact_logit, ratio_clip=None if not normalize else (0.1, 20.0),
        normalize_h=normalize)


def switched(index):
    """The divergence ``DIVERGENCES[index]`` for a traced ``index``: one compilation serves all
    four (``jax.vmap`` over the index)."""
    divs = [score_distillation.get_divergence(d) for d in DIVERGENCES]

    def pick(fns, log_r):
        return jnp.select([index == i for i in range(len(fns))], [f(log_r) for f in fns])

    return score_distillation.FDivergence("switched", lambda l: pick([d.f for d in divs], l),
                                          lambda l: pick([d.h for d in divs], l))


def test_f_distill_gradient_is_the_closed_form_divergence_gradient(x64):
    """At noise level sigma = 0.7 with the exact ratio, for reverse KL (DMD/VSD), forward KL,
    JS and squared Hellinger: D * E[per-example gradient] equals grad D_f(p_t || q_t)
    (quadrature, 401^2 points) within 4 standard errors; for the KLs the quadrature equals the
    closed form to 1e-8."""
    n, sigma = 8192, 0.7
    eye = jnp.eye(2)
    cov_p = jnp.diag(jnp.asarray(SCALES**2)) + sigma**2 * eye

    def divergence_at(div, th):
        return gaussian_f_divergence(div.f, jnp.asarray(MU), cov_p, th["mu"],
                                     th["L"] @ th["L"].T + sigma**2 * eye)

    @jax.jit
    @jax.vmap
    def cases(index):
        div = switched(index)
        loss = exact_loss(div, n, time_sampler=constant_time(sigma))

        def per(th):
            return loss(th, jax.random.key(0), {"fake_params": THETA, "disc_params": {}})[1][
                "per_example"]

        return (jax.jacfwd(per)(THETA), jax.grad(lambda th: divergence_at(div, th))(THETA),
                divergence_at(div, THETA))

    grads, exact, values = cases(jnp.arange(len(DIVERGENCES)))
    for i, name in enumerate(DIVERGENCES):
        for leaf in ("mu", "L"):
            g = 2.0 * np.asarray(grads[leaf][i]).reshape(n, -1)  # D = 2: the mean over d
            mean, se = g.mean(0), g.std(0, ddof=1) / np.sqrt(n)
            want = np.ravel(exact[leaf][i])
            assert np.all(np.abs(mean - want) < 4 * se + 1e-9), (name, leaf, mean, want, se)
    q = (THETA["mu"], THETA["L"] @ THETA["L"].T + sigma**2 * eye)
    np.testing.assert_allclose(values[0], gaussian_kl(*q, jnp.asarray(MU), cov_p), rtol=1e-8)
    np.testing.assert_allclose(values[1], gaussian_kl(jnp.asarray(MU), cov_p, *q), rtol=1e-8)


def test_generator_gradient_vanishes_at_the_teacher(x64):
    """At q = p the score difference is zero pointwise for every divergence (DMD2's normaliser
    and normalised h on; gradient below 1e-5: round-off of the two exact denoisers, amplified up
    to 1e4 by the normaliser at the smallest noise level)."""
    @jax.jit
    @jax.vmap
    def cases(index):
        loss = exact_loss(switched(index), 2048, weighting="dmd", normalize=True)
        batch = {"fake_params": TEACHER_PARAMS, "disc_params": {}}
        return jax.grad(lambda p: loss(p, jax.random.key(0), batch)[0])(TEACHER_PARAMS)

    grads = cases(jnp.arange(len(DIVERGENCES)))
    assert max(float(jnp.abs(g).max()) for g in grads.values()) < 1e-5


def moments(params):
    return np.asarray(params["mu"]), np.asarray(params["L"] @ params["L"].T)


def assert_matches_teacher(params, mean_tol=0.05, cov_tol=0.1):
    mean, cov = moments(params)
    np.testing.assert_allclose(mean, MU, atol=mean_tol)
    np.testing.assert_allclose(cov, np.diag(SCALES**2), atol=cov_tol * np.max(SCALES**2))


START = {"mu": jnp.zeros(2), "L": jnp.eye(2)}


def test_distribution_matching_converges_to_the_teacher():
    """DMD (reverse KL), f-distill (forward KL, JS, squared Hellinger; clipped, normalised h),
    with DMD2's normaliser, and VSD (reverse KL, w = SNR); exact fake score and ratio of the
    current generator; 400 Adam steps from N(0, I): mean within 0.05, covariance within
    0.1 * max variance of the teacher's (each case also moves far from its start)."""
    steps = 400
    index = jnp.array([0, 1, 2, 3, 0])
    vsd = jnp.array([False, False, False, False, True])

    @jax.jit
    @jax.vmap
    def run(index, vsd):
        def weighting(t, x, x0_real):
            dmd_w = score_distillation.distillation_weight("dmd", SCH, t, x, x0_real)
            kl_w = score_distillation.distillation_weight("kl", SCH, t, x, x0_real)
            return jnp.where(vsd, kl_w, dmd_w)

        loss = exact_loss(switched(index), 512, weighting=weighting, normalize=True)
        tx = optax.adam(optax.cosine_decay_schedule(jnp.where(vsd, 1e-2, 3e-2), steps, 0.05))

        def step(carry, i):
            p, o = carry
            batch = {"fake_params": jax.lax.stop_gradient(p), "disc_params": {}}
            g = jax.grad(lambda q: loss(q, jax.random.key(i), batch)[0])(p)
            upd, o = tx.update(g, o, p)
            return (optax.apply_updates(p, upd), o), None

        return jax.lax.scan(step, (START, tx.init(START)), jnp.arange(steps))[0][0]

    final = run(index, vsd)
    for i in range(len(index)):
        assert_matches_teacher(jax.tree.map(lambda a: a[i], final))


def quadratic_features(fake_params, x, t):
    """``[1, x, x^2, x1 x2] (x) [1, u, u^2]`` with ``u = log(sigma) / 4``: the exact log-ratio of
    two Gaussians at a fixed level is quadratic in x."""
    u = (jnp.log(t) / 4.0)[:, None]
    base = jnp.concatenate([jnp.ones_like(x[:, :1]), x, x**2, x[:, :1] * x[:, 1:]], axis=1)
    return jnp.concatenate([base, base * u, base * u**2], axis=1)


def test_two_time_scale_training_with_learned_critic_converges():
    """The full step, DMD2 (reverse KL + GAN term) and f-distill (JS + GAN term): a
    Gaussian-family fake score trained by DSM on the generator's samples and a linear
    discriminator head on quadratic features trained against teacher samples (its logit is the
    density-ratio estimate), 2 critic updates per generator update, DMD2's normaliser; 300
    steps from N(0, I): mean within 0.05, covariance within 0.15."""
    n, steps = 256, 300
    fake_apply, fake_den = gaussian_fake(SCH)
    logit_fn = dmd.feature_discriminator(quadratic_features, lambda p, f: f @ p["w"] + p["b"])
    gen_tx = optax.adam(optax.cosine_decay_schedule(3e-2, steps, 0.05))
    fake_tx = disc_tx = optax.adam(3e-2)
    real = gaussian().sample(jax.random.key(1), steps * n).reshape(steps, n, 2)

    @jax.jit
    @jax.vmap
    def run(index):
        gen_loss = dmd.make_generator_loss(generator(), gaussian().denoiser(SCH), fake_den,
                                           sample_shape=(2,), batch_size=n, logit_fn=logit_fn,
                                           divergence=switched(index), gan_weight=3e-3)
        critic_loss = dmd.make_critic_loss(generator(), fake_apply, schedule=SCH,
                                           prediction="x0", sample_shape=(2,), batch_size=n,
                                           logit_fn=logit_fn)
        state = init_distill_state(START, {"m": jnp.zeros(2), "A": jnp.eye(2)},
                                   jax.random.key(0), gen_tx=gen_tx, fake_tx=fake_tx,
                                   disc_params={"w": jnp.zeros(18), "b": jnp.zeros(())},
                                   disc_tx=disc_tx)
        step = make_distill_step(gen_loss, critic_loss, gen_tx=gen_tx, fake_tx=fake_tx,
                                 disc_tx=disc_tx, n_critic=2, ema_decay=0.0, jit=False)
        return jax.lax.scan(lambda s, x: (step(s, {"x": x})[0], None), state, real)[0]

    final = run(jnp.array([0, 2]))  # reverse KL (DMD2), JS (f-distill)
    for i in range(2):
        assert_matches_teacher(jax.tree.map(lambda a: a[i], final.gen_params), cov_tol=0.15)


def test_sds_converges_to_the_teacher_mode(x64):
    """SDS on a point x = theta (DreamFusion weighting): zero gradient within 4 standard errors
    at the teacher's mode (its mean), and Adam from the origin reaches it within 0.03."""
    def sds(n):
        render = lambda th, key: jnp.broadcast_to(th["x"], (n, 2))  # noqa: E731
        return score_distillation.make_sds_loss(render, gaussian().denoiser(SCH))

    n = 4096

    def per_sample(th):  # the gradient of each sample's surrogate, one row per sample
        return sds(n)(th, jax.random.key(0), {})[1]["per_example"]

    g = np.asarray(jax.jit(jax.jacfwd(per_sample))({"x": jnp.asarray(MU)})["x"])
    assert np.all(np.abs(g.mean(0)) < 4 * g.std(0, ddof=1) / np.sqrt(n)), g.mean(0)
    loss = sds(512)
    tx = optax.adam(optax.cosine_decay_schedule(5e-2, 400, 0.02))

    @jax.jit
    def run(th):
        def step(carry, i):
            p, o = carry
            grad = jax.grad(lambda q: loss(q, jax.random.key(i), {})[0])(p)
            upd, o = tx.update(grad, o, p)
            return (optax.apply_updates(p, upd), o), None

        return jax.lax.scan(step, (th, tx.init(th)), jnp.arange(400))[0][0]

    np.testing.assert_allclose(run({"x": jnp.zeros(2)})["x"], MU, atol=0.03)


def test_bad_configurations_raise_clear_errors():
    teacher = gaussian().denoiser(SCH)
    common = {"sample_shape": (2,), "batch_size": 8}
    with pytest.raises(ValueError, match="needs a discriminator"):
        dmd.make_generator_loss(generator(), teacher, exact_fake, divergence="js", **common)
    with pytest.raises(ValueError, match="needs a discriminator"):
        dmd.make_generator_loss(generator(), teacher, exact_fake, gan_weight=0.1, **common)
    with pytest.raises(ValueError, match="divergence="):
        dmd.make_generator_loss(generator(), teacher, exact_fake, divergence="tv", **common)
    with pytest.raises(ValueError, match="n_critic"):
        make_distill_step(lambda *a: 0.0, lambda *a: 0.0, gen_tx=optax.sgd(1.0),
                          fake_tx=optax.sgd(1.0), n_critic=0)
    with pytest.raises(ValueError, match="decreasing"):
        dmd.Generator(linear_generator(SCH, GRID), jnp.array([0.1, 1.0]))
