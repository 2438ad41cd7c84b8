"""Discrete forward processes: absorbing (masked) and uniform, tokenwise continuous-time chains.

Each position of a sequence ``x [b, L]`` evolves independently. With the keep probability
``alpha(t)`` of a :mod:`schedule <jaxdist.discrete.schedules>` the forward marginals are

* :class:`MaskedProcess` (absorbing, mask id ``m = vocab_size``, ``S = V + 1`` states):
  ``q_t(. | x0) = alpha_t delta_{x0} + (1 - alpha_t) delta_m``;
* :class:`UniformProcess` (``S = V`` states):
  ``q_t(. | x0) = alpha_t delta_{x0} + (1 - alpha_t) / V``.

Both are ``exp(sigma_bar(t) Q)`` for a fixed rate matrix ``Q`` and ``sigma_bar = -log alpha``.
Everything the samplers and objectives need is a per-position vector over the ``S`` states,
built from the model's clean-token probabilities ``p0 [b, L, V]`` (``p(x0^i | x_t)``):

* ``scores(x_t, p0, t)``: the concrete score ``s_y = p_t(x_t^{i -> y}) / p_t(x_t)``, exactly
  ``E[q_t(y | x0^i) / q_t(x_t^i | x0^i) | x_t]`` (the other positions cancel);
* ``rate_into(x_t, t)``: forward rates ``Q_t(y -> x_t^i)``; the reverse-CTMC rates are
  ``R_t(x_t -> y) = Q_t(y -> x_t) s_y`` (:meth:`DiscreteProcess.reverse_rates`);
* ``posterior(x_t, p0, s, t)``: ``p(x_s^i | x_t) = sum_x0 p0(x0) q(x_s | x_t, x0)`` for ``s < t``;
* ``transition_to(x_t, s, t)`` / ``inverse_transition(v, s, t)``: the column ``T[:, x_t]`` of
  ``T = q_{t|s}`` and ``T^{-T} v`` (SEDD's analytic step).

Times ``t`` are ``[b]`` (or scalars); tokens are int32.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from .schedules import DiscreteSchedule, LinearSchedule, LogLinearSchedule, get_schedule

Array = jax.Array

__all__ = ["DiscreteProcess", "MaskedProcess", "UniformProcess", "check_tokens"]


def _per_position(t, x: Array) -> Array:
    """``t`` (scalar or ``[b]``) as ``[b, 1, ..., 1]`` broadcasting against ``x [b, L, ...]``."""
    t = jnp.asarray(t)
    if t.ndim == 0:
        return t
    return t.reshape(t.shape + (1,) * (x.ndim - t.ndim))


def _concrete(x) -> np.ndarray | None:
    """``x`` as a NumPy array, or ``None`` when it is traced (checks happen where concrete)."""
    if isinstance(x, jax.core.Tracer):
        return None
    return np.asarray(x)


def check_tokens(tokens, high: int, name: str = "tokens", *, mask_id: int | None = None) -> None:
    """Raises ``TypeError``/``ValueError`` unless ``tokens`` are integers in ``[0, high)``.

    With ``mask_id``, a value equal to it is reported as a mask token in clean data."""
    dtype = jnp.asarray(tokens).dtype if not hasattr(tokens, "dtype") else tokens.dtype
    if not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(f"{name} must be an integer array of token ids, got dtype {dtype}.")
    values = _concrete(tokens)
    if values is None or values.size == 0:
        return
    if mask_id is not None and (values == mask_id).any():
        raise ValueError(f"{name} contain the mask id {mask_id}: clean data must use tokens "
                         f"0..{mask_id - 1} only (the mask is added by the forward process).")
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi >= high:
        raise ValueError(f"{name} must lie in [0, {high - 1}] (the vocabulary), got values in "
                         f"[{lo}, {hi}]; remap them or raise vocab_size.")


@dataclasses.dataclass(frozen=True)
class DiscreteProcess:
    """Base of the tokenwise processes; ``vocab_size`` clean tokens, a keep schedule."""

    vocab_size: int
    schedule: DiscreteSchedule = dataclasses.field(default_factory=LinearSchedule)

    #: ``True`` when a mask state ``vocab_size`` is appended (absorbing process)
    absorbing = False

    def __post_init__(self):
        if not (isinstance(self.vocab_size, (int, np.integer)) and self.vocab_size >= 2):
            raise ValueError(f"vocab_size={self.vocab_size!r} must be an integer >= 2.")
        object.__setattr__(self, "schedule", get_schedule(self.schedule))

    @property
    def n_states(self) -> int:
        """``S``: states a noisy token can take (``V + 1`` with the mask, else ``V``)."""
        return self.vocab_size + int(self.absorbing)

    @property
    def mask_id(self) -> int | None:
        """The mask token id (``vocab_size``), or ``None`` for a process without a mask."""
        return self.vocab_size if self.absorbing else None

    def check_clean(self, tokens, name: str = "tokens") -> None:
        """Clean data: ids in ``[0, V)`` and no mask id."""
        check_tokens(tokens, self.vocab_size, name, mask_id=self.mask_id)

    def check_noisy(self, tokens, name: str = "tokens") -> None:
        """Noisy tokens: ids in ``[0, S)``."""
        check_tokens(tokens, self.n_states, name)

    # -- forward process ---------------------------------------------------------------------
    def marginal_probs(self, x0: Array, t) -> Array:
        """``q_t(. | x0)`` per position: ``[b, L, S]``."""
        raise NotImplementedError

    def sample_marginal(self, key: Array, x0: Array, t) -> Array:
        """``x_t ~ q_t(. | x0)`` tokenwise: ``[b, L]`` int32."""
        raise NotImplementedError

    def prior_sample(self, key: Array, shape: tuple[int, ...]) -> Array:
        """A draw of the reference distribution at ``t = 1``: ``shape`` int32."""
        raise NotImplementedError

    def rate_into(self, x_t: Array, t) -> Array:
        """Forward rates ``Q_t(y -> x_t)`` per position ``[b, L, S]`` (0 at ``y = x_t``)."""
        raise NotImplementedError

    # -- reverse process -----------------------------------------------------------------------
    def scores(self, x_t: Array, p0: Array, t) -> Array:
        """Concrete score ``s_y = p_t(x_t^{i->y}) / p_t(x_t)`` ``[b, L, S]`` from ``p0 [b, L, V]``
        (exact where a forward rate ``Q(y -> x_t)`` is non-zero; other entries enter no rate)."""
        raise NotImplementedError

    def reverse_rates(self, x_t: Array, scores: Array, t) -> Array:
        """Reverse-CTMC rates ``R_t(x_t -> y) = Q_t(y -> x_t) s_y`` (off-diagonal) ``[b, L, S]``."""
        return self.rate_into(x_t, t) * scores

    def rates_from_probs(self, x_t: Array, p0: Array, t) -> Array:
        """Reverse rates from clean probabilities (same as ``reverse_rates(x_t, scores(...), t)``,
        in a form that stays finite where ``alpha(t) = 0``)."""
        return self.reverse_rates(x_t, self.scores(x_t, p0, t), t)

    def posterior(self, x_t: Array, p0: Array, s, t) -> Array:
        """``p(x_s | x_t) = sum_x0 p0(x0) q(x_s | x_t, x0)`` per position ``[b, L, S]``."""
        raise NotImplementedError

    def analytic_probs(self, x_t: Array, scores: Array, s, t) -> Array:
        """SEDD's analytic step ``P(x_s = y) ~ T[y, x_t] (T^{-T} s_t)_y`` (clipped at 0).

        Needs ``alpha(t) > 0`` (e.g. :class:`LogLinearSchedule`)."""
        stag = self.inverse_transition(scores, s, t)
        return jnp.maximum(self.transition_to(x_t, s, t) * stag, 0.0)

    def transition_to(self, x_t: Array, s, t) -> Array:
        """``T[y, x_t] = q_{t|s}(x_t | x_s = y)`` per position ``[b, L, S]``."""
        raise NotImplementedError

    def inverse_transition(self, v: Array, s, t) -> Array:
        """``T^{-T} v`` for ``v [b, L, S]`` (maps ``p_t`` to ``p_s``; SEDD's staggered score)."""
        raise NotImplementedError

    def prior_kl(self, x0: Array) -> Array:
        """``KL(q_1(. | x0) || prior)`` per sequence ``[b]`` (0 when ``alpha(1) = 0``)."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class MaskedProcess(DiscreteProcess):
    """Absorbing diffusion: a token is kept with probability ``alpha(t)``, else replaced by the mask
    ``m = vocab_size`` (so noisy tokens live in ``[0, vocab_size]``). The prior is all masks."""

    absorbing = True

    def marginal_probs(self, x0: Array, t) -> Array:
        a = _per_position(self.schedule.alpha(t), x0)[..., None]
        keep = jax.nn.one_hot(x0, self.n_states, dtype=jnp.result_type(a, float))
        return a * keep + (1.0 - a) * jax.nn.one_hot(self.mask_id, self.n_states, dtype=keep.dtype)

    def sample_marginal(self, key: Array, x0: Array, t) -> Array:
        a = _per_position(self.schedule.alpha(t), x0)
        keep = jax.random.uniform(key, x0.shape, dtype=jnp.result_type(a, float)) < a
        return jnp.where(keep, x0, self.mask_id).astype(jnp.int32)

    def prior_sample(self, key: Array, shape: tuple[int, ...]) -> Array:
        return jnp.full(shape, self.mask_id, jnp.int32)

    def rate_into(self, x_t: Array, t) -> Array:
        rate = _per_position(self.schedule.sigma_rate(t), x_t)[..., None]
        into_mask = (x_t == self.mask_id)[..., None] & (jnp.arange(self.n_states) < self.vocab_size)
        return jnp.where(into_mask, rate, 0.0)

    def scores(self, x_t: Array, p0: Array, t) -> Array:
        a = _per_position(self.schedule.alpha(t), x_t)[..., None]
        masked = (x_t == self.mask_id)[..., None]
        ratio = a / (1.0 - a) * p0                      # s_y = alpha / (1 - alpha) p0(y)
        ratio = jnp.concatenate([ratio, jnp.ones_like(ratio[..., :1])], axis=-1)
        return jnp.where(masked, ratio, jax.nn.one_hot(x_t, self.n_states, dtype=ratio.dtype))

    def rates_from_probs(self, x_t: Array, p0: Array, t) -> Array:
        a = _per_position(self.schedule.alpha(t), x_t)[..., None]
        da = _per_position(self.schedule.dalpha(t), x_t)[..., None]
        rate = -da / (1.0 - a) * p0                     # R(m -> y) = -alpha' / (1 - alpha) p0(y)
        rate = jnp.concatenate([rate, jnp.zeros_like(rate[..., :1])], axis=-1)
        return jnp.where((x_t == self.mask_id)[..., None], rate, 0.0)

    def posterior(self, x_t: Array, p0: Array, s, t) -> Array:
        a_t = _per_position(self.schedule.alpha(t), x_t)[..., None]
        a_s = _per_position(self.schedule.alpha(s), x_t)[..., None]
        unmask = (a_s - a_t) / (1.0 - a_t)              # MD4: (alpha_s - alpha_t) / (1 - alpha_t)
        probs = jnp.concatenate([unmask * p0, jnp.broadcast_to(1.0 - unmask, p0[..., :1].shape)],
                                axis=-1)
        masked = (x_t == self.mask_id)[..., None]
        return jnp.where(masked, probs, jax.nn.one_hot(x_t, self.n_states, dtype=probs.dtype))

    def transition_to(self, x_t: Array, s, t) -> Array:
        beta = (_per_position(self.schedule.alpha(t), x_t)
                / _per_position(self.schedule.alpha(s), x_t))[..., None]
        is_token = jnp.arange(self.n_states) < self.vocab_size
        from_any = jnp.where(is_token, 1.0 - beta, 1.0)          # T[y, m]
        stay = beta * jax.nn.one_hot(x_t, self.n_states, dtype=beta.dtype)  # T[y, a], a < m
        return jnp.where((x_t == self.mask_id)[..., None], from_any, stay)

    def inverse_transition(self, v: Array, s, t) -> Array:
        beta = (_per_position(self.schedule.alpha(t), v[..., 0])
                / _per_position(self.schedule.alpha(s), v[..., 0]))[..., None]
        tokens = v[..., :-1] / beta
        mask = v[..., -1:] - (1.0 - beta) / beta * v[..., :-1].sum(-1, keepdims=True)
        return jnp.concatenate([tokens, mask], axis=-1)

    def analytic_probs(self, x_t: Array, scores: Array, s, t) -> Array:
        """SEDD's analytic step; at ``s = 0`` (``alpha(s) = 1``) nothing stays masked whatever the
        scores (SEDD's final denoising step: the mask column is dropped)."""
        probs = super().analytic_probs(x_t, scores, s, t)
        done = _per_position(self.schedule.alpha(s), x_t) >= 1.0
        masked = x_t == self.mask_id
        drop = (done & masked)[..., None] & (jnp.arange(self.n_states) == self.mask_id)
        return jnp.where(drop, 0.0, probs)

    def prior_kl(self, x0: Array) -> Array:
        a1 = self.schedule.alpha(1.0)
        kl = jnp.where(a1 > 0, jnp.inf, 0.0)            # a kept token has prior probability 0
        return jnp.broadcast_to(kl, x0.shape[:1])


@dataclasses.dataclass(frozen=True)
class UniformProcess(DiscreteProcess):
    """Uniform diffusion: a token is kept with probability ``alpha(t)``, else resampled uniformly
    from the ``V`` tokens. The prior is uniform. The default schedule is SEDD's log-linear one
    (``alpha(1) = eps > 0`` keeps the reverse rates finite at ``t = 1``)."""

    schedule: DiscreteSchedule = dataclasses.field(default_factory=LogLinearSchedule)

    def _coefs(self, t, x: Array) -> tuple[Array, Array]:
        a = _per_position(self.schedule.alpha(t), x)[..., None]
        return a, (1.0 - a) / self.vocab_size

    def marginal_probs(self, x0: Array, t) -> Array:
        a, c = self._coefs(t, x0)
        return a * jax.nn.one_hot(x0, self.vocab_size, dtype=jnp.result_type(a, float)) + c

    def sample_marginal(self, key: Array, x0: Array, t) -> Array:
        k_keep, k_new = jax.random.split(key)
        a = _per_position(self.schedule.alpha(t), x0)
        keep = jax.random.uniform(k_keep, x0.shape, dtype=jnp.result_type(a, float)) < a
        fresh = jax.random.randint(k_new, x0.shape, 0, self.vocab_size, jnp.int32)
        return jnp.where(keep, x0, fresh).astype(jnp.int32)

    def prior_sample(self, key: Array, shape: tuple[int, ...]) -> Array:
        return jax.random.randint(key, shape, 0, self.vocab_size, jnp.int32)

    def rate_into(self, x_t: Array, t) -> Array:
        rate = _per_position(self.schedule.sigma_rate(t), x_t)[..., None] / self.vocab_size
        return jnp.where(jax.nn.one_hot(x_t, self.n_states, dtype=bool), 0.0, rate)

    def _weights(self, x_t: Array, p0: Array, t) -> tuple[Array, Array]:
        """``w(x0) = p0(x0) / q_t(x_t | x0)`` and ``sum_x0 w``."""
        a, c = self._coefs(t, x_t)
        w = p0 / (a * jax.nn.one_hot(x_t, self.vocab_size, dtype=p0.dtype) + c)
        return w, w.sum(-1, keepdims=True)

    def scores(self, x_t: Array, p0: Array, t) -> Array:
        a, c = self._coefs(t, x_t)
        w, total = self._weights(x_t, p0, t)
        return a * w + c * total                        # sum_x0 w(x0) q_t(y | x0)

    def posterior(self, x_t: Array, p0: Array, s, t) -> Array:
        a_s, c_s = self._coefs(s, x_t)
        w, total = self._weights(x_t, p0, t)
        return self.transition_to(x_t, s, t) * (a_s * w + c_s * total)

    def _beta(self, x: Array, s, t) -> Array:
        return (_per_position(self.schedule.alpha(t), x)
                / _per_position(self.schedule.alpha(s), x))[..., None]

    def transition_to(self, x_t: Array, s, t) -> Array:
        beta = self._beta(x_t, s, t)
        onehot = jax.nn.one_hot(x_t, self.vocab_size, dtype=beta.dtype)
        return beta * onehot + (1.0 - beta) / self.vocab_size

    def inverse_transition(self, v: Array, s, t) -> Array:
        beta = self._beta(v[..., 0], s, t)
        return v / beta - (1.0 - beta) / (beta * self.vocab_size) * v.sum(-1, keepdims=True)

    def prior_kl(self, x0: Array) -> Array:
        q1 = self.marginal_probs(x0, jnp.ones(x0.shape[:1]))
        kl = jnp.sum(jnp.where(q1 > 0, q1 * jnp.log(q1 * self.vocab_size), 0.0), axis=-1)
        return kl.sum(-1)
