"""Discrete processes and schedules against closed forms and the enumerable oracle (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdist as jd
from jaxdist.discrete import schedules as S
from jaxdist.testing.discrete import _all_sequences

SCHEDULES = [S.LinearSchedule(), S.CosineSchedule(), S.PolynomialSchedule(3.0),
             S.LogLinearSchedule(1e-3)]


@pytest.mark.parametrize("sched", SCHEDULES, ids=lambda s: type(s).__name__)
def test_schedule_derivative_inverse_and_ends(x64, sched):
    t = jnp.linspace(0.05, 0.95, 19)
    fd = (sched.alpha(t + 1e-6) - sched.alpha(t - 1e-6)) / 2e-6
    np.testing.assert_allclose(sched.dalpha(t), fd, rtol=1e-6)
    np.testing.assert_allclose(sched.t_from_alpha(sched.alpha(t)), t, atol=1e-12)
    np.testing.assert_allclose(sched.sigma_bar(t), -jnp.log(sched.alpha(t)), rtol=1e-12)
    assert float(sched.alpha(0.0)) == 1.0 and float(sched.alpha(1.0)) < 2e-3
    assert bool(jnp.all(sched.dalpha(t) < 0))


def test_schedule_names_and_bad_parameters():
    assert jd.discrete.get_schedule("poly3") == S.PolynomialSchedule(3.0)
    assert isinstance(jd.discrete.get_schedule("cosine"), S.CosineSchedule)
    with pytest.raises(ValueError, match="schedule='quadratic' is unknown"):
        jd.discrete.get_schedule("quadratic")
    with pytest.raises(ValueError, match="p must be a positive"):
        S.PolynomialSchedule(-1.0)
    with pytest.raises(ValueError, match="eps must be in"):
        S.LogLinearSchedule(1.5)


def _moved(xt, n_states):
    """``[L, S, b, L]``: ``xt`` with position ``i`` set to state ``y``."""
    length = xt.shape[1]
    return jnp.stack([jnp.stack([xt.at[:, i].set(y) for y in range(n_states)])
                      for i in range(length)])


def _log_marginal(dist, process, x, t):
    """``log p_t`` of any batch shape ``[..., L]`` (one compiled call)."""
    flat = x.reshape(-1, x.shape[-1])
    out = jax.jit(lambda z: dist.log_marginal(process, z, t))(flat)
    return out.reshape(x.shape[:-1])


PROCESSES = [jd.discrete.MaskedProcess(3, schedule="cosine"), jd.discrete.UniformProcess(3)]


@pytest.mark.parametrize("process", PROCESSES, ids=lambda p: type(p).__name__)
def test_forward_marginals_sample_their_law(x64, process):
    x0 = jnp.tile(jnp.array([[0, 1, 2, 1]]), (8000, 1))
    t = jnp.full((8000,), 0.4)
    q = process.marginal_probs(x0, t)
    np.testing.assert_allclose(q.sum(-1), 1.0, rtol=1e-12)
    xt = process.sample_marginal(jax.random.key(0), x0, t)
    freq = np.stack([(np.asarray(xt) == s).mean(0) for s in range(process.n_states)], -1)
    np.testing.assert_allclose(freq, q[0], atol=0.022)          # 4 sigma of 8000 draws


@pytest.mark.parametrize("process", PROCESSES, ids=lambda p: type(p).__name__)
def test_scores_posterior_and_analytic_step_are_exact(x64, process):
    """With the oracle's exact conditionals: the concrete score equals the ratio of exact
    marginals (where a forward rate uses it); the posterior p(x_s^i | x_t) equals Bayes' rule
    summed over all S^L sequences x_s; for the uniform process the analytic step equals it."""
    dist = jd.testing.SequenceDistribution.random(1)
    fn = dist.conditionals(process)
    states = jnp.asarray(_all_sequences(process.n_states, 4))               # [S^L, L]

    @jax.jit
    def compute(key):
        x0 = dist.sample(key, 32)
        t, s = jnp.full((32,), 0.6), jnp.full((32,), 0.35)
        xt = process.sample_marginal(jax.random.fold_in(key, 1), x0, t)
        p0 = jax.nn.softmax(fn(xt, t), -1)
        scores = process.scores(xt, p0, t)
        used = (process.rate_into(xt, t) > 0) | jax.nn.one_hot(xt, process.n_states, dtype=bool)
        logp = dist.log_marginal(process, xt, 0.6)
        moved = _moved(xt, process.n_states).reshape(-1, 4)
        exact = jnp.exp(dist.log_marginal(process, moved, 0.6).reshape(4, -1, 32) - logp)
        exact = jnp.moveaxis(exact, (0, 1), (1, 2))                          # [b, L, S]
        p_s = jnp.exp(dist.log_marginal(process, states, 0.35))             # [S^L]
        trans = process.transition_to(xt, s, t)                              # [b, L, S]
        kernel = jnp.prod(jnp.stack([trans[:, j, :][:, states[:, j]] for j in range(4)]), 0)
        joint = p_s * kernel / jnp.exp(logp)[:, None]                        # p(x_s | x_t)
        brute = jnp.stack([joint @ jax.nn.one_hot(states[:, i], process.n_states,
                                                  dtype=joint.dtype) for i in range(4)], 1)
        analytic = process.analytic_probs(xt, scores, s, t)
        return (jnp.where(used, scores, exact), exact, process.posterior(xt, p0, s, t), brute,
                joint.sum(-1), analytic)

    scores, exact, post, brute, total, analytic = compute(jax.random.key(2))
    np.testing.assert_allclose(scores, exact, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(total, 1.0, rtol=1e-9)
    np.testing.assert_allclose(post, brute, atol=1e-9)
    if not process.absorbing:
        np.testing.assert_allclose(analytic, post, atol=1e-9)


@pytest.mark.parametrize("process", PROCESSES, ids=lambda p: type(p).__name__)
def test_reverse_rates_are_the_time_reversal(x64, process):
    """Kolmogorov: d/dt p_t(x) = sum_y [Q(y -> x) p_t(y) - Q(x -> y) p_t(x)]; the reverse rates
    R(x -> y) = Q(y -> x) p_t(y) / p_t(x) give d/dt log p_t(x) = sum_y [R(x->y) - Q(x->y)]."""
    dist = jd.testing.SequenceDistribution.random(3)
    fn = dist.conditionals(process)
    xt = jnp.array([[0, process.n_states - 1, 2, 1], [1, 1, 0, process.n_states - 1]])

    @jax.jit
    def both_sides(t):
        tb = jnp.full((2,), t)
        rates = process.rates_from_probs(xt, jax.nn.softmax(fn(xt, tb), -1), tb)
        moved = _moved(xt, process.n_states)                                 # [L, S, 2, L]
        into = jax.vmap(jax.vmap(lambda z: process.rate_into(z, tb)))(moved)  # [L, S, 2, L, S]
        out_total = sum(into[i, :, jnp.arange(2), i, xt[:, i]].sum(-1) for i in range(4))
        h = 1e-5
        ends = jax.vmap(lambda u: dist.log_marginal(process, xt, u))(jnp.stack([t - h, t + h]))
        dlogp = (ends[1] - ends[0]) / (2 * h)
        return dlogp, rates.sum((1, 2)) - out_total   # Q(x -> x^{i->y}): the rate into it

    dlogp, rhs = both_sides(jnp.asarray(0.5))
    np.testing.assert_allclose(dlogp, rhs, rtol=1e-6)


def test_bad_tokens_give_clear_errors():
    process = jd.discrete.MaskedProcess(3)
    with pytest.raises(ValueError, match="mask id 3"):
        process.check_clean(jnp.array([[0, 3]]))
    with pytest.raises(ValueError, match=r"lie in \[0, 2\]"):
        process.check_clean(jnp.array([[0, -1]]))
    with pytest.raises(TypeError, match="integer array"):
        process.check_clean(jnp.array([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="vocab_size=1"):
        jd.discrete.UniformProcess(1)
