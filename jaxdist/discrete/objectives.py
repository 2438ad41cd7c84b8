"""Discrete-diffusion objectives and the NELBO: MDLM/MD4, RADD, SEDD score entropy.

All terms are per-sequence Monte Carlo estimates (one time per sequence) of a bound on
``-log p(x0)`` in nats, for clean tokens ``x0 [B, L]``:

* :func:`mdlm_terms` (MDLM / MD4, masked process): with ``t ~ U(0, 1)``, ``x_t ~ q_t(. | x0)``,
  ``L = -alpha'(t) / (1 - alpha(t)) sum_{i: x_t^i = m} -log p(x0^i | x_t)``;
* :func:`radd_terms` (RADD, time-agnostic): ``form="any_order"``: ``k ~ U{1..L}`` positions
  masked uniformly, ``L = L/k sum_masked -log p(x0^i | x_masked)`` (the any-order autoregressive
  bound); ``form="lambda"``: each position masked with probability ``lam ~ U(0, 1)``,
  ``L = 1/lam sum_masked -log p`` (MDLM with ``alpha = 1 - t``). The model gets ``t = k/L`` or
  ``lam`` and may ignore it;
* :func:`score_entropy_terms` (SEDD's denoising score entropy, masked or uniform):
  ``L = sum_i sum_{y != x_t^i} Q_t(y -> x_t^i) [s_y - r_y log s_y + r_y (log r_y - 1)]`` with
  ``r_y = q_t(y | x0^i) / q_t(x_t^i | x0^i)``; the network gives ``log s`` (``prediction=
  "log_score"``) or clean logits turned into scores (``"logits"``).

With the exact conditionals every bound is tight for the masked process (``alpha(1) = 0``):
its expectation is ``-log p(x0)``. :func:`nelbo` averages ``n_samples`` draws per sequence;
:func:`make_discrete_loss` builds ``loss(params, key, batch) -> (scalar, aux)`` for
:func:`jaxdist.train.make_train_step` (``batch = {"tokens": [B, L]}``, nats per token).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from .processes import DiscreteProcess, MaskedProcess

Array = jax.Array
Model = Callable[[Array, Array], Array]

__all__ = ["mdlm_terms", "radd_terms", "score_entropy_terms", "score_entropy", "nelbo", "NELBO",
           "make_discrete_loss", "DISCRETE_OBJECTIVES"]

#: objective names -> what the network must return
DISCRETE_OBJECTIVES = {"mdlm": "logits", "radd": "logits", "sedd": "log_score"}


def _require_masked(process: DiscreteProcess, name: str) -> None:
    if not isinstance(process, MaskedProcess):
        raise ValueError(f"the {name} objective needs a MaskedProcess (absorbing diffusion), got "
                         f"{type(process).__name__}; use the 'sedd' score entropy for it.")


def _times(key: Array, batch: int, dtype) -> Array:
    """``t ~ U(0, 1)`` kept off 0 (``[eps, 1)``, ``eps`` the float resolution)."""
    return jax.random.uniform(key, (batch,), dtype, minval=jnp.finfo(dtype).eps, maxval=1.0)


def _checked_logits(fn: Model, x: Array, t: Array, width: int) -> Array:
    out = fn(x, t)
    if out.shape != (*x.shape, width):
        raise ValueError(f"fn returned shape {out.shape}, expected {(*x.shape, width)} "
                         f"(one entry per token of the vocabulary of {width}).")
    return out


def _masked_ce(logits: Array, x0: Array, masked: Array) -> Array:
    """``sum_{masked i} -log p(x0^i)`` per sequence ``[B]``."""
    logp = jax.nn.log_softmax(logits.astype(jnp.result_type(float)), axis=-1)
    picked = jnp.take_along_axis(logp, x0[..., None], axis=-1)[..., 0]
    return -jnp.sum(jnp.where(masked, picked, 0.0), axis=-1)


def mdlm_terms(process: DiscreteProcess, fn: Model, x0: Array, key: Array) -> Array:
    """MDLM / MD4 masked NELBO, one draw per sequence: ``[B]`` nats."""
    _require_masked(process, "mdlm")
    dtype = jnp.result_type(float)
    k_t, k_x = jax.random.split(key)
    t = _times(k_t, x0.shape[0], dtype)
    xt = process.sample_marginal(k_x, x0, t)
    logits = _checked_logits(fn, xt, t, process.vocab_size)
    a, da = process.schedule.alpha(t), process.schedule.dalpha(t)
    return -da / (1.0 - a) * _masked_ce(logits, x0, xt == process.mask_id)


def radd_terms(process: DiscreteProcess, fn: Model, x0: Array, key: Array, *,
               form: str = "any_order") -> Array:
    """RADD's time-agnostic bound, one draw per sequence: ``[B]`` nats (see the module)."""
    _require_masked(process, "radd")
    if form not in ("any_order", "lambda"):
        raise ValueError(f"form={form!r} must be 'any_order' or 'lambda'.")
    dtype = jnp.result_type(float)
    batch, length = x0.shape
    k_n, k_pos = jax.random.split(key)
    if form == "any_order":
        k = jax.random.randint(k_n, (batch,), 1, length + 1)
        ranks = jnp.argsort(jnp.argsort(jax.random.uniform(k_pos, x0.shape), axis=-1), axis=-1)
        masked = ranks < k[:, None]                          # k positions, uniformly chosen
        t, weight = k.astype(dtype) / length, length / k.astype(dtype)
    else:
        t = _times(k_n, batch, dtype)
        masked = jax.random.uniform(k_pos, x0.shape, dtype) < t[:, None]
        weight = 1.0 / t
    xt = jnp.where(masked, process.mask_id, x0).astype(jnp.int32)
    logits = _checked_logits(fn, xt, t, process.vocab_size)
    return weight * _masked_ce(logits, x0, masked)


