"""Samplers of discrete diffusion and the one loop that runs them, :func:`sample`.

The network contract: ``fn(tokens [b, L] int32, t [b]) -> out [b, L, ...]`` with

* ``prediction="logits"`` (default): logits of the clean tokens ``p(x0^i | x_t)``, ``[b, L, V]``
  (no mask column; time-agnostic models ignore ``t``);
* ``prediction="log_score"``: SEDD's log concrete scores ``log s_y``, ``[b, L, S]``.

Samplers (frozen dataclasses; a step goes from ``t`` to ``s < t`` on a decreasing grid):

==========================  ==================================================================
:class:`Ancestral`          ``x_s ~ p(x_s | x_t) = sum_x0 p0(x0) q(x_s | x_t, x0)`` per position
                            (MD4: a mask unmasks with prob. ``(alpha_s - alpha_t) / (1 - alpha_t)``)
:class:`TauLeaping`         SEDD's Euler step: ``P(x_s = y) = (t - s) R_t(x_t -> y)``, ``y != x_t``
                            (stay: the rest, clipped at 0); optional final analytic denoising
:class:`Analytic`           SEDD's Tweedie step: ``P(x_s = y) ~ T[y, x_t] (T^{-T} s_t)_y``
:class:`FirstHitting`       masked only, exact: with ``n`` masks at ``t`` the next unmasking time
                            solves ``1 - alpha(tau) = (1 - alpha(t)) u^{1/n}`` (``tau = t u^{1/n}``
                            for ``alpha = 1 - t``); one uniformly chosen mask is unmasked
:class:`EntropyBounded`     masked only (EB-sampler, Ben-Hamu et al. 2025): unmask the masked
                            positions of lowest entropy ``H_(1) <= H_(2) <= ..`` while
                            ``H_(1) + .. + H_(k-1) <= gamma``; ``gamma = 0``: one token per call,
                            exact for exact conditionals (any adaptive order is a chain rule)
==========================  ==================================================================

With exact clean-token probabilities :class:`Analytic` and :class:`Ancestral` take the same step
(both are the exact per-position conditional). ``top_p`` and ``greedy`` filter the clean-token
probabilities. ``time_agnostic=True`` caches the network output while the tokens do not change
(RADD): the network is called only when a token changed, and the NFE counts those calls.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .categorical import METHODS, categorical, greedy_filter, top_p_filter
from .processes import DiscreteProcess, MaskedProcess

Array = jax.Array
Model = Callable[[Array, Array], Array]

__all__ = ["Ancestral", "TauLeaping", "Analytic", "FirstHitting", "EntropyBounded", "SAMPLERS",
           "DiscreteSample", "sample", "step_probs", "PREDICTIONS"]

#: what the network returns
PREDICTIONS = ("logits", "log_score")


class DiscreteSample(NamedTuple):
    """``tokens [b, L]`` int32 and ``nfe``: network calls made (int32 scalar)."""

    tokens: Array
    nfe: Array


@dataclasses.dataclass(frozen=True)
class _Sampler:
    """Clean-token filters shared by the samplers."""

    top_p: float | None = None
    greedy: bool = False

    name = "sampler"
    needs_probs = False   # needs p(x0 | x_t) (not only concrete scores)
    masked_only = False

    def __post_init__(self):
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"{type(self).__name__}(top_p={self.top_p}): top_p must be in (0, 1], "
                             "or None for no nucleus filter.")

    def filter(self, p0: Array) -> Array:
        if self.greedy:
            return greedy_filter(p0)
        if self.top_p is not None and self.top_p < 1.0:
            return top_p_filter(p0, self.top_p)
        return p0

    def probs(self, process: DiscreteProcess, x: Array, p0: Array | None, scores: Array,
              s: Array, t: Array, last: Array) -> Array:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Ancestral(_Sampler):
    """Exact per-position reverse step ``p(x_s | x_t)`` from the clean-token probabilities."""

    name = "ancestral"
    needs_probs = True

    def probs(self, process, x, p0, scores, s, t, last):
        return process.posterior(x, p0, s, t)


def _analytic_probs(process: DiscreteProcess, x: Array, p0: Array | None, scores: Array, s,
                    t) -> Array:
    """The analytic step; for the absorbing process with clean probabilities its closed form
    (MD4's step, finite where ``alpha(t) = 0``)."""
    if p0 is not None and isinstance(process, MaskedProcess):
        return process.posterior(x, p0, s, t)
    return process.analytic_probs(x, scores, s, t)


@dataclasses.dataclass(frozen=True)
class TauLeaping(_Sampler):
    """SEDD's Euler (tau-leaping) step on the reverse rates, evaluated at ``t``.

    ``denoise_last``: the last step (to ``s = 0``) is the analytic one, which removes every
    remaining mask (SEDD's final denoising step)."""

    denoise_last: bool = True

    name = "tau_leaping"

    def probs(self, process, x, p0, scores, s, t, last):
        dt = (t - s)[:, None, None]
        rates = (process.reverse_rates(x, scores, t) if p0 is None
                 else process.rates_from_probs(x, p0, t))
        move = dt * rates
        onehot = jax.nn.one_hot(x, process.n_states, dtype=move.dtype)
        move = jnp.where(onehot > 0, 0.0, jnp.maximum(move, 0.0))
        stay = jnp.maximum(1.0 - move.sum(-1, keepdims=True), 0.0)
        euler = move + onehot * stay
        if not self.denoise_last:
            return euler
        return jnp.where(last, _analytic_probs(process, x, p0, scores, s, t), euler)


@dataclasses.dataclass(frozen=True)
class Analytic(_Sampler):
    """SEDD's analytic (Tweedie) step: ``P(x_s = y) ~ q_{t|s}(x_t | y) (T^{-T} s_t)_y``."""

    name = "analytic"

    def probs(self, process, x, p0, scores, s, t, last):
        return _analytic_probs(process, x, p0, scores, s, t)


@dataclasses.dataclass(frozen=True)
class FirstHitting(_Sampler):
    """The first-hitting sampler of masked diffusion: ``L`` network calls, one token each."""

    name = "first_hitting"
    needs_probs = True
    masked_only = True


@dataclasses.dataclass(frozen=True)
class EntropyBounded(_Sampler):
    """Entropy-bounded unmasking: per call, the ``k`` lowest-entropy masked positions with
    ``sum_{j<k} H_(j) <= gamma`` (nats; at least one), each drawn from its clean-token law.

    The error of unmasking several positions at once (drawing them independently instead of
    jointly) is bounded by their summed entropies; ``gamma`` trades it against network calls
    (``L`` at ``gamma = 0``, down to 1)."""

    gamma: float = 0.1

    name = "entropy_bounded"
    needs_probs = True
    masked_only = True

    def __post_init__(self):
        super().__post_init__()
        if not (isinstance(self.gamma, (int, float)) and self.gamma >= 0):
            raise ValueError(f"EntropyBounded(gamma={self.gamma!r}): gamma must be a number >= 0 "
                             "(nats of entropy unmasked together per network call).")


#: sampler names (CLI, experiments) -> classes
SAMPLERS = {c.name: c for c in (Ancestral, TauLeaping, Analytic, FirstHitting, EntropyBounded)}


def _model_outputs(process: DiscreteProcess, sampler: _Sampler, out: Array, x: Array, t: Array,
                   prediction: str) -> tuple[Array | None, Array]:
    """``(p0, scores)`` from the network output; ``p0`` is ``None`` for a score network."""
    if prediction == "logits":
        p0 = sampler.filter(jax.nn.softmax(out.astype(t.dtype), axis=-1))
        return p0, process.scores(x, p0, t)
    return None, jnp.exp(out.astype(t.dtype))


def step_probs(sampler: _Sampler, process: DiscreteProcess, fn: Model, x: Array, s, t, *,
               last: bool = False, prediction: str = "logits") -> Array:
    """The law of one step from ``x [b, L]`` at time ``t`` to ``s``: ``[b, L, S]`` per-position
    probabilities (unnormalised, >= 0; the step draws each position independently). Used by
    :func:`jaxdist.testing.discrete.exact_sampler_law` to propagate a sampler exactly."""
    t = jnp.broadcast_to(jnp.asarray(t), x.shape[:1])
    s = jnp.broadcast_to(jnp.asarray(s, t.dtype), x.shape[:1])
    p0, scores = _model_outputs(process, sampler, fn(x, t), x, t, prediction)
    return sampler.probs(process, x, p0, scores, s, t, jnp.asarray(last))


def _check(sampler, process, fn, shape, prediction, method, dtype) -> tuple[int, int]:
    if not isinstance(sampler, _Sampler):
        names = ", ".join(c.__name__ for c in SAMPLERS.values())
        raise TypeError(f"sampler must be one of jd.discrete.{names} (an instance), got "
                        f"{sampler!r}.")
    if not isinstance(process, DiscreteProcess):
        raise TypeError(f"process must be a jd.discrete.MaskedProcess or UniformProcess, got "
                        f"{type(process).__name__}.")
    if sampler.masked_only and not isinstance(process, MaskedProcess):
        raise ValueError(f"the {sampler.name} sampler works only for MaskedProcess (it unmasks one "
                         f"token at a time), got {type(process).__name__}; use Ancestral, "
                         "TauLeaping or Analytic.")
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction={prediction!r} must be one of {PREDICTIONS}.")
    if prediction == "log_score" and (sampler.needs_probs or sampler.greedy or sampler.top_p):
        raise ValueError(f"the {sampler.name} sampler (or greedy/top_p) needs clean-token logits, "
                         "but prediction='log_score'; use TauLeaping or Analytic without filters.")
    if method not in METHODS:
        raise ValueError(f"method={method!r} must be one of {METHODS}.")
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape={shape} must be (batch, length) with positive sizes.")
    width = process.vocab_size if prediction == "logits" else process.n_states
    got = jax.eval_shape(fn, jax.ShapeDtypeStruct(shape, jnp.int32),
                         jax.ShapeDtypeStruct(shape[:1], dtype))
    if tuple(got.shape) != (*shape, width):
        what = ("logits over the V clean tokens (no mask column)" if prediction == "logits"
                else "log scores over the S states")
        raise ValueError(f"fn returned shape {tuple(got.shape)}, expected {(*shape, width)}: "
                         f"{what} for vocab_size={process.vocab_size}.")
    return shape


def _grid(n_steps, grid, dtype) -> Array:
    if (n_steps is None) == (grid is None):
        raise ValueError("pass exactly one of n_steps (a uniform grid from t=1 to 0) or grid.")
    if grid is None:
        if not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
            raise ValueError(f"n_steps={n_steps!r} must be a positive integer.")
        return jnp.linspace(1.0, 0.0, n_steps + 1, dtype=dtype)
    g = np.asarray(grid, dtype=np.float64)
    if g.ndim != 1 or g.size < 2 or not np.all(np.diff(g) < 0) or g[0] > 1 or g[-1] != 0:
        raise ValueError("grid must be a strictly decreasing 1-D array of times from <= 1 down to "
                         f"exactly 0, got {grid!r}.")
    return jnp.asarray(g, dtype)


def sample(sampler: _Sampler, process: DiscreteProcess, fn: Model, key: Array,
           shape: tuple[int, int], *, n_steps: int | None = None, grid=None,
           time_agnostic: bool = False, prediction: str = "logits", method: str = "safe",
           dtype=None) -> DiscreteSample:
    """Draws ``shape = (batch, length)`` token sequences from the reverse process.

    Args:
      sampler: :class:`Ancestral`, :class:`TauLeaping`, :class:`Analytic` or :class:`FirstHitting`.
      process: the forward process (:class:`MaskedProcess` or :class:`UniformProcess`).
      fn: ``fn(tokens [b, L] int32, t [b]) -> [b, L, V]`` clean logits (or log scores).
      key: PRNG key; each sequence uses its own stream (a draw does not depend on the batch).
      shape: ``(batch, length)``.
      n_steps: steps of a uniform grid from ``t = 1`` to 0 (not used by :class:`FirstHitting`,
        which always makes ``length`` calls).
      grid: an explicit decreasing grid ending at 0 (instead of ``n_steps``).
      time_agnostic: the model ignores ``t``: reuse its output while no token changed.
      prediction: ``"logits"`` or ``"log_score"``.
      method: categorical draws, ``"safe"`` (default) or ``"float32"`` (truncated Gumbel).
      dtype: float type of times and probabilities (default: float64 under x64, else float32).

    Returns:
      :class:`DiscreteSample` ``(tokens, nfe)``.
    """
    dtype = jnp.dtype(dtype or (jnp.float64 if jax.config.jax_enable_x64 else jnp.float32))
    shape = tuple(int(n) for n in shape)
    _check(sampler, process, fn, shape, prediction, method, dtype)
    batch, length = shape
    k_prior, k_loop = jax.random.split(key)
    row_keys = jax.random.split(k_loop, batch)
    draw = jax.vmap(lambda k, p: categorical(k, p, method=method))
    if isinstance(sampler, (FirstHitting, EntropyBounded)):
        if n_steps is not None or grid is not None:
            raise ValueError(f"{type(sampler).__name__} takes no n_steps/grid: it chooses its own "
                             "steps (at most `length`).")
        run = _first_hitting if isinstance(sampler, FirstHitting) else _entropy_bounded
        return run(sampler, process, fn, row_keys, shape, draw, dtype)
    times = _grid(n_steps, grid, dtype)
    x0 = process.prior_sample(k_prior, shape)
    n = times.shape[0] - 1
    out_shape = jax.eval_shape(fn, jax.ShapeDtypeStruct(shape, jnp.int32),
                               jax.ShapeDtypeStruct((batch,), dtype))

    def call(x, t, cache, seen):
        if not time_agnostic:
            return fn(x, t), jnp.int32(1)
        changed = jnp.any(x != seen)
        out = jax.lax.cond(changed, lambda: fn(x, t).astype(cache.dtype), lambda: cache)
        return out, changed.astype(jnp.int32)

    def step(carry, i):
        x, cache, seen, nfe = carry
        t = jnp.full((batch,), times[i], dtype)
        s = jnp.full((batch,), times[i + 1], dtype)
        out, calls = call(x, t, cache, seen)
        p0, scores = _model_outputs(process, sampler, out, x, t, prediction)
        probs = sampler.probs(process, x, p0, scores, s, t, i == n - 1)
        keys = jax.vmap(jax.random.fold_in, (0, None))(row_keys, i)
        x_new = draw(keys, probs)
        return (x_new, out, x, nfe + calls), None

    init = (x0, jnp.zeros(out_shape.shape, out_shape.dtype), jnp.full(shape, -1, jnp.int32),
            jnp.int32(0))
    (x, _, _, nfe), _ = jax.lax.scan(step, init, jnp.arange(n))
    return DiscreteSample(x, nfe)


def _first_hitting(sampler, process, fn, row_keys, shape, draw, dtype) -> DiscreteSample:
    """``L`` steps: draw the next unmasking time, unmask one uniformly chosen masked position."""
    batch, length = shape
    sched = process.schedule
    mask = process.mask_id

    def step(carry, i):
        x, t = carry
        keys = jax.vmap(jax.random.fold_in, (0, None))(row_keys, i)
        k_time, k_pos, k_tok = jnp.moveaxis(jax.vmap(lambda k: jax.random.split(k, 3))(keys), 1, 0)
        masked = x == mask
        n = masked.sum(-1).astype(dtype)
        u = jax.vmap(lambda k: jax.random.uniform(k, (), dtype))(k_time)
        alpha_tau = 1.0 - (1.0 - sched.alpha(t)) * u ** (1.0 / n)
        tau = jnp.clip(sched.t_from_alpha(alpha_tau), 0.0, t)
        p0 = sampler.filter(jax.nn.softmax(fn(x, tau).astype(dtype), axis=-1))
        pos = draw(k_pos, masked.astype(dtype))                # uniform over masked positions
        tok_probs = jnp.take_along_axis(p0, pos[:, None, None], axis=1)[:, 0]
        tok = draw(k_tok, tok_probs)
        x = x.at[jnp.arange(batch), pos].set(tok)
        return (x, tau), None

    x0 = process.prior_sample(jax.random.key(0), shape)
    t0 = jnp.ones((batch,), dtype)
    (x, _), _ = jax.lax.scan(step, (x0, t0), jnp.arange(length))
    return DiscreteSample(x, jnp.int32(length))


def _entropy_bounded(sampler, process, fn, row_keys, shape, draw, dtype) -> DiscreteSample:
    """Calls ``fn`` until no mask is left (at most ``L`` times), each time unmasking the
    lowest-entropy masked positions whose preceding entropies sum to at most ``gamma``. The
    network sees ``t`` with ``1 - alpha(t)`` = the masked fraction."""
    batch, length = shape
    mask = process.mask_id

    def cond(carry):
        return jnp.any(carry[0] == mask)

    def body(carry):
        x, nfe = carry
        masked = x == mask
        frac = masked.mean(-1).astype(dtype)
        t = jnp.clip(process.schedule.t_from_alpha(1.0 - frac), 0.0, 1.0)
        p0 = sampler.filter(jax.nn.softmax(fn(x, t).astype(dtype), axis=-1))
        ent = -jnp.sum(jnp.where(p0 > 0, p0 * jnp.log(jnp.where(p0 > 0, p0, 1.0)), 0.0), -1)
        ent = jnp.where(masked, ent, jnp.inf)                      # unmasked positions last
        order = jnp.argsort(ent, axis=-1)
        ranked = jnp.take_along_axis(ent, order, -1)
        before = jnp.cumsum(ranked, -1) - ranked                   # sum of the lower entropies
        chosen_ranked = (before <= sampler.gamma) & jnp.isfinite(ranked)
        chosen_ranked = chosen_ranked.at[:, 0].set(jnp.isfinite(ranked[:, 0]))  # >= 1 per row
        chosen = jnp.zeros_like(masked).at[jnp.arange(batch)[:, None], order].set(chosen_ranked)
        keys = jax.vmap(jax.random.fold_in, (0, None))(row_keys, nfe)
        tokens = draw(keys, p0)
        return jnp.where(chosen, tokens, x), nfe + 1

    x0 = process.prior_sample(jax.random.key(0), shape)
    x, nfe = jax.lax.while_loop(cond, body, (x0, jnp.int32(0)))
    return DiscreteSample(x, nfe)
