"""Few-step objectives (sCM, MeanFlow, shortcut models) against the closed-form Gaussian oracles
of ``jaxdist.testing.fewstep``.

Data ``x0 ~ N(MU, diag(SCALES^2))`` (2-D). Each loss is checked (a) at the exact solution
(the oracle plus a perturbation ``a * x + b``, zero at the optimum): every gradient component's
batch mean is within 4 standard errors of zero, and at a perturbation along ``b`` the gradient
points back (``<grad, b> > 0`` by more than 4 standard errors); (c) a small model whose family
contains the exact solution (affine in ``x``, polynomial in the times), trained with Adam,
reproduces the exact map within a stated tolerance; (d) the ``jax.jvp`` tangent equals central
finite differences along the trajectory.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxdist as jd
from fewstep_helpers import (WIDE_EDM, assert_restoring, assert_zero_mean, data, flow,
                             gaussian, per_example_grads, zero_params)
from jaxdist.objectives import meanflow, scm, shortcut
from jaxdist.objectives.trigflow import (Rescheduled, TrigFlow, denoiser_velocity, from_trigflow,
                                         to_trigflow)

SD = 1.0  # sigma_data of the sCM tests
RF = jd.schedules.RectifiedFlow()


# ----------------------------------------------------------------------------- oracles
def test_flow_map_velocity_and_denoiser_agree(x64):
    """In VP, EDM, rectified-flow and TrigFlow time: Phi composes (Phi_{t->r} o Phi_{s->t} =
    Phi_{s->r}); its r-derivative at r = t is the velocity, which is also the exact denoiser's
    alpha' x0 + sigma' eps."""
    schedules = [jd.schedules.VPLinear(), jd.schedules.EDM(), RF, TrigFlow(SD)]

    @jax.jit
    def compute(x):
        out = []
        for schedule in schedules:
            gf, den = flow(schedule), gaussian().denoiser(schedule)
            lo = schedule.t_min + 0.05 * (schedule.t_max - schedule.t_min)
            hi = 0.8 * schedule.t_max
            s, t, r = hi, 0.5 * (lo + hi), lo
            d_phi = jax.jvp(lambda rr: gf.flow_map(x, t, rr), (jnp.asarray(t),),
                            (jnp.ones(()),))[1]
            out.append((gf.flow_map(gf.flow_map(x, s, t), t, r), gf.flow_map(x, s, r), d_phi,
                        gf.velocity(x, t), denoiser_velocity(den, schedule, x, jnp.full((64,), t))))
        return out

    for two, one, d_phi, vel, den_vel in compute(jax.random.normal(jax.random.key(0), (64, 2)) * 2):
        np.testing.assert_allclose(two, one, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(vel, d_phi, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(den_vel, vel, rtol=1e-10, atol=1e-12)


def test_mean_velocity_identity_and_shortcut_fixed_point(x64):
    """MeanFlow's identity u = v - (t - r) du/dt holds for the exact u; the shortcut fixed point
    with M base steps is self-consistent (s(2d) = mean of two d-steps) and tends to the exact
    flow at first order in 1/M."""
    gf = flow(RF)
    m, d = 16, 0.25

    @jax.jit
    def compute(z):
        t, r = jnp.full((32,), 0.8), jnp.full((32,), 0.3)
        u, du = jax.jvp(lambda zz, rr, tt: gf.mean_velocity(zz, rr, tt), (z, r, t),
                        (gf.velocity(z, t), jnp.zeros(32), jnp.ones(32)))
        s1 = gf.shortcut(z, 0.75, d, base_steps=m)
        s2 = gf.shortcut(z - d * s1, 0.5, d, base_steps=m)
        exact = gf.shortcut(z, 0.75, 0.5)
        errs = [jnp.abs(gf.shortcut(z, 0.75, 0.5, base_steps=mm) - exact).max() for mm in (16, 64)]
        return (u, gf.velocity(z, t) - 0.5 * du, gf.mean_velocity(z, t, t), gf.velocity(z, t),
                gf.shortcut(z, 0.75, 2 * d, base_steps=m), 0.5 * (s1 + s2), errs)

    u, u_id, u_tt, v, s_2d, s_two, errs = compute(jax.random.normal(jax.random.key(1), (32, 2)))
    np.testing.assert_allclose(u, u_id, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(u_tt, v, rtol=1e-12)
    np.testing.assert_allclose(s_2d, s_two, rtol=1e-10, atol=1e-12)
    assert 3.0 < float(errs[0] / errs[1]) < 5.0, errs  # first order: ratio 4


def test_trigflow_conversions_and_rescheduled_denoiser(x64):
    """to_trigflow / from_trigflow are inverse; a denoiser rescheduled to TrigFlow (or to any
    schedule) predicts the target schedule's exact pair; the sCM oracle F* reproduces the flow
    map through f = cos t x - sin t sigma_d F*, with f(x, t) -> x as t -> 0."""
    trig = TrigFlow(SD)
    gf = flow(trig)

    @jax.jit
    def compute(x):
        out = []
        for sch in (jd.schedules.VPLinear(), jd.schedules.EDM(), RF):
            t = jnp.linspace(0.1, 0.9, 16) * sch.t_max
            out.append((from_trigflow(sch, *to_trigflow(sch, x, t, SD), SD), (x, t)))
            for target in (trig, RF):
                tt = jnp.linspace(0.2, 0.9, 16) * target.t_max
                out.append((Rescheduled(gaussian().denoiser(sch), target)(x, tt),
                            gaussian().denoiser(target)(x, tt)))
        t = jnp.linspace(0.05, 1.5, 16)
        f = jnp.cos(t)[:, None] * x - jnp.sin(t)[:, None] * SD * gf.scm_network(x, t)
        out.append(((f,), (gf.consistency(x, t),)))
        f0 = jnp.cos(1e-6) * x - jnp.sin(1e-6) * SD * gf.scm_network(x, 1e-6)
        return out, f0

    x = jax.random.normal(jax.random.key(2), (16, 2))
    pairs, f0 = compute(x)
    for got, want in pairs:
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(f0, x, atol=1e-5)


# ----------------------------------------------------------------------------- (a) exactness
def scm_exact(p, xs, t):
    return flow(TrigFlow(SD)).scm_network(xs * SD, t) + p["a"] * xs + p["b"]


def meanflow_exact(p, z, t, h):
    return flow(RF).mean_velocity(z, t - h, t) + p["a"] * z + p["b"]


def shortcut_exact(p, x, t, d):
    return flow(RF).shortcut(x, t, d, base_steps=8) + p["a"] * x + p["b"]


def exact_losses():
    teacher = gaussian().denoiser(WIDE_EDM)
    common = {"sigma_data": SD, "warmup_steps": 0, "adaptive_weight": False}
    return {
        "scm-train": scm.make_scm_loss(scm_exact, **common),
        "scm-distill": scm.make_scm_loss(scm_exact, teacher=teacher, **common),
        "meanflow-train": meanflow.make_meanflow_loss(meanflow_exact, flow_ratio=0.5),
        "meanflow-distill": meanflow.make_meanflow_loss(meanflow_exact, teacher=teacher,
                                                        flow_ratio=0.5),
        "shortcut-train": shortcut.make_shortcut_loss(shortcut_exact, base_steps=8,
                                                      bootstrap_ratio=0.5),
        "shortcut-distill": shortcut.make_shortcut_loss(shortcut_exact, teacher=teacher,
                                                        base_steps=8, bootstrap_ratio=0.5),
    }


@pytest.mark.parametrize("name", list(exact_losses()))
def test_gradient_vanishes_at_the_exact_solution(x64, name):
    """(a) The gradient at the oracle is zero within 4 standard errors (sCM, MeanFlow with the
    adaptive weight, shortcut models; training and distillation); a perturbation along b is
    pushed back. With the exact teacher, sCD's tangent and MeanFlow's residual vanish
    pointwise (loss 0 to round-off), as do the shortcut bootstrap rows."""
    loss = exact_losses()[name]
    grad_fn = per_example_grads(loss, {"x": data()})
    grads, aux = grad_fn(zero_params())
    assert_zero_mean(grads)
    if name in ("scm-distill", "meanflow-distill"):
        assert float(jnp.max(aux["per_example"])) < 1e-18
    if name.startswith("shortcut"):
        assert float(aux["bootstrap_loss"]) < 1e-20
    assert_restoring(grad_fn, {"a": jnp.zeros(2), "b": jnp.ones(2)}, eps=0.3)


# ----------------------------------------------------------------------------- (d) JVP vs FD
def tiny_net(n_times):
    k1, k2 = jax.random.split(jax.random.key(3))
    p = {"w1": jax.random.normal(k1, (2 + n_times, 16)), "b1": jnp.zeros(16),
         "w2": jax.random.normal(k2, (16, 2)) / 4.0}

    def apply_fn(p, x, *times):
        h = jnp.tanh(jnp.concatenate([x, *[t[:, None] for t in times]], axis=1) @ p["w1"]
                     + p["b1"])
        return h @ p["w2"]

    return p, apply_fn


@pytest.mark.parametrize("which", ["scm-train", "meanflow-train"])
def test_jvp_tangent_equals_finite_differences(x64, which):
    """(d) The loss built on jax.jvp equals the one built on central differences (step 1e-5)
    along the trajectory, per example, for a nonlinear network: relative 1e-6."""
    teacher = gaussian().denoiser(WIDE_EDM) if which.endswith("distill") else None
    if which.startswith("scm"):
        p, net = tiny_net(1)
        make = lambda fd: scm.make_scm_loss(net, sigma_data=SD, teacher=teacher,  # noqa: E731
                                            warmup_steps=0, adaptive_weight=False,
                                            finite_difference=fd)
    else:
        p, net = tiny_net(2)
        make = lambda fd: meanflow.make_meanflow_loss(net, teacher=teacher,  # noqa: E731
                                                      finite_difference=fd)
    batch = {"x": data(n=256)}
    exact = make(None)(p, jax.random.key(4), batch)[1]["per_example"]
    fd = make(1e-5)(p, jax.random.key(4), batch)[1]["per_example"]
    np.testing.assert_allclose(fd, exact, rtol=1e-6)


# ----------------------------------------------------------------------------- (c) training
def poly_features(times, degree):
    """Products of Legendre polynomials ``prod_i P_{k_i}(2 t_i - 1)`` with ``sum k_i <= degree``
    of ``[B]`` times in ``[0, 1]`` -> ``[B, K]`` (well conditioned for Adam)."""
    import itertools

    def legendre(u, k):
        p0, p1 = jnp.ones_like(u), u
        for n in range(1, k):
            p0, p1 = p1, ((2 * n + 1) * u * p1 - n * p0) / (n + 1)
        return p0 if k == 0 else p1

    cols = []
    for ks in itertools.product(range(degree + 1), repeat=len(times)):
        if sum(ks) <= degree:
            col = jnp.ones_like(times[0])
            for t, k in zip(times, ks):
                col = col * legendre(2.0 * t - 1.0, k)
            cols.append(col)
    return jnp.stack(cols, axis=1)


def perturbed_model(exact, n_times, degree=3, scale=None, size=0.3, seed=0):
    """``out = exact(x, *times) + A(times) * x + B(times)`` with ``A, B`` linear in
    :func:`poly_features` of the times (divided by ``scale``), initialised at random (``size``):
    a family that contains the exact map (``A = B = 0``) and starts far from it."""
    scale = scale or (1.0,) * n_times

    def apply_fn(p, x, *times):
        phi = poly_features([t / s for t, s in zip(times, scale)], degree)
        return exact(x, *times) + (phi @ p["A"]) * x + phi @ p["B"]

    k = poly_features([jnp.zeros(1)] * n_times, degree).shape[1]
    ka, kb = jax.random.split(jax.random.key(seed))
    return apply_fn, {"A": size * jax.random.normal(ka, (k, 2)),
                      "B": size * jax.random.normal(kb, (k, 2))}


def fit(loss, params, steps, lr, batch_size=1024):
    """Adam with a cosine-decayed learning rate on fresh Gaussian batches."""
    tx = optax.adam(optax.cosine_decay_schedule(lr, steps, 0.05))

    @jax.jit
    def run(params):
        def step(carry, i):
            p, o = carry
            k = jax.random.key(i)
            batch = {"x": gaussian().sample(jax.random.fold_in(k, 1), batch_size), "step": i}
            g = jax.grad(lambda q: loss(q, k, batch)[0])(p)
            upd, o = tx.update(g, o, p)
            return (optax.apply_updates(p, upd), o), None

        return jax.lax.scan(step, (params, tx.init(params)), jnp.arange(steps))[0][0]

    return run(params)


def mean_abs(a, b) -> float:
    return float(jnp.abs(a - b).mean())


def test_scm_training_reproduces_the_exact_consistency_function():
    """(c) sCT (default options: adaptive weight, normalised tangent) from a model 0.4 away from
    the exact TrigFlow network (mean abs of f) recovers it: f(x, t) on a t-grid within 0.02 and
    the one- and two-step maps within 0.03 of the exact ones (measured: 0.004, 0.008, 0.010)."""
    gf = flow(TrigFlow(SD))
    net, model = perturbed_model(lambda xs, t: gf.scm_network(xs * SD, t), 1, scale=(1.6,))
    x = SD * jax.random.normal(jax.random.key(5), (2000, 2))
    t = jnp.linspace(0.1, 1.5, 2000)
    before = mean_abs(scm.scm_consistency(net, model, x, t, sigma_data=SD), gf.consistency(x, t))
    params = fit(scm.make_scm_loss(net, sigma_data=SD, warmup_steps=0),
                 scm.scm_init_params(model), steps=1000, lr=2e-2)["model"]
    after = mean_abs(scm.scm_consistency(net, params, x, t, sigma_data=SD), gf.consistency(x, t))
    assert before > 0.2 and after < 0.02, (before, after)
    for steps in (1, 2):
        key = jax.random.key(6)
        got = scm.scm_sample(net, params, key, (2000, 2), steps, sigma_data=SD)
        want = scm.scm_sample(lambda p, xs, tt: gf.scm_network(xs * SD, tt), None, key,
                              (2000, 2), steps, sigma_data=SD)
        assert mean_abs(got, want) < 0.03, steps


def test_meanflow_training_reproduces_the_exact_mean_velocity():
    """(c) MeanFlow (adaptive weight; uniform times, so that the one-step corner r = 0, t = 1 is
    trained; half the batch r != t) from a model 0.3 away from the exact average velocity
    recovers it: u on random (r, t) within 0.03 and the one- and two-step maps within 0.04 of
    the exact ones (mean abs; measured 0.017, 0.028, 0.022)."""
    gf = flow(RF)
    net, params = perturbed_model(lambda z, t, h: gf.mean_velocity(z, t - h, t), 2)
    z = jax.random.normal(jax.random.key(7), (2000, 2))
    t = jax.random.uniform(jax.random.key(8), (2000,))
    r = t * jax.random.uniform(jax.random.key(9), (2000,))
    before = mean_abs(meanflow.mean_velocity(net, params, z, r, t), gf.mean_velocity(z, r, t))
    params = fit(meanflow.make_meanflow_loss(net, time_sampler="uniform", flow_ratio=0.5), params,
                 steps=1000, lr=2e-2)
    after = mean_abs(meanflow.mean_velocity(net, params, z, r, t), gf.mean_velocity(z, r, t))
    assert before > 0.2 and after < 0.03, (before, after)
    for steps in (1, 2):
        key = jax.random.key(10)
        got = meanflow.meanflow_sample(net, params, key, (2000, 2), steps)
        want = gf.flow_map(jax.random.normal(key, (2000, 2)), 1.0, 0.0)
        assert mean_abs(got, want) < 0.04, steps


def test_shortcut_training_reproduces_the_exact_shortcut_map():
    """(c) A shortcut model (M = 8, 1/4 of the batch on self-consistency) far from the exact
    fixed point recovers it: its 1-, 2- and 4-step maps within 0.04 (mean abs; measured 0.027,
    0.021, 0.016) of the fixed point's (8 Euler steps of the exact flow), which is within 0.15
    of the exact flow (measured 0.123: first order in 1/M)."""
    gf = flow(RF)
    net, params = perturbed_model(lambda x, t, d: gf.shortcut(x, t, d, base_steps=8), 2)
    params = fit(shortcut.make_shortcut_loss(net, base_steps=8), params, steps=600, lr=2e-2)
    e = jax.random.normal(jax.random.key(11), (2000, 2))
    for steps in (1, 2, 4):
        got = shortcut.shortcut_sample(net, params, jax.random.key(11), (2000, 2), steps,
                                       base_steps=8)
        want, d = e, 1.0 / steps  # `steps` steps of the exact fixed point
        for k in range(steps):
            want = want - d * gf.shortcut(want, 1.0 - k * d, d, base_steps=8)
        assert mean_abs(got, want) < 0.04, steps
    fixed = e - gf.shortcut(e, 1.0, 1.0, base_steps=8)
    assert mean_abs(fixed, gf.flow_map(e, 1.0, 0.0)) < 0.15
