"""Per-sample noise and Brownian paths."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdist.noise import BrownianPath, normal_like, rademacher_like, standard_normal, uniform_like


def test_normal_like_is_batch_invariant():
    key = jax.random.key(0)
    big = normal_like(key, jnp.zeros((100, 3, 2)))
    small = normal_like(key, jnp.zeros((7, 3, 2)))
    np.testing.assert_array_equal(big[:7], small)
    assert big.shape == (100, 3, 2)
    np.testing.assert_array_equal(uniform_like(key, jnp.zeros((9, 2)))[:4],
                                  uniform_like(key, jnp.zeros((4, 2))))
    r = rademacher_like(key, jnp.zeros((50, 4)))
    assert set(np.unique(np.asarray(r))) == {-1.0, 1.0}


def test_normal_like_statistics():
    """20,000 x 4 draws: mean within 4 standard errors of 0, variance within 4 of 1."""
    z = np.asarray(normal_like(jax.random.key(1), jnp.zeros((20000, 4))))
    n = z.size
    assert abs(z.mean()) < 4 / np.sqrt(n)
    assert abs(z.var() - 1) < 4 * np.sqrt(2 / n)


def test_brownian_increments_are_consistent_across_step_counts(x64):
    """Increments over a coarse grid equal the sums of the increments over a finer grid
    containing it (one seed, any step count), including non-dyadic times."""
    path = BrownianPath(0.0, 2.0, seed=3, depth=8)
    x = jnp.zeros((5, 3))
    inc = jax.jit(path.increment)
    fine = jnp.sort(jax.random.uniform(jax.random.key(0), (17,), minval=0.1, maxval=1.9))
    coarse = fine[::4]
    inc_f = jax.vmap(inc, (None, 0, 0))(x, fine[:-1], fine[1:])
    inc_c = jax.vmap(inc, (None, 0, 0))(x, coarse[:-1], coarse[1:])
    summed = inc_f.reshape(4, 4, 5, 3).sum(1)
    np.testing.assert_allclose(inc_c, summed, atol=1e-12)
    # the normalised increment of a step (t > t_next) and its sign convention
    z = path.sample(None, x, fine[3], fine[1])
    np.testing.assert_allclose(z * jnp.sqrt(fine[3] - fine[1]), path.increment(x, fine[1], fine[3]),
                               atol=1e-12)


def test_brownian_path_statistics(x64):
    """4,000 paths: Var W(t) = t - t0 at dyadic and non-dyadic t, disjoint increments
    uncorrelated, normalised increments standard normal; all within 4 standard errors."""
    path = BrownianPath(0.0, 1.0, seed=11, depth=8)
    x = jnp.zeros((4000, 1))
    n = x.shape[0]
    inc = jax.jit(path.increment)
    for t in (0.5, 0.3, 0.77):
        w = np.asarray(inc(x, 0.0, t))[:, 0]
        assert abs(w.var() / t - 1) < 4 * np.sqrt(2 / n), t
        assert abs(w.mean()) < 4 * np.sqrt(t / n)
    a = np.asarray(path.sample(None, x, 0.4, 0.1))[:, 0]
    b = np.asarray(path.sample(None, x, 0.9, 0.4))[:, 0]
    assert abs(np.corrcoef(a, b)[0, 1]) < 4 / np.sqrt(n)
    assert abs(b.var() - 1) < 4 * np.sqrt(2 / n)
    # batch invariance of the path
    np.testing.assert_array_equal(inc(x[:3], 0.2, 0.6), inc(x, 0.2, 0.6)[:3])


def test_standard_normal_dispatch_and_errors():
    x = jnp.zeros((3, 2))
    np.testing.assert_array_equal(standard_normal(None, jax.random.key(0), x, 1.0, 0.5),
                                  normal_like(jax.random.key(0), x))
    with pytest.raises(ValueError, match="key"):
        standard_normal(None, None, x, 1.0, 0.5)
    with pytest.raises(ValueError, match="t1 > t0"):
        BrownianPath(1.0, 0.0)
    with pytest.raises(ValueError, match="batch"):
        normal_like(jax.random.key(0), jnp.zeros(()))
