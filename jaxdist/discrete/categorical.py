"""Categorical draws that keep small probabilities, and the clean-token filters (top-p, greedy).

Gumbel-max draws ``argmax(log p + g)`` with ``g = -log(-log u)``. With a float32 uniform ``u``
(23 random bits, ``jax.random.categorical``'s default ``mode="low"``) the largest Gumbel value is
``-log(-log(1 - 2^-23)) = 15.94``: events whose log-probability is more than about 16-20 nats
below the most likely one are drawn too rarely or never, which lowers the effective temperature
(the finding of "Masked Diffusion Models are Secretly Time-Agnostic Masked Models and Exploit
Inaccurate Categorical Sampling"; a masked-diffusion step has exactly such probabilities: staying
masked ~ 1, each token ~ ``p0(v) / n_steps``).

``method="safe"`` (the jaxdist default) draws the Gumbel noise from a 64-bit uniform: in float64
when the logits are float64 (52-bit uniforms, exact down to ~1e-16), otherwise with JAX's
``mode="highest"`` float32 Gumbel (a 64-bit fixed-point uniform, ``log1p`` on the lower half and
``log`` on the upper half, exact down to ~1e-19). ``method="float32"`` is the truncated float32
path, kept to measure the effect.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = ["categorical", "gumbel", "top_p_filter", "greedy_filter", "METHODS"]

#: categorical draw methods
METHODS = ("safe", "float32")


def gumbel(key: Array, shape: tuple[int, ...], dtype=jnp.float32, *,
           method: str = "safe") -> Array:
    """Standard Gumbel noise of ``shape``; ``method`` as in the module docstring."""
    if method not in METHODS:
        raise ValueError(f"method={method!r} must be one of {METHODS}.")
    dtype = jnp.dtype(dtype)
    if method == "float32":
        return jax.random.gumbel(key, shape, jnp.float32, mode="low")
    if dtype == jnp.float64:
        return jax.random.gumbel(key, shape, jnp.float64)
    return jax.random.gumbel(key, shape, jnp.float32, mode="highest")


def categorical(key: Array, probs: Array, *, method: str = "safe") -> Array:
    """One draw per leading index from ``probs [..., S]`` (unnormalised, ``>= 0``): int32 ``[...]``.

    ``argmax(log probs + g)``: zero probabilities are never drawn."""
    logp = jnp.where(probs > 0, jnp.log(jnp.where(probs > 0, probs, 1.0)), -jnp.inf)
    g = gumbel(key, probs.shape, probs.dtype, method=method)
    return jnp.argmax(logp + g.astype(logp.dtype), axis=-1).astype(jnp.int32)


def top_p_filter(probs: Array, top_p: float) -> Array:
    """Nucleus filter: keeps the most likely tokens whose total reaches ``top_p`` (ties kept), then
    renormalises; ``probs [..., V]``."""
    order = jnp.sort(probs, axis=-1)[..., ::-1]
    before = jnp.cumsum(order, axis=-1) - order          # mass strictly above each sorted entry
    kept = jnp.where(before < top_p, order, jnp.inf)
    threshold = jnp.min(kept, axis=-1, keepdims=True)
    out = jnp.where(probs >= threshold, probs, 0.0)
    return out / out.sum(-1, keepdims=True)


def greedy_filter(probs: Array) -> Array:
    """The most likely token with probability 1 (``probs [..., V]``)."""
    return jax.nn.one_hot(jnp.argmax(probs, axis=-1), probs.shape[-1], dtype=probs.dtype)
