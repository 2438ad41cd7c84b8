"""Discrete samplers on the enumerable oracle (vocab 3, length 4: 81 sequences), float64.

Grid samplers are checked through their exact output law (the distribution over all noisy
sequences propagated step by step, no Monte Carlo); the first-hitting sampler and the sampling
loop itself by chi-square tests on draws."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxdist as jd
from jaxdist.discrete import Analytic, Ancestral, EntropyBounded, FirstHitting, TauLeaping
from jaxdist.testing.discrete import chi_square_test, exact_sampler_law

DIST = jd.testing.SequenceDistribution.random(0)
MASKED = jd.discrete.MaskedProcess(3, schedule="cosine")
UNIFORM = jd.discrete.UniformProcess(3)            # log-linear schedule (SEDD)
FNS = {MASKED: DIST.conditionals(MASKED), UNIFORM: DIST.conditionals(UNIFORM)}
STEPS = np.array([4, 8, 16, 32])


def _tv(sampler, process, n, **kw):
    law, leftover = exact_sampler_law(DIST, sampler, process, FNS[process],
                                      np.linspace(1.0, 0.0, n + 1), **kw)
    return 0.5 * (np.abs(law - DIST.probs).sum() + leftover), law


@pytest.mark.parametrize("sampler", [Ancestral(), TauLeaping()], ids=lambda s: s.name)
@pytest.mark.parametrize("process", [MASKED, UNIFORM], ids=["masked", "uniform"])
def test_total_variation_falls_at_first_order(x64, sampler, process):
    """Every grid sampler factorises the step over positions: an O(1/n) error, so the exact
    TV falls at rate 1 (measured: masked-cosine ancestral 0.95, tau-leaping 1.05; uniform
    log-linear ancestral 0.95, tau-leaping 0.97 over n = 4..32)."""
    tv = np.array([_tv(sampler, process, int(n))[0] for n in STEPS])
    rate = -np.polyfit(np.log(STEPS), np.log(tv), 1)[0]
    assert 0.85 < rate < 1.15, (tv, rate)
    assert tv[-1] < 0.04


def test_analytic_step_equals_ancestral_and_score_networks_match_logits(x64):
    """With exact scores SEDD's analytic step is the exact per-position posterior; the same
    sampler fed log scores (prediction='log_score') has the same law as fed clean logits."""
    tv_anc, law_anc = _tv(Ancestral(), UNIFORM, 8)
    tv_ana, law_ana = _tv(Analytic(), UNIFORM, 8)
    np.testing.assert_allclose(law_ana, law_anc, atol=1e-12)
    law_logits, _ = exact_sampler_law(DIST, TauLeaping(), UNIFORM, FNS[UNIFORM],
                                      np.linspace(1, 0, 9))
    law_scores, _ = exact_sampler_law(DIST, TauLeaping(), UNIFORM, DIST.log_scores(UNIFORM),
                                      np.linspace(1, 0, 9), prediction="log_score")
    np.testing.assert_allclose(law_scores, law_logits, atol=1e-9)


def test_score_network_final_step_leaves_no_mask():
    """A (bad) score network on the masked process: tau-leaping's final analytic step to t = 0
    drops the mask column, so every draw is a clean sequence."""
    process = jd.discrete.MaskedProcess(3, schedule="loglinear")
    fn = lambda x, t: jnp.full((*x.shape, 4), -3.0)  # noqa: E731
    out = jd.discrete.sample(TauLeaping(), process, fn, jax.random.key(0), (64, 4), n_steps=4,
                             prediction="log_score")
    assert int(out.tokens.max()) < 3


def test_first_hitting_reproduces_the_distribution(x64):
    """Chi-square of 12000 first-hitting draws against p (level 1e-3). Power: against the
    8-step ancestral law (TV 0.10 from p) the test rejects with probability > 0.99, and it
    does reject 12000 actual 4-step ancestral draws."""
    n = 12000
    fhs = jax.jit(lambda k: jd.discrete.sample(FirstHitting(), MASKED, FNS[MASKED], k, (n, 4)))
    out = fhs(jax.random.key(0))
    assert int(out.nfe) == 4 and int(jnp.max(out.tokens)) < 3
    _, dof, p_value = chi_square_test(DIST.histogram(out.tokens), DIST.probs)
    assert p_value > 1e-3, p_value
    critical = stats.chi2.isf(1e-3, dof)
    _, alt = _tv(Ancestral(), MASKED, 8)
    noncentrality = n * np.sum((alt - DIST.probs) ** 2 / DIST.probs)
    assert stats.ncx2.sf(critical, dof, noncentrality) > 0.99
    anc = jax.jit(lambda k: jd.discrete.sample(Ancestral(), MASKED, FNS[MASKED], k, (n, 4),
                                               n_steps=4))(jax.random.key(1))
    _, _, p_bad = chi_square_test(DIST.histogram(anc.tokens), DIST.probs)
    assert p_bad < 1e-6
    _, law4 = _tv(Ancestral(), MASKED, 4)       # ... while it matches its own exact law
    _, _, p_own = chi_square_test(DIST.histogram(anc.tokens), law4)
    assert p_own > 1e-3


def test_entropy_bounded_is_exact_at_gamma_0_and_the_product_of_marginals_at_infinity(x64):
    """EB-sampler, 12000 draws each (chi-square level 1e-3): gamma = 0 unmasks one token per
    call (NFE = L) and, with exact conditionals, reproduces p (an adaptive order is still a
    chain rule); gamma = inf unmasks all in one call, whose law is the product of the
    marginals (and is rejected as p); gamma = log 3 takes at most L / 2 calls (the NFE of a batch
    is its calls until no row has a mask)."""
    n, seqs = 12000, DIST.sequences
    run = jax.jit(lambda sampler, k: jd.discrete.sample(sampler, MASKED, FNS[MASKED], k, (n, 4)),
                  static_argnums=0)
    exact = run(EntropyBounded(gamma=0.0), jax.random.key(5))
    assert int(exact.nfe) == 4
    assert chi_square_test(DIST.histogram(exact.tokens), DIST.probs)[2] > 1e-3
    marginals = [np.bincount(seqs[:, i], DIST.probs, minlength=3) for i in range(4)]
    product = np.prod([marginals[i][seqs[:, i]] for i in range(4)], axis=0)
    one_call = run(EntropyBounded(gamma=1e9), jax.random.key(6))
    assert int(one_call.nfe) == 1
    assert chi_square_test(DIST.histogram(one_call.tokens), product)[2] > 1e-3
    assert chi_square_test(DIST.histogram(one_call.tokens), DIST.probs)[2] < 1e-6
    # gamma = log 3, the largest entropy of one token: every call unmasks at least two
    assert int(run(EntropyBounded(gamma=float(np.log(3.0))), jax.random.key(7)).nfe) <= 2
    with pytest.raises(ValueError, match="gamma must be a number >= 0"):
        EntropyBounded(gamma=-1.0)
    with pytest.raises(ValueError, match="works only for MaskedProcess"):
        jd.discrete.sample(EntropyBounded(), UNIFORM, FNS[UNIFORM], jax.random.key(0), (2, 4))


def test_time_agnostic_cache_skips_calls_without_changing_draws(x64):
    """32 steps, 2 sequences of 4 positions: at most 8 steps change a token, so a time-agnostic
    model is called at most 9 times (the first call and one after each change); the draws are
    identical to the uncached run."""
    run = lambda agnostic: jd.discrete.sample(Ancestral(), MASKED, FNS[MASKED],  # noqa: E731
                                              jax.random.key(3), (2, 4), n_steps=32,
                                              time_agnostic=agnostic)
    plain, cached = run(False), run(True)
    np.testing.assert_array_equal(plain.tokens, cached.tokens)
    assert int(plain.nfe) == 32
    assert 1 <= int(cached.nfe) <= 9, int(cached.nfe)


def test_greedy_and_top_p_filters(x64):
    one = jd.testing.SequenceDistribution(np.array([0.15, 0.55, 0.3]), 3, 1)
    process = jd.discrete.MaskedProcess(3)
    fn = one.conditionals(process)
    greedy = jd.discrete.sample(FirstHitting(greedy=True), process, fn, jax.random.key(0), (50, 1))
    assert bool(jnp.all(greedy.tokens == 1))
    np.testing.assert_allclose(jd.discrete.top_p_filter(jnp.array([[0.15, 0.55, 0.3]]), 0.8),
                               [[0.0, 0.55 / 0.85, 0.3 / 0.85]])
    np.testing.assert_allclose(jd.discrete.top_p_filter(jnp.array([0.5, 0.3, 0.2]), 0.5),
                               [1.0, 0.0, 0.0])


def test_float32_gumbel_truncation_and_the_safe_default():
    """The seed paper's finding: float32 Gumbel noise (23-bit uniforms, JAX's mode='low') never
    exceeds -log(-log(1 - 2^-23)) = 15.94, while the true P(g > 16) = 1.1e-7. Over 2^26 draws
    the exact count above 16 is Poisson(7.5): the safe default gives a count in [1, 20]
    (P = 0.999); float32 can give none: its law (all 2^23 uniforms enumerated; 65536 JAX draws
    all lie on that grid) tops out at 15.94. At the categorical level a token 17 nats below
    the other is drawn at 21 % of its probability in float32, at the right rate for 8 nats."""
    from jaxdist.discrete.categorical import gumbel

    def count(method, chunks=32, chunk=2**21):
        def body(i, acc):
            g = gumbel(jax.random.fold_in(jax.random.key(3), i), (chunk,), method=method)
            return acc[0] + jnp.sum(g > 16.0), jnp.maximum(acc[1], g.max())
        run = jax.jit(lambda: jax.lax.fori_loop(0, chunks, body, (0, jnp.float32(-9))))
        # the suite compiles at -O0 (conftest); this loop of 2^27 draws wants -O2 (0.6 s)
        return run.lower().compile(compiler_options={"xla_backend_optimization_level": 2})()

    safe_count, safe_max = count("safe")   # the float32 draws lie on the grid below (max 15.94)
    assert 1 <= int(safe_count) <= 20 and float(safe_max) > 16.0
    u = (np.arange(2**23, dtype=np.float64) * 2.0**-23).astype(np.float32)
    u[0] = np.finfo(np.float32).tiny
    g = np.sort(-np.log(-np.log(u)))                      # the float32 law, one per uniform
    assert g[-1] < 15.95
    draws = np.asarray(gumbel(jax.random.key(0), (2**16,), method="float32"))
    idx = np.clip(np.searchsorted(g, draws), 1, g.size - 1)
    gap_to_grid = np.minimum(np.abs(g[idx] - draws), np.abs(g[idx - 1] - draws))
    assert np.all(gap_to_grid <= 1e-6 * np.maximum(1, np.abs(draws)))  # JAX draws this law

    def p_rare(gap):                                      # P(g_rare - g_main > gap), float32
        above = g.size - np.searchsorted(g, g + np.float32(gap), side="right")
        return above.mean() / g.size

    exact = lambda gap: 1.0 / (1.0 + np.exp(gap))  # noqa: E731
    assert p_rare(17.0) / exact(17.0) < 0.3
    assert abs(p_rare(8.0) / exact(8.0) - 1.0) < 0.02


def test_bad_input_errors():
    fn = FNS[MASKED]
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="works only for MaskedProcess"):
        jd.discrete.sample(FirstHitting(), UNIFORM, FNS[UNIFORM], key, (2, 4))
    with pytest.raises(ValueError, match=r"fn returned shape \(2, 4, 4\), expected \(2, 4, 3\)"):
        jd.discrete.sample(Ancestral(), MASKED, lambda x, t: jnp.zeros((2, 4, 4)), key, (2, 4),
                           n_steps=2)
    with pytest.raises(ValueError, match="needs clean-token logits"):
        jd.discrete.sample(Ancestral(), MASKED, fn, key, (2, 4), n_steps=2,
                           prediction="log_score")
    with pytest.raises(ValueError, match="strictly decreasing"):
        jd.discrete.sample(Ancestral(), MASKED, fn, key, (2, 4), grid=[1.0, 0.5, 0.6, 0.0])
    with pytest.raises(ValueError, match="exactly one of n_steps"):
        jd.discrete.sample(Ancestral(), MASKED, fn, key, (2, 4))
    with pytest.raises(ValueError, match=r"shape=\(8,\) must be"):
        jd.discrete.sample(Ancestral(), MASKED, fn, key, (8,), n_steps=2)
    with pytest.raises(ValueError, match="top_p must be in"):
        Ancestral(top_p=1.5)
    with pytest.raises(TypeError, match="sampler must be one of"):
        jd.discrete.sample("ancestral", MASKED, fn, key, (2, 4), n_steps=2)
