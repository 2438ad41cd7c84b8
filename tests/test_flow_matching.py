"""Flow matching: exact OT coupling vs brute force, minimisers on Gaussian data, reflow pairs.

Minimiser tests as in test_objectives.py: Gaussian data N(mu, diag(s^2)), s = (0.3, 1.7, 4.0), a
fixed time, the exact optimal velocity plus ``a * x + b``; the MC loss (B = 4096, float64) must
equal the closed-form minimum within 4 SE and the gradient at ``a = b = 0`` be within 4 SE of 0.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdist as jd
from jaxdist.objectives import dsm, ot
from test_objectives import B, gaussian, perturbed_optimum, posterior_x0_variance


def brute_force_cost(c: np.ndarray) -> float:
    n = c.shape[0]
    return min(sum(c[i, p[i]] for i in range(n)) for p in itertools.permutations(range(n)))


@pytest.mark.parametrize("n", [2, 3, 5, 7])
def test_exact_ot_equals_brute_force(x64, n):
    perm_fn = jax.jit(ot.ot_permutation)
    for seed in range(4):
        k1, k2 = jax.random.split(jax.random.key(seed))
        x = jax.random.normal(k1, (n, 3))
        y = 2.0 * jax.random.normal(k2, (n, 3)) + 0.5
        perm = np.asarray(perm_fn(x, y))
        assert sorted(perm.tolist()) == list(range(n)), perm  # a permutation: no repeats
        c = np.asarray(ot.squared_distances(x, y))
        np.testing.assert_allclose(c[np.arange(n), perm].sum(), brute_force_cost(c), rtol=1e-12)


def test_squared_distances_match_direct(x64):
    x, y = jax.random.normal(jax.random.key(0), (2, 6, 2, 3))
    direct = jnp.sum((x[:, None] - y[None]) ** 2, axis=(-1, -2))
    np.testing.assert_allclose(ot.squared_distances(x, y), direct, rtol=1e-12, atol=1e-12)


def test_ot_fm_pairs_noise_by_a_permutation(x64):
    """ot-fm re-orders the batch's own noise (a permutation, no resampling) and lowers the cost."""
    seen = {}

    def apply_fn(params, x, t):
        seen["x_t"], seen["t"] = x, t
        return jnp.zeros_like(x)

    obj = jd.objectives.make_objective("ot-fm", apply_fn)
    x0 = gaussian().sample(jax.random.key(0), 24)
    _, aux = obj.loss(None, jax.random.key(1), {"x": x0})
    assert float(aux["ot_cost"]) < float(aux["independent_cost"])
    t = seen["t"][:, None]
    noise_used = (seen["x_t"] - (1 - t) * x0) / t
    k_eps = jax.random.split(jax.random.key(1), 4)[1]
    noise = jax.random.normal(k_eps, x0.shape, x0.dtype)
    perm = ot.ot_permutation(x0, noise)
    np.testing.assert_allclose(noise_used, noise[perm], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("contrastive", [0.0, 0.05])
def test_fm_minimiser_is_the_marginal_velocity(x64, contrastive):
    """Rectified flow, velocity target. Minimum: ``(1/t^2) mean_d Var[x0 | x_t]`` (the velocity
    error is ``-(1/t)`` times the x0 error). With the contrastive term (Stoica et al. 2025) the
    minimiser is ``(E[u|x_t] - lam E[u~]) / (1 - lam)``, ``E[u~] = -mu``."""
    schedule, t0, lam = jd.schedules.RectifiedFlow(), 0.6, contrastive
    base = perturbed_optimum(schedule, "velocity")
    apply_fn = lambda p, x, t: (base(p, x, t) + lam * jnp.asarray(MU_)) / (1 - lam)  # noqa: E731
    obj = jd.objectives.make_objective("fm", apply_fn, contrastive=contrastive,
                                       time_sampler=dsm.constant_time(t0))
    data = gaussian().sample(jax.random.key(7), B)
    params = {"a": jnp.zeros(3), "b": jnp.zeros(3)}

    def per_example(p):
        aux = obj.loss(p, jax.random.key(8), {"x": data})[1]
        return aux["per_example"], aux

    grads, aux = jax.jit(jax.jacfwd(per_example, has_aux=True))(params)
    for name, g in grads.items():
        g = np.asarray(g)
        assert np.all(np.abs(g.mean(0)) < 4 * g.std(0, ddof=1) / np.sqrt(B)), (name, g.mean(0))
    if contrastive == 0.0:
        per = np.asarray(aux["per_example"])
        expected = posterior_x0_variance(schedule, t0) / t0**2
        assert abs(per.mean() - expected) < 4 * per.std(ddof=1) / np.sqrt(B)
        np.testing.assert_allclose(aux["weights"], 1 / t0**2, rtol=1e-12)


MU_ = gaussian().means[0]


def test_reflow_pairs_follow_the_exact_ode_map(x64):
    """Pairs from the exact single-Gaussian denoiser with DPM-Solver++(2M) on log-SNR grids from
    t = 0.99 converge to the closed-form probability-flow map noise -> data at second order
    (error ratio >= 8 from 64 to 256 steps, error < 2e-3 at 256); feeding them as
    ``batch["noise"]`` makes flow matching use exactly those pairs."""
    schedule = jd.schedules.RectifiedFlow()
    den = gaussian().denoiser(schedule)
    errors = []
    for steps in (64, 256):
        grid = jd.grids.logsnr_uniform(schedule, steps, t_start=0.99)
        noise, data = jd.objectives.reflow_pairs(jd.solvers.DPMSolverPP(order=2), den,
                                                 jax.random.key(0), 48, grid, shape=(3,),
                                                 batch_size=32, dtype=jnp.float64)
        assert noise.shape == data.shape == (48, 3)
        exact = gaussian().ode_solution(schedule, noise * schedule.sigma(grid[0]), grid[0],
                                        grid[-1])
        errors.append(float(jnp.max(jnp.abs(data - exact))))
    assert errors[0] / errors[1] >= 8 and errors[1] < 2e-3, errors
    seen = {}

    def apply_fn(params, x, t):
        seen["x_t"], seen["t"] = x, t
        return jnp.zeros_like(x)

    jd.objectives.make_objective("fm", apply_fn).loss(None, jax.random.key(1),
                                                      {"x": data, "noise": noise})
    t = seen["t"][:, None]
    np.testing.assert_allclose(seen["x_t"], (1 - t) * data + t * noise, rtol=1e-12)


def test_contrastive_term_value(x64):
    """The contrastive term is ``lam * mean_d (v - u~)^2`` with u~ from a rolled batch."""
    x0 = gaussian().sample(jax.random.key(0), 16)
    apply_fn = lambda p, x, t: p * x  # noqa: E731
    plain = jax.jit(jd.objectives.make_objective("fm", apply_fn).loss)
    con = jax.jit(jd.objectives.make_objective("fm", apply_fn, contrastive=0.1).loss)
    l0, _ = plain(0.3, jax.random.key(2), {"x": x0})
    l1, aux = con(0.3, jax.random.key(2), {"x": x0})
    np.testing.assert_allclose(l1, l0 - 0.1 * aux["contrastive"], rtol=1e-12)
    assert float(aux["contrastive"]) > 0


def test_fm_bad_arguments():
    f = lambda p, x, t: x  # noqa: E731
    with pytest.raises(ValueError, match="coupling"):
        jd.objectives.make_fm_loss(f, coupling="sinkhorn")
    with pytest.raises(ValueError, match="contrastive"):
        jd.objectives.make_fm_loss(f, contrastive=1.5)
    with pytest.raises(ValueError, match="same number"):
        ot.ot_permutation(jnp.ones((3, 2)), jnp.ones((4, 2)))
