"""A token data set with a known entropy for discrete diffusion: a Markov chain.

* :class:`MarkovChain`: ``p(x) = pi0(x_1) prod_k T(x_k, x_{k+1})``; its entropy is exact,
  ``H = H(pi0) + sum_{k=1}^{L-1} sum_a P(x_k = a) H(T[a])`` nats per sequence, so a model's
  bits per token on held-out chains can be compared with the truth.
  :func:`markov_chain` is the built-in one (vocabulary 8, length 32, a fixed sparse-ish chain).

The digits as tokens and the token-data registry live in :mod:`jaxdist.data`
(``digit_tokens``, ``get_token_dataset``).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

__all__ = ["MarkovChain", "markov_chain"]


@dataclasses.dataclass(frozen=True, eq=False)
class MarkovChain:
    """A stationary-or-not Markov chain over ``vocab_size`` tokens, ``length`` steps."""

    initial: np.ndarray
    transition: np.ndarray
    length: int

    def __post_init__(self):
        init = np.asarray(self.initial, np.float64)
        trans = np.asarray(self.transition, np.float64)
        v = init.size
        if trans.shape != (v, v) or (init < 0).any() or (trans < 0).any() or \
                not np.allclose(trans.sum(1), 1.0) or not math.isclose(init.sum(), 1.0):
            raise ValueError("initial must be a probability vector [V] and transition a row-"
                             "stochastic matrix [V, V].")
        if self.length < 1:
            raise ValueError(f"length={self.length} must be positive.")
        object.__setattr__(self, "initial", init)
        object.__setattr__(self, "transition", trans)

    @property
    def vocab_size(self) -> int:
        return self.initial.size

    def entropy(self) -> float:
        """Exact entropy of one sequence in nats."""
        def h(p):
            p = p[p > 0]
            return float(-(p * np.log(p)).sum())
        row = np.array([h(r) for r in self.transition])
        marginal, total = self.initial, h(self.initial)
        for _ in range(self.length - 1):
            total += float(marginal @ row)
            marginal = marginal @ self.transition
        return total

    def bits_per_token(self) -> float:
        """Exact entropy in bits per token."""
        return self.entropy() / (self.length * math.log(2.0))

    def sample(self, key: Array, n: int) -> Array:
        """``n`` chains ``[n, L]`` int32 (pure, traceable)."""
        return _sample_chain(jnp.log(jnp.asarray(self.initial, jnp.float32)),
                             jnp.log(jnp.asarray(self.transition, jnp.float32)), key, n,
                             self.length)

    def log_prob(self, tokens) -> np.ndarray:
        """Exact ``log p(x)`` of ``tokens [n, L]``."""
        x = np.asarray(tokens)
        return (np.log(self.initial[x[:, 0]])
                + np.log(self.transition[x[:, :-1], x[:, 1:]]).sum(1))


@functools.partial(jax.jit, static_argnums=(3, 4))
def _sample_chain(log_init: Array, log_trans: Array, key: Array, n: int, length: int) -> Array:
    k0, k_rest = jax.random.split(key)
    first = jax.random.categorical(k0, log_init, shape=(n,), mode="highest").astype(jnp.int32)

    def step(x, k):
        nxt = jax.random.categorical(k, log_trans[x], mode="highest").astype(jnp.int32)
        return nxt, nxt

    _, rest = jax.lax.scan(step, first, jax.random.split(k_rest, length - 1))
    return jnp.concatenate([first[:, None], rest.T], axis=1)


def markov_chain(vocab_size: int = 8, length: int = 32, seed: int = 0) -> MarkovChain:
    """The built-in chain: each token moves to one of 3 favoured successors (Dirichlet weights)
    or, with total probability 0.1, anywhere; uniform start."""
    rng = np.random.default_rng(seed)
    trans = np.full((vocab_size, vocab_size), 0.1 / vocab_size)
    for a in range(vocab_size):
        nxt = rng.choice(vocab_size, 3, replace=False)
        trans[a, nxt] += 0.9 * rng.dirichlet(np.ones(3))
    return MarkovChain(np.full(vocab_size, 1.0 / vocab_size), trans, length)