def score_entropy(process: DiscreteProcess, log_score: Array, x_t: Array, x0: Array,
                  t: Array) -> Array:
    """SEDD's denoising score entropy per position ``[B, L]`` (rates include ``sigma_bar'``)."""
    q = process.marginal_probs(x0, t)                                    # [B, L, S]
    q_here = jnp.take_along_axis(q, x_t[..., None], axis=-1)
    ratio = q / q_here
    rate = process.rate_into(x_t, t)
    used = rate > 0
    log_s = jnp.where(used, log_score, 0.0)
    safe_r = jnp.where(ratio > 0, ratio, 1.0)
    k_r = jnp.where(ratio > 0, ratio * (jnp.log(safe_r) - 1.0), 0.0)    # K(r) = r (log r - 1)
    term = jnp.exp(log_s) - ratio * log_s + k_r
    return jnp.sum(jnp.where(used, rate * term, 0.0), axis=-1)


def score_entropy_terms(process: DiscreteProcess, fn: Model, x0: Array, key: Array, *,
                        prediction: str = "log_score") -> Array:
    """SEDD's score-entropy bound (without the prior term), one draw per sequence: ``[B]``."""
    if prediction not in ("log_score", "logits"):
        raise ValueError(f"prediction={prediction!r} must be 'log_score' or 'logits'.")
    dtype = jnp.result_type(float)
    k_t, k_x = jax.random.split(key)
    t = _times(k_t, x0.shape[0], dtype)
    xt = process.sample_marginal(k_x, x0, t)
    if prediction == "log_score":
        log_s = _checked_logits(fn, xt, t, process.n_states).astype(dtype)
    else:
        p0 = jax.nn.softmax(_checked_logits(fn, xt, t, process.vocab_size).astype(dtype), -1)
        s = process.scores(xt, p0, t)
        log_s = jnp.log(jnp.maximum(s, jnp.finfo(dtype).tiny))
    return score_entropy(process, log_s, xt, x0, t).sum(-1)


class NELBO(NamedTuple):
    """Per-sequence ``nats [B]``, its Monte Carlo ``stderr [B]`` and ``bits_per_token [B]``."""

    nats: Array
    stderr: Array
    bits_per_token: Array


