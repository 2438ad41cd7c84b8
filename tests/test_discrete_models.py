"""The token data sets and a short training run of the discrete transformer."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxdist as jd
from jaxdist.train import fit, init_train_state, make_train_step


def test_markov_chain_entropy_is_exact():
    """The closed-form entropy equals the enumerated one (vocab 3, length 4) and the Monte Carlo
    mean of -log p over 20000 draws of the built-in chain (within 4 standard errors)."""
    small = jd.discrete.MarkovChain([0.2, 0.5, 0.3], [[0.8, 0.1, 0.1], [0.3, 0.3, 0.4],
                                                       [0.0, 0.5, 0.5]], 4)
    table = jd.testing.SequenceDistribution.markov(small.initial, small.transition, 4)
    assert abs(small.entropy() - table.entropy()) < 1e-12
    chain = jd.discrete.markov_chain()
    nll = -chain.log_prob(chain.sample(jax.random.key(0), 20000))
    assert abs(nll.mean() - chain.entropy()) < 4 * nll.std() / np.sqrt(nll.size)


def test_digit_tokens_are_the_17_levels():
    data = jd.data.get_token_dataset("digits-tokens")
    held = data.held_out(297)
    assert held.shape == (297, 64) and held.min() == 0 and held.max() == 16
    train = data.sample(jax.random.key(0), 8)
    assert train.dtype == jnp.int32 and train.shape == (8, 64)
    with pytest.raises(ValueError, match="unknown token data set"):
        jd.data.get_token_dataset("text8")


def test_transformer_training_lowers_the_loss():
    """80 Adam steps of a time-agnostic (RADD) transformer on the Markov chain (length 8): the
    loss falls from 2.15 to 1.82 nats per token (the chain's exact entropy: 1.21); the test
    asks for a 10 % drop."""
    chain = jd.discrete.markov_chain(length=8)
    process = jd.discrete.MaskedProcess(8)
    model = jd.models.DiscreteTransformer(process.n_states, 8, 8, dim=16, heads=2, depth=1,
                                          time_conditioned=False, rngs=nnx.Rngs(0))
    apply_fn, params = jd.models.as_apply_fn(model)
    loss = jd.discrete.make_discrete_loss("radd", apply_fn, process)
    tx = optax.adam(1e-2)
    state = init_train_state(params, tx, jax.random.key(0))
    data = chain.sample(jax.random.key(5), 64 * 80).reshape(80, 64, 8)
    state, history = fit(state, make_train_step(loss, tx), lambda i: {"tokens": data[i]}, 80,
                         log_every=1, progress=False)
    losses = np.array([h["loss"] for h in history])
    assert np.isfinite(losses).all()
    assert losses[-10:].mean() < 0.9 * losses[:5].mean(), (losses[:5], losses[-10:])


def test_transformer_rejects_wrong_shapes():
    model = jd.models.DiscreteTransformer(4, 3, 8, dim=16, heads=2, depth=1, rngs=nnx.Rngs(0))
    assert model(jnp.zeros((2, 8), jnp.int32), jnp.ones(2)).shape == (2, 8, 3)
    with pytest.raises(ValueError, match=r"tokens must be \[batch, 8\]"):
        model(jnp.zeros((2, 5), jnp.int32), jnp.ones(2))
    with pytest.raises(ValueError, match="divisible by heads"):
        jd.models.DiscreteTransformer(4, 3, 8, dim=10, heads=4, rngs=nnx.Rngs(0))


def test_time_input_starts_at_zero_and_is_learnt():
    """The time projection is zero-initialised: at initialisation the output does not depend on
    ``t`` (so the time vector cannot drown the token and position embeddings, the cause of the
    slow time-conditioned runs in docs/discrete.md), and the gradient reaches it."""
    model = jd.models.DiscreteTransformer(9, 8, 8, dim=16, heads=2, depth=1, rngs=nnx.Rngs(0))
    apply_fn, params = jd.models.as_apply_fn(model)
    x = jax.random.randint(jax.random.key(0), (4, 8), 0, 9)
    t0, t1 = jnp.full(4, 0.05), jnp.full(4, 0.95)
    out = jax.jit(lambda t: apply_fn(params, x, t))
    np.testing.assert_array_equal(out(t0), out(t1))
    grads = jax.jit(jax.grad(lambda p: jnp.sum(apply_fn(p, x, t1) ** 2)))(params)
    assert float(jnp.abs(grads["time_proj"]["kernel"]).max()) > 1e-6
