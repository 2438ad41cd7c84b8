"""Noise you can rely on: per-sample draws and Brownian paths queried by ``(t0, t1)``.

* :func:`normal_like` draws example ``i`` of a batch from ``fold_in(key, i)``, so a sample does
  not change when the batch grows or shrinks (the first ``n`` examples of a batch of ``m > n``
  equal a batch of ``n``).
* :class:`BrownianPath` is one Brownian motion ``W(t)`` per example (a virtual Brownian tree
  keyed by ``fold_in(key(seed), i)``). Stochastic solvers given
  ``noise=BrownianPath(...)`` use the normalised increment
  ``z = (W(t) - W(s)) / sqrt(t - s)`` of their step ``[s, t]``; ``z`` is standard normal for
  any step, and the increments of a coarse grid are sums of those of a finer one, so one seed
  gives consistent samples across step counts and strong-order tests can refine one path.

A *noise source* is any hashable object with ``sample(key, x, t, t_next) -> z`` (standard
normal, shape of ``x``); ``None`` means independent draws :func:`normal_like` from the per-step key.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = ["normal_like", "uniform_like", "rademacher_like", "BrownianPath", "standard_normal"]


_DRAWS = {"normal": jax.random.normal, "uniform": jax.random.uniform,
          "rademacher": jax.random.rademacher}


@functools.partial(jax.jit, static_argnums=0)
def _draw(kind: str, key: Array, x: Array) -> Array:
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(x.shape[0]))
    return jax.vmap(lambda k: _DRAWS[kind](k, x.shape[1:], x.dtype))(keys)


def _per_example(kind: str, key: Array, x: Array) -> Array:
    x = jnp.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"x must have a leading batch axis, got shape {x.shape}.")
    return _draw(kind, key, x)


def normal_like(key: Array, x: Array) -> Array:
    """Standard normal noise shaped like ``x [batch, ...]``; example ``i`` uses ``fold_in(key, i)``."""
    return _per_example("normal", key, x)


def uniform_like(key: Array, x: Array) -> Array:
    """Uniform ``[0, 1)`` noise shaped like ``x [batch, ...]``, per example like :func:`normal_like`."""
    return _per_example("uniform", key, x)


def rademacher_like(key: Array, x: Array) -> Array:
    """Random signs ``+-1`` shaped like ``x [batch, ...]``, per example like :func:`normal_like`."""
    return _per_example("rademacher", key, x)


@dataclasses.dataclass(frozen=True)
class BrownianPath:
    """Per-example Brownian motion on ``[t0, t1]``, queried by ``(s, t)``.

    A virtual Brownian tree: ``W(t1) ~ N(0, t1 - t0)`` and, bisecting ``depth`` times, the
    midpoint of ``[l, r]`` is the Brownian bridge draw
    ``W(m) = (W(l) + W(r)) / 2 + sqrt((r - l) / 4) n_node`` with ``n_node`` from
    ``fold_in(key_i, node)``; inside the last interval the bridge is sampled once more. Values at
    the ``2^depth + 1`` dyadic times are exact and shared by every query, so increments over a
    coarse grid are sums of those over a finer one (up to the resolution
    ``(t1 - t0) 2^-depth``).

    Attributes:
      t0: start of the time range the path covers (the sampler's grid must lie inside).
      t1: end of the time range.
      seed: the path's seed; example ``i`` uses ``fold_in(key(seed), i)``.
      depth: bisection levels (default 20: resolution ``1e-6 (t1 - t0)``).

    Frozen and hashable, so it can be a field of a solver (a static of ``jit``).
    """

    t0: float = 0.0
    t1: float = 1.0
    seed: int = 0
    depth: int = 20

    def __post_init__(self):
        if not float(self.t1) > float(self.t0):
            raise ValueError(f"BrownianPath needs t1 > t0, got t0={self.t0}, t1={self.t1}.")
        if not (isinstance(self.depth, int) and 1 <= self.depth <= 30):
            raise ValueError(f"BrownianPath: depth={self.depth!r} must be an int in [1, 30].")

    def _value(self, key: Array, t: Array, shape: tuple[int, ...], dtype: Any) -> Array:
        """``W(t)`` of one example (``W(t0) = 0``). The tree nodes on the way to ``t`` follow
        from the binary digits of ``(t - t0) / (t1 - t0)``, so all draws are one vectorised call
        and the bisection is a short ``scan``."""
        depth, span = self.depth, float(self.t1) - float(self.t0)
        u = jnp.clip((t.astype(dtype) - self.t0) / span, 0.0, 1.0)
        idx = jnp.minimum(jnp.floor(u * 2.0**depth), 2**depth - 1).astype(jnp.int32)
        levels = jnp.arange(depth, dtype=jnp.int32)
        nodes = jnp.left_shift(1, levels) + jnp.right_shift(idx, depth - levels)
        bits = jnp.bitwise_and(jnp.right_shift(idx, depth - 1 - levels), 1)
        nodes = jnp.concatenate([jnp.zeros((1,), jnp.int32), nodes,
                                 jnp.left_shift(1, depth)[None] + idx[None]])
        z = jax.vmap(lambda n: jax.random.normal(jax.random.fold_in(key, n), shape, dtype))(nodes)

        def bisect(carry, inputs):
            w_lo, w_hi, width = carry
            z_mid, right = inputs
            w_mid = 0.5 * (w_lo + w_hi) + jnp.sqrt(0.25 * width) * z_mid
            return (jnp.where(right == 1, w_mid, w_lo), jnp.where(right == 1, w_hi, w_mid),
                    0.5 * width), None

        width0 = jnp.asarray(span, dtype)
        (w_lo, w_hi, width), _ = jax.lax.scan(
            bisect, (jnp.zeros(shape, dtype), jnp.sqrt(width0) * z[0], width0), (z[1:-1], bits))
        lo = self.t0 + idx.astype(dtype) * (span / 2.0**depth)
        tt = jnp.clip(t.astype(dtype), lo, lo + width)
        frac = (tt - lo) / width
        std = jnp.sqrt(jnp.maximum((tt - lo) * (lo + width - tt) / width, 0.0))
        return w_lo + frac * (w_hi - w_lo) + std * z[-1]

    def increment(self, x: Array, s: Array, t: Array) -> Array:
        """``W(t) - W(s)`` per example, shaped like ``x [batch, ...]`` (``s``, ``t`` scalars)."""
        base = jax.random.key(self.seed)

        def one(i):
            k = jax.random.fold_in(base, i)
            return (self._value(k, jnp.asarray(t), x.shape[1:], x.dtype)
                    - self._value(k, jnp.asarray(s), x.shape[1:], x.dtype))

        return jax.vmap(one)(jnp.arange(x.shape[0]))

    def sample(self, key: Array | None, x: Array, t: Array, t_next: Array) -> Array:
        """The normalised increment ``(W(t) - W(t_next)) / sqrt(|t - t_next|)`` over the step
        (``key`` unused: the path's ``seed`` defines it)."""
        lo, hi = jnp.minimum(t, t_next), jnp.maximum(t, t_next)
        dt = (hi - lo).astype(x.dtype)
        return self.increment(x, lo, hi) / jnp.sqrt(jnp.maximum(dt, jnp.finfo(x.dtype).tiny))


def standard_normal(noise: Any, key: Array, x: Array, t: Array, t_next: Array) -> Array:
    """Standard normal noise for the step ``t -> t_next``: from the noise source ``noise`` (e.g. a
    :class:`BrownianPath`), or :func:`normal_like` of the per-step ``key`` when ``noise`` is None."""
    if noise is None:
        if key is None:
            raise ValueError("a stochastic step needs a key: pass key=jax.random.key(seed) to "
                             "jd.sample.")
        return normal_like(key, x)
    return noise.sample(key, x, t, t_next).astype(x.dtype)
