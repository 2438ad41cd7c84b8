"""Shared helpers of the training tests: a tiny flow-matching loss on a tiny MLP (pure JAX)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

DIM, HIDDEN = 2, 16


def tiny_params(seed: int = 0) -> dict:
    """A one-hidden-layer network ``[x, t] -> velocity`` (float32)."""
    k1, k2 = jax.random.split(jax.random.key(seed))
    return {"w1": 0.5 * jax.random.normal(k1, (DIM + 1, HIDDEN)), "b1": jnp.zeros(HIDDEN),
            "w2": 0.5 * jax.random.normal(k2, (HIDDEN, DIM)), "b2": jnp.zeros(DIM)}


def tiny_apply(params: dict, x, t):
    h = jnp.tanh(jnp.concatenate([x, t[:, None]], axis=-1) @ params["w1"] + params["b1"])
    return h @ params["w2"] + params["b2"]


def tiny_loss(params: dict, key, batch: dict):
    """Flow matching with independent coupling: ``|v(x_t, t) - (eps - x)|^2``, x_t = (1-t)x + t eps."""
    x = batch["x"]
    k_eps, k_t = jax.random.split(key)
    eps = jax.random.normal(k_eps, x.shape)
    t = jax.random.uniform(k_t, x.shape[:1])
    xt = (1 - t[:, None]) * x + t[:, None] * eps
    per_example = jnp.sum((tiny_apply(params, xt, t) - (eps - x)) ** 2, axis=-1)
    return jnp.mean(per_example), {"per_example": per_example, "t_mean": jnp.mean(t)}


def tiny_batch(step: int, batch_size: int = 64) -> dict:
    """A deterministic batch for ``step`` (a function of the step only, as ``fit`` requires)."""
    rng = np.random.default_rng(1000 + step)
    centers = np.array([[-1.0, 0.0], [1.0, 0.5]], np.float32)
    x = centers[rng.integers(0, 2, batch_size)] + 0.1 * rng.standard_normal((batch_size, DIM))
    return {"x": x.astype(np.float32)}
