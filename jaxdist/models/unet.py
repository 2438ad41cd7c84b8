"""A small time-conditioned U-Net for images ``[B, H, W, C]`` (NHWC), e.g. 8x8 and 28x28.

Two resolution levels below the input (``H -> ceil(H/2) -> ceil(H/4)``), each with one residual
block ``h + conv(silu(gn(conv(silu(gn(h))) + W e(t))))``, skip connections by concatenation, and
nearest-neighbour upsampling cropped to the skip's size (so odd sizes such as 7x7 work).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from .mlp import broadcast_time, time_embedding

Array = jax.Array

__all__ = ["UNet"]


def _groups(channels: int) -> int:
    for g in (8, 4, 2, 1):
        if channels % g == 0:
            return g
    return 1


class ResBlock(nnx.Module):
    """Residual block with GroupNorm, SiLU and an additive time embedding."""

    def __init__(self, c_in: int, c_out: int, emb: int, *, rngs: nnx.Rngs):
        self.norm1 = nnx.GroupNorm(c_in, num_groups=_groups(c_in), rngs=rngs)
        self.conv1 = nnx.Conv(c_in, c_out, (3, 3), rngs=rngs)
        self.emb = nnx.Linear(emb, c_out, rngs=rngs)
        self.norm2 = nnx.GroupNorm(c_out, num_groups=_groups(c_out), rngs=rngs)
        self.conv2 = nnx.Conv(c_out, c_out, (3, 3), rngs=rngs)
        self.skip = nnx.Conv(c_in, c_out, (1, 1), rngs=rngs) if c_in != c_out else None

    def __call__(self, x: Array, emb: Array) -> Array:
        h = self.conv1(jax.nn.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, None, None, :]
        h = self.conv2(jax.nn.silu(self.norm2(h)))
        return h + (x if self.skip is None else self.skip(x))


class UNet(nnx.Module):
    """``x [B, H, W, channels], t -> [B, H, W, channels]``; ``t`` scalar or ``[B]``.

    Args:
      channels: image channels ``C``.
      base: channels at full resolution; ``2 base`` and ``2 base`` below.
      time_features: size of the sinusoidal time embedding.
      rngs: ``nnx.Rngs`` for the initialisation.
    """

    def __init__(self, channels: int = 1, *, base: int = 32, time_features: int = 64,
                 rngs: nnx.Rngs):
        if channels < 1 or base < 1:
            raise ValueError(f"channels={channels} and base={base} must be positive.")
        emb = 4 * base
        self.channels, self.time_features = channels, time_features
        self.time_in = nnx.Linear(time_features, emb, rngs=rngs)
        self.time_out = nnx.Linear(emb, emb, rngs=rngs)
        c1, c2 = base, 2 * base
        self.inp = nnx.Conv(channels, c1, (3, 3), rngs=rngs)
        self.down1 = ResBlock(c1, c1, emb, rngs=rngs)
        self.pool1 = nnx.Conv(c1, c2, (3, 3), strides=2, rngs=rngs)
        self.down2 = ResBlock(c2, c2, emb, rngs=rngs)
        self.pool2 = nnx.Conv(c2, c2, (3, 3), strides=2, rngs=rngs)
        self.mid = ResBlock(c2, c2, emb, rngs=rngs)
        self.up2 = ResBlock(2 * c2, c2, emb, rngs=rngs)
        self.up1 = ResBlock(c2 + c1, c1, emb, rngs=rngs)
        self.norm_out = nnx.GroupNorm(c1, num_groups=_groups(c1), rngs=rngs)
        self.out = nnx.Conv(c1, channels, (3, 3), rngs=rngs)

    @staticmethod
    def _upsample(h: Array, like: Array) -> Array:
        h = jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)
        return h[:, : like.shape[1], : like.shape[2]]

    def __call__(self, x: Array, t) -> Array:
        if x.ndim != 4 or x.shape[-1] != self.channels:
            raise ValueError(f"UNet(channels={self.channels}) expects x of shape [B, H, W, "
                             f"{self.channels}] (NHWC), got {x.shape}.")
        emb = time_embedding(broadcast_time(t, x.shape[0]), self.time_features)
        emb = self.time_out(jax.nn.silu(self.time_in(emb)))
        h1 = self.down1(self.inp(x), emb)                 # H
        h2 = self.down2(self.pool1(h1), emb)              # H/2
        h = self.mid(self.pool2(h2), emb)                 # H/4
        h = self.up2(jnp.concatenate([self._upsample(h, h2), h2], -1), emb)
        h = self.up1(jnp.concatenate([self._upsample(h, h1), h1], -1), emb)
        return self.out(jax.nn.silu(self.norm_out(h))).astype(x.dtype)
