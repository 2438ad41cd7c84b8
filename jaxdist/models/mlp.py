"""An MLP score/velocity network for vectors ``[B, D]`` with a sinusoidal time embedding.

``time_embedding(t, n)``: ``[sin(2 pi f_k u), cos(2 pi f_k u)]`` with ``u = asinh(t)`` and ``n / 2``
frequencies ``f_k`` spaced geometrically over ``[min_freq, max_freq]``. ``asinh`` is ``~t`` near 0
and ``~log(2t)`` for large ``t``, so one embedding resolves the model time of every jaxdist
schedule in float32: ``t`` in ``[0, 1]`` (rectified flow, VP), indices up to 1000 (``VPDiscrete``,
``u <= 7.6``) and ``log(sigma) / 4`` (EDM preconditioning), without the large-angle round-off of
``sin(f t)`` at ``t ~ 1000``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array

__all__ = ["MLP", "time_embedding", "broadcast_time"]


def time_embedding(t: Array, features: int, *, min_freq: float = 1.0 / 16.0,
                   max_freq: float = 64.0) -> Array:
    """Sinusoidal embedding ``[B, features]`` of times ``t [B]`` (``features`` even)."""
    if features % 2 or features < 2:
        raise ValueError(f"time_features={features} must be a positive even number.")
    half = features // 2
    freqs = jnp.exp(jnp.linspace(math.log(min_freq), math.log(max_freq), half))
    u = jnp.arcsinh(t.astype(jnp.float32))
    angles = 2.0 * jnp.pi * u[:, None] * freqs
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def broadcast_time(t, batch: int) -> Array:
    """``t`` (scalar, ``[1]`` or ``[B]``) as a ``[B]`` array."""
    t = jnp.asarray(t)
    if t.ndim > 1 or (t.ndim == 1 and t.shape[0] not in (1, batch)):
        raise ValueError(f"t must be a scalar or have shape [{batch}], got shape {t.shape}.")
    return jnp.broadcast_to(t.reshape(-1) if t.ndim else t, (batch,))


class MLP(nnx.Module):
    """``out = W_L h_L``, ``h_{l+1} = silu(W_l h_l + U_l e(t))``, ``h_0 = [x]``; ``x [B, D] -> [B, D]``.

    Args:
      dim: data dimension ``D``.
      hidden: width of the hidden layers.
      depth: number of hidden layers.
      time_features: size of the sinusoidal embedding ``e(t)`` (before a 2-layer projection).
      time_max_freq: highest frequency of ``e(t)``. Consistency models want a smooth
        embedding (about 1; iCT lowers its Fourier scale from 16 to 0.02 for the same reason:
        ``f(x, s)`` must change little between adjacent noise levels); the default resolves
        the sharp time dependence of diffusion and flow models.
      second_time: take a second time ``s`` (``__call__(x, t, s)``), embedded like ``t`` by
        its own projection and added: flow maps ``u(x, r, t)`` (MeanFlow) and shortcut models
        ``s(x, t, d)``.
      rngs: ``nnx.Rngs`` for the initialisation.

    :meth:`features` returns the last hidden layer ``h_L [B, hidden]`` (a discriminator head on
    a score network's features, as in DMD2).
    """

    def __init__(self, dim: int, *, hidden: int = 256, depth: int = 3, time_features: int = 64,
                 time_max_freq: float = 64.0, second_time: bool = False, rngs: nnx.Rngs):
        if dim < 1 or hidden < 1 or depth < 1:
            raise ValueError(f"dim={dim}, hidden={hidden} and depth={depth} must be positive.")
        if not time_max_freq > 1.0 / 16.0:
            raise ValueError(f"time_max_freq={time_max_freq} must exceed the lowest frequency "
                             "1/16 (1.0 for consistency models, 64.0 otherwise).")
        self.dim, self.time_features, self.time_max_freq = dim, time_features, time_max_freq
        self.time_in = nnx.Linear(time_features, hidden, rngs=rngs)
        self.time_out = nnx.Linear(hidden, hidden, rngs=rngs)
        self.second_time = second_time
        if second_time:
            self.time2_in = nnx.Linear(time_features, hidden, rngs=rngs)
            self.time2_out = nnx.Linear(hidden, hidden, rngs=rngs)
        self.inp = nnx.Linear(dim, hidden, rngs=rngs)
        self.layers = nnx.List([nnx.Linear(hidden, hidden, rngs=rngs) for _ in range(depth)])
        self.time_proj = nnx.List([nnx.Linear(hidden, hidden, rngs=rngs) for _ in range(depth)])
        self.out = nnx.Linear(hidden, dim, rngs=rngs)

    def _embed(self, t, batch: int, first: nnx.Linear, second: nnx.Linear) -> Array:
        emb = time_embedding(broadcast_time(t, batch), self.time_features,
                             max_freq=self.time_max_freq)
        return second(jax.nn.silu(first(emb)))

    def features(self, x: Array, t, s=None) -> Array:
        """The last hidden layer ``h_L [B, hidden]`` at ``(x, t)`` (and ``s``)."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"MLP(dim={self.dim}) expects x of shape [B, {self.dim}], got {x.shape}.")
        if (s is None) == self.second_time:
            raise ValueError("MLP(second_time=True) takes (x, t, s); MLP() takes (x, t)."
                             if self.second_time else "this MLP takes (x, t) only; build it "
                             "with second_time=True for a second time input.")
        emb = self._embed(t, x.shape[0], self.time_in, self.time_out)
        if self.second_time:
            emb = emb + self._embed(s, x.shape[0], self.time2_in, self.time2_out)
        h = self.inp(x)
        for layer, proj in zip(self.layers, self.time_proj):
            h = jax.nn.silu(layer(h) + proj(emb))
        return h

    def __call__(self, x: Array, t, s=None) -> Array:
        return self.out(self.features(x, t, s)).astype(x.dtype)
