"""Consistency training and distillation: curriculum without retracing, schedule formulas, and
exactness on Gaussian data where the consistency function is known in closed form.

For x0 ~ N(mu, diag(s^2)) and the EDM path x = x0 + sigma z, the probability-flow ODE maps
``x`` at ``sigma`` to ``mu + sqrt((s^2 + sigma_min^2) / (s^2 + sigma^2)) (x - mu)`` at
``sigma_min``: that is the exact consistency function ``f*``.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdist as jd
from jaxdist.objectives import consistency as cm
from test_objectives import MU, SCALES, gaussian

SIGMA_MIN, SIGMA_DATA = 0.002, 0.5


def exact_f(x, sigma):
    r = jnp.sqrt((SCALES**2 + SIGMA_MIN**2) / (SCALES**2 + sigma[:, None] ** 2))
    return MU + r * (x - MU)


def exact_raw_network(params, x_in, c_noise):
    """The raw F with ``c_skip x + c_out F = f*`` (``params`` scales a perturbation)."""
    sigma = jnp.exp(4.0 * c_noise)
    x = x_in * jnp.sqrt(sigma**2 + SIGMA_DATA**2)[:, None]
    c_skip = SIGMA_DATA**2 / ((sigma - SIGMA_MIN) ** 2 + SIGMA_DATA**2)
    c_out = (sigma - SIGMA_MIN) * SIGMA_DATA / jnp.sqrt(sigma**2 + SIGMA_DATA**2)
    safe = jnp.where(c_out > 1e-12, c_out, 1.0)[:, None]
    f = jnp.where(c_out[:, None] > 1e-12, (exact_f(x, sigma) - c_skip[:, None] * x) / safe, 0.0)
    return f + params * x_in


def test_ict_curriculum_never_retraces():
    """The jitted iCT loss is traced once while N(k) goes 11 -> 21 -> ... -> 1281."""
    traces = []

    def apply_fn(params, x, t):
        traces.append(1)
        return params * x

    total = 800
    loss = jax.jit(jd.objectives.make_objective("ict", apply_fn, total_steps=total).loss)
    x = jax.random.normal(jax.random.key(0), (16, 2))
    seen = set()
    for step in [0, 99, 100, 200, 300, 400, 500, 600, 700, 799, 800]:
        value, aux = loss(0.5, jax.random.key(step), {"x": x, "step": jnp.int32(step)})
        seen.add(int(aux["num_scales"]))
        assert np.isfinite(float(value))
    assert seen == {11, 21, 41, 81, 161, 321, 641, 1281}
    assert len(traces) == 2  # one trace: the online and the target evaluation


def test_ict_schedule_formulas():
    """N(k) = min(s0 2^floor(k/K'), s1) + 1, K' = floor(K / (log2 floor(s1/s0) + 1)); Karras
    levels; the index distribution is the normalised erf mass of each interval."""
    total, s0, s1 = 10_000, 10, 1280
    k_prime = math.floor(total / (math.log2(math.floor(s1 / s0)) + 1))
    steps = np.arange(0, total + 1, 37)
    got = np.asarray(jax.vmap(lambda k: cm.ict_num_scales(k, total, s0, s1))(steps))
    np.testing.assert_array_equal(got, [min(s0 * 2 ** (k // k_prime), s1) + 1 for k in steps])
    n = 41
    sig = np.asarray(cm.karras_sigmas(jnp.int32(n), s1 + 1), dtype=np.float64)
    i = np.arange(n)
    ref = (SIGMA_MIN ** (1 / 7) + i / (n - 1) * (80.0 ** (1 / 7) - SIGMA_MIN ** (1 / 7))) ** 7
    np.testing.assert_allclose(sig[:n], ref, rtol=1e-5)
    assert np.all(sig[n:] == sig[n - 1])
    p = np.exp(np.asarray(cm.ict_index_logits(jnp.asarray(sig), jnp.int32(n)), np.float64))
    from scipy.special import erf  # noqa: PLC0415  (scipy ships with jax)

    cdf = erf((np.log(ref) + 1.1) / (math.sqrt(2) * 2.0))
    np.testing.assert_allclose(p[: n - 1] / p.sum(), np.diff(cdf) / np.diff(cdf).sum(), rtol=1e-4)
    assert np.all(p[n - 1:] == 0)


def test_pseudo_huber_limits(x64):
    a = jnp.zeros((1, 4))
    small, large = jnp.full((1, 4), 1e-6), jnp.full((1, 4), 1e3)
    c = 0.00054 * 2.0
    np.testing.assert_allclose(cm.pseudo_huber(small, a), 4e-12 / (2 * c), rtol=1e-4)
    np.testing.assert_allclose(cm.pseudo_huber(large, a), 2e3 - c, rtol=1e-9)


def test_boundary_condition_is_exact(x64):
    x = jax.random.normal(jax.random.key(0), (5, 3))
    f = cm.consistency_fn(lambda p, y, c: 100.0 + y, None, x, SIGMA_MIN, sigma_min=SIGMA_MIN)
    np.testing.assert_array_equal(f, x)


def test_ict_loss_recomputed_from_its_formula(x64):
    """Per-example iCT loss = ``1/(s_{i+1} - s_i) * pseudo_huber(f(x0 + s_{i+1} z, s_{i+1}),
    f_-(x0 + s_i z, s_i))`` with ``s_i`` the grid predecessor; ``ema_params`` changes only the
    target; the gradient flows through the online branch only."""
    step, total = 300, 800
    obj = jd.objectives.make_objective("ict", exact_raw_network, total_steps=total)
    x0 = gaussian().sample(jax.random.key(0), 64)
    batch = {"x": x0, "step": jnp.int32(step)}
    loss = jax.jit(obj.loss)
    _, aux = loss(0.02, jax.random.key(1), batch)
    n = int(aux["num_scales"])
    assert n == 81
    sig = cm.karras_sigmas(jnp.int32(n), 1281).astype(jnp.float64)
    s_hi = aux["sigma"]
    idx = jnp.argmin(jnp.abs(sig[:n][None, :] - s_hi[:, None]), axis=1)  # nearest level
    np.testing.assert_allclose(sig[idx], s_hi, rtol=1e-12)
    s_lo = sig[idx - 1]
    z = jax.random.normal(jax.random.split(jax.random.key(1))[1], x0.shape, x0.dtype)
    f = lambda p, x, s: cm.consistency_fn(exact_raw_network, p, x, s, sigma_min=SIGMA_MIN)  # noqa
    manual = cm.pseudo_huber(f(0.02, x0 + s_hi[:, None] * z, s_hi),
                             f(0.02, x0 + s_lo[:, None] * z, s_lo)) / (s_hi - s_lo)
    np.testing.assert_allclose(aux["per_example"], manual, rtol=1e-9)
    _, aux_ema = loss(0.02, jax.random.key(1), {**batch, "ema_params": 0.0})
    manual_ema = cm.pseudo_huber(f(0.02, x0 + s_hi[:, None] * z, s_hi),
                                 f(0.0, x0 + s_lo[:, None] * z, s_lo)) / (s_hi - s_lo)
    np.testing.assert_allclose(aux_ema["per_example"], manual_ema, rtol=1e-9)
    grad = jax.jit(jax.grad(lambda p: obj.loss(p, jax.random.key(1), batch)[0]))(0.02)
    online = jax.jit(jax.grad(lambda p: jnp.mean(cm.pseudo_huber(
        f(p, x0 + s_hi[:, None] * z, s_hi), f(0.02, x0 + s_lo[:, None] * z, s_lo))
        / (s_hi - s_lo))))(0.02)
    np.testing.assert_allclose(grad, online, rtol=1e-9)


@pytest.mark.parametrize("teacher_schedule", [jd.schedules.EDM(), jd.schedules.VPLinear()],
                         ids=["edm-teacher", "vp-teacher"])
def test_cd_with_exact_teacher_vanishes_as_teacher_steps_refine(x64, teacher_schedule):
    """CD at the exact f* with the exact (any-schedule) teacher: the loss is only the teacher's
    ODE error, which DDIM reduces at first order per step: squared error ratio >= 50 from 1 to
    16 substeps (about 16^2 = 256 expected)."""
    teacher = gaussian().denoiser(teacher_schedule)
    x0 = gaussian().sample(jax.random.key(0), 256)
    values = []
    for sub in (1, 16):
        obj = jd.objectives.make_objective("cd", exact_raw_network, teacher=teacher,
                                           solver=jd.solvers.DDIM(), teacher_substeps=sub)
        values.append(float(jax.jit(obj.loss)(0.0, jax.random.key(1), {"x": x0})[0]))
    assert values[0] / values[1] >= 50, values


def test_cd_teacher_solver_is_pluggable(x64):
    """Any jaxdist solver samples the teacher: a second-order singlestep DPM-Solver++ teacher
    (4 substeps) leaves a CD loss at f* at least 5x below DDIM's (measured: 4.7e-6 vs 6.7e-5)."""
    teacher = gaussian().denoiser(jd.schedules.VPLinear())
    x0 = gaussian().sample(jax.random.key(0), 256)
    values = []
    for solver in (jd.solvers.DDIM(), jd.solvers.DPMSolverPP(order=2, method="singlestep")):
        obj = jd.objectives.make_objective("cd", exact_raw_network, teacher=teacher,
                                           solver=solver, teacher_substeps=4)
        values.append(float(jax.jit(obj.loss)(0.0, jax.random.key(1), {"x": x0})[0]))
    assert values[1] < values[0] / 5, values


def test_consistency_sample_matches_exact_distribution(x64):
    """With f*, one step gives N(mu, r(80)^2 80^2) and two steps (80, 0.8) give
    N(mu, r(0.8)^2 (v1 + 0.8^2 - sigma_min^2)); mean and variance within 4 SE (n = 20000)."""
    n, s2 = 20_000, SCALES**2
    r2 = lambda s: (s2 + SIGMA_MIN**2) / (s2 + s**2)  # noqa: E731
    v1 = r2(80.0) * 80.0**2
    v2 = r2(0.8) * (v1 + 0.8**2 - SIGMA_MIN**2)
    for steps, var in ((1, v1), ([80.0, 0.8], v2)):
        x = cm.consistency_sample(exact_raw_network, 0.0, jax.random.key(3), (n, 3), steps)
        x = np.asarray(x)
        assert np.all(np.abs(x.mean(0) - MU) < 4 * np.sqrt(var / n)), (steps, x.mean(0))
        assert np.all(np.abs(x.var(0) - var) < 4 * var * np.sqrt(2 / (n - 1))), (steps, x.var(0))


def test_consistency_denoiser_runs_in_ode_solvers(x64):
    """The consistency model's denoiser is the exact x0 map at sigma_min ~ 0 for f*: DDIM from
    sigma = 80 in one step equals the one-step consistency sample."""
    obj = jd.objectives.make_objective("ict", exact_raw_network)
    den = obj.denoiser(exact_raw_network, 0.0)
    x_T = 80.0 * jax.random.normal(jax.random.key(0), (8, 3))
    out = jd.sample(jd.solvers.DDIM(), den, x_T, jnp.array([80.0, SIGMA_MIN])).x
    direct = cm.consistency_fn(exact_raw_network, 0.0, x_T, 80.0, sigma_min=SIGMA_MIN)
    a = SIGMA_MIN / 80.0  # DDIM: x_next = x0 + sigma_next eps = x0 + (s_min / 80)(x_T - x0)
    np.testing.assert_allclose(out, direct + a * (x_T - direct), rtol=1e-10)


def test_bad_arguments():
    f = lambda p, x, t: x  # noqa: E731
    with pytest.raises(ValueError, match="teacher"):
        jd.objectives.make_objective("cd", f)
    with pytest.raises(ValueError, match="EDM"):
        jd.objectives.make_objective("ict", f, schedule=jd.schedules.VPLinear())
    with pytest.raises(ValueError, match="metric"):
        jd.objectives.make_objective("ict", f, metric="lpips")