def _terms(objective: str, process, fn, x0, key, prediction: str, form: str) -> Array:
    if objective == "mdlm":
        return mdlm_terms(process, fn, x0, key)
    if objective == "radd":
        return radd_terms(process, fn, x0, key, form=form)
    if objective == "sedd":
        return score_entropy_terms(process, fn, x0, key, prediction=prediction)
    raise ValueError(f"objective={objective!r} must be one of {tuple(DISCRETE_OBJECTIVES)}.")


def nelbo(process: DiscreteProcess, fn: Model, tokens: Array, key: Array, n_samples: int = 64, *,
          objective: str | None = None, prediction: str = "logits",
          form: str = "any_order") -> NELBO:
    """The NELBO of each sequence in ``tokens [B, L]`` (nats, a bound on ``-log p(x)``).

    Args:
      process: the forward process.
      fn: ``fn(tokens, t) -> logits [B, L, V]`` (or log scores with ``prediction="log_score"``).
      tokens: clean tokens ``[B, L]`` in ``[0, vocab_size)``.
      key: PRNG key.
      n_samples: Monte Carlo draws per sequence (times and masks).
      objective: ``"mdlm"`` (default for the masked process), ``"radd"`` or ``"sedd"`` (default
        for the uniform process, which adds the exact prior term ``KL(q_1(. | x0) || uniform)``).
      prediction: what ``fn`` returns (``"logits"`` or ``"log_score"``, the latter for ``sedd``).
      form: RADD's loss form (``"any_order"`` or ``"lambda"``).

    Returns:
      :class:`NELBO` ``(nats, stderr, bits_per_token)``, each ``[B]``.
    """
    process.check_clean(tokens)
    if not isinstance(n_samples, int) or n_samples < 2:
        raise ValueError(f"n_samples={n_samples!r} must be an integer >= 2 (for the stderr).")
    objective = objective or ("mdlm" if isinstance(process, MaskedProcess) else "sedd")
    if prediction == "log_score" and objective != "sedd":
        raise ValueError(f"prediction='log_score' works only with objective='sedd', not "
                         f"{objective!r} (which needs clean-token logits).")
    batch, length = tokens.shape
    x0 = jnp.tile(jnp.asarray(tokens, jnp.int32), (n_samples, 1))
    terms = _terms(objective, process, fn, x0, key, prediction, form).reshape(n_samples, batch)
    if objective == "sedd" and not isinstance(process, MaskedProcess):
        terms = terms + process.prior_kl(jnp.asarray(tokens))
    nats = terms.mean(0)
    stderr = terms.std(0, ddof=1) / math.sqrt(n_samples)
    return NELBO(nats, stderr, nats / (length * math.log(2.0)))


def make_discrete_loss(objective: str, apply_fn: Callable, process: DiscreteProcess, *,
                       form: str = "any_order") -> Callable:
    """``loss(params, key, batch) -> (nats per token, aux)`` for ``batch = {"tokens": [B, L]}``.

    ``apply_fn(params, tokens, t)`` returns clean logits (``mdlm``, ``radd``) or log scores
    over the ``S`` states (``sedd``). ``aux``: ``per_example`` NELBO terms ``[B]`` (nats) and
    ``bits_per_token``."""
    if objective not in DISCRETE_OBJECTIVES:
        raise ValueError(f"objective={objective!r} must be one of {tuple(DISCRETE_OBJECTIVES)}.")
    if objective in ("mdlm", "radd"):
        _require_masked(process, objective)
    prediction = DISCRETE_OBJECTIVES[objective]

    def loss(params, key: Array, batch: dict):
        tokens = batch["tokens"]
        fn = lambda x, t: apply_fn(params, x, t)  # noqa: E731
        terms = _terms(objective, process, fn, tokens, key, prediction, form)
        per_token = terms.mean() / tokens.shape[1]
        return per_token, {"per_example": terms, "bits_per_token": per_token / math.log(2.0)}

    return loss
