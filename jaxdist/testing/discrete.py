"""An enumerable distribution over short token sequences, with exact clean-token conditionals.

:class:`SequenceDistribution` holds ``p(x)`` for all ``V^L`` sequences (e.g. vocab 3, length 4:
81 sequences). For any tokenwise forward process, ``conditionals(process)`` is the exact network
``fn(x_t, t) -> log p(x0^i | x_t)`` by enumeration,

    p(x0 | x_t) ~ p(x0) prod_i q_t(x_t^i | x0^i),  p(x0^i = v | x_t) = sum_{x0^i = v} p(x0 | x_t)

(for the masked process this is the clean conditional given the unmasked tokens, independent of
``t``), and ``log_marginal(process, x_t, t)`` is the exact ``log p_t(x_t)``, hence the exact
concrete score. Histogram helpers give the total-variation distance and a chi-square test of
samples against ``p``.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

__all__ = ["SequenceDistribution", "chi_square_test", "exact_sampler_law"]


@dataclasses.dataclass(frozen=True, eq=False)
class SequenceDistribution:
    """``probs [V^L]`` over all sequences of ``length`` tokens in ``[0, vocab_size)``, in
    lexicographic order (``sequences[k]`` is the base-``V`` expansion of ``k``)."""

    probs: np.ndarray
    vocab_size: int
    length: int

    def __post_init__(self):
        p = np.asarray(self.probs, dtype=np.float64)
        if p.shape != (self.vocab_size ** self.length,) or (p < 0).any() or \
                not math.isclose(p.sum(), 1.0, rel_tol=1e-9):
            raise ValueError(f"probs must be {self.vocab_size ** self.length} non-negative numbers "
                             "summing to 1 (one per sequence).")
        object.__setattr__(self, "probs", p)

    @classmethod
    def random(cls, seed: int = 0, vocab_size: int = 3, length: int = 4,
               concentration: float = 0.5) -> "SequenceDistribution":
        """A Dirichlet(``concentration``) draw over the ``V^L`` sequences (all positive)."""
        rng = np.random.default_rng(seed)
        p = rng.dirichlet(np.full(vocab_size ** length, concentration))
        p = np.maximum(p, 1e-6)
        return cls(p / p.sum(), vocab_size, length)

    @classmethod
    def markov(cls, initial, transition, length: int) -> "SequenceDistribution":
        """A Markov chain: ``p(x) = initial[x_1] prod_k transition[x_k, x_{k+1}]``."""
        init, trans = np.asarray(initial, float), np.asarray(transition, float)
        seqs = _all_sequences(init.size, length)
        p = init[seqs[:, 0]] * np.prod(trans[seqs[:, :-1], seqs[:, 1:]], axis=1)
        return cls(p / p.sum(), init.size, length)

    @property
    def sequences(self) -> np.ndarray:
        """All sequences ``[V^L, L]`` int32."""
        return _all_sequences(self.vocab_size, self.length)

    def entropy(self) -> float:
        """``H(p)`` in nats."""
        p = self.probs[self.probs > 0]
        return float(-(p * np.log(p)).sum())

    def index(self, tokens) -> np.ndarray:
        """Lexicographic index of each sequence of ``tokens [n, L]``."""
        tokens = np.asarray(tokens)
        return (tokens * self.vocab_size ** np.arange(self.length - 1, -1, -1)).sum(-1)

    def log_prob(self, tokens) -> np.ndarray:
        """``log p(x)`` for ``tokens [n, L]``."""
        return np.log(self.probs[self.index(tokens)])

    def sample(self, key: Array, n: int) -> Array:
        """``n`` exact draws ``[n, L]`` int32."""
        logits = jnp.log(jnp.asarray(self.probs))
        idx = jax.random.categorical(key, logits, shape=(n,), mode="highest" if logits.dtype
                                     == jnp.float32 else None)
        return jnp.asarray(self.sequences)[idx]

    def histogram(self, tokens) -> np.ndarray:
        """Counts of each of the ``V^L`` sequences in ``tokens [n, L]``."""
        return np.bincount(self.index(tokens), minlength=self.probs.size)

    def tv(self, tokens) -> float:
        """Total variation between the empirical distribution of ``tokens`` and ``p``."""
        counts = self.histogram(tokens)
        return 0.5 * float(np.abs(counts / counts.sum() - self.probs).sum())

    def tv_to(self, probs) -> float:
        """Total variation between ``probs [V^L]`` and ``p``."""
        return 0.5 * float(np.abs(np.asarray(probs) - self.probs).sum())

    def _log_likelihoods(self, process, x_t: Array, t) -> Array:
        """``log q_t(x_t | x0)`` for every clean sequence: ``[b, V^L]``."""
        t = jnp.broadcast_to(jnp.asarray(t), x_t.shape[:1])
        tokens = jnp.broadcast_to(jnp.arange(self.vocab_size), (x_t.shape[0], self.vocab_size))
        q = process.marginal_probs(tokens, t)                            # [b, V, S]: q_t(y | a)
        with np.errstate(divide="ignore"):
            table = jnp.log(q)
        here = jnp.take_along_axis(table[:, None], x_t[:, :, None, None], axis=-1)[..., 0]
        seqs = self.sequences                                            # here: [b, L, V]
        return sum(here[:, i, seqs[:, i]] for i in range(self.length))   # [b, N]

    def log_marginal(self, process, x_t: Array, t) -> Array:
        """Exact ``log p_t(x_t) = log sum_x0 p(x0) q_t(x_t | x0)`` for ``x_t [b, L]``: ``[b]``."""
        logp = jnp.log(jnp.asarray(self.probs))
        return jax.nn.logsumexp(logp + self._log_likelihoods(process, x_t, t), axis=-1)

    def conditionals(self, process):
        """The exact network ``fn(x_t [b, L], t [b]) -> log p(x0^i | x_t) [b, L, V]``."""
        seqs, log_probs = self.sequences, np.log(self.probs)

        def fn(x_t: Array, t: Array) -> Array:
            logp = jnp.asarray(log_probs)                    # float64 under x64, at trace time
            onehot = jax.nn.one_hot(seqs, self.vocab_size, dtype=logp.dtype)  # [N, L, V]
            loglik = self._log_likelihoods(process, x_t, t)
            impossible = jnp.all(jnp.isneginf(loglik), axis=-1, keepdims=True)  # p_t(x_t) = 0:
            post = jax.nn.softmax(logp + jnp.where(impossible, 0.0, loglik), axis=-1)  # prior
            marg = jnp.einsum("bn,nlv->blv", post, onehot)
            return jnp.log(jnp.maximum(marg, jnp.finfo(marg.dtype).tiny))

        return jax.jit(fn)

    def log_scores(self, process):
        """The exact score network ``fn(x_t, t) -> log s [b, L, S]`` (SEDD's ``log_score``)."""
        conditionals = self.conditionals(process)

        def fn(x_t: Array, t: Array) -> Array:
            p0 = jax.nn.softmax(conditionals(x_t, t), axis=-1)
            s = process.scores(x_t, p0, t)
            return jnp.log(jnp.maximum(s, jnp.finfo(s.dtype).tiny))

        return jax.jit(fn)


def _all_sequences(vocab_size: int, length: int) -> np.ndarray:
    return np.array(list(itertools.product(range(vocab_size), repeat=length)), dtype=np.int32)


def chi_square_test(counts, probs, min_expected: float = 5.0) -> tuple[float, int, float]:
    """Pearson's chi-square of ``counts`` against ``probs``: ``(statistic, dof, p_value)``.

    Cells with an expected count below ``min_expected`` are pooled into one cell."""
    from scipy import stats

    counts, probs = np.asarray(counts, float), np.asarray(probs, float)
    expected = counts.sum() * probs
    small = expected < min_expected
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    keep = exp > 0
    stat = float(((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum())
    dof = int(keep.sum() - 1)
    return stat, dof, float(stats.chi2.sf(stat, dof))


def exact_sampler_law(dist: SequenceDistribution, sampler, process, fn, grid, *,
                      prediction: str = "logits") -> tuple[np.ndarray, float]:
    """The exact output law of a grid sampler (no Monte Carlo): ``(probs [V^L], leftover)``.

    Propagates the distribution over all ``S^L`` noisy sequences through each step's kernel
    ``K[x_t, x_s] = prod_i P_i(x_s^i | x_t)`` (:func:`jaxdist.discrete.samplers.step_probs`),
    from the prior at ``grid[0]``; ``leftover`` is the final mass on sequences that still hold a
    mask (it counts fully in the total variation ``0.5 (|probs - p|_1 + leftover)``)."""
    n_states, length = process.n_states, dist.length
    states = _all_sequences(n_states, length)                          # [M, L]
    if process.absorbing:
        law = np.zeros(states.shape[0])
        law[-1] = 1.0                                                  # all masks (last in order)
    else:
        law = np.full(states.shape[0], 1.0 / states.shape[0])
    step = _stepper(sampler, process, fn, prediction)
    grid = np.asarray(grid)
    for i in range(grid.size - 1):
        probs = np.asarray(step(jnp.asarray(states), grid[i + 1], grid[i], i == grid.size - 2))
        probs = probs / probs.sum(-1, keepdims=True)
        kernel = np.ones((states.shape[0], states.shape[0]))
        for j in range(length):
            kernel = kernel * probs[:, j, :][:, states[:, j]]
        law = law @ kernel
    clean = np.all(states < dist.vocab_size, axis=1)
    out = np.zeros(dist.probs.size)
    out[dist.index(states[clean])] = law[clean]
    return out, float(law[~clean].sum())


@functools.lru_cache(maxsize=32)
def _stepper(sampler, process, fn, prediction):
    from ..discrete.samplers import step_probs

    return jax.jit(lambda x, s, t, last: step_probs(sampler, process, fn, x, s, t, last=last,
                                                    prediction=prediction))
