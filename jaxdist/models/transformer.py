"""A small bidirectional transformer over token sequences for discrete diffusion (Flax NNX).

``DiscreteTransformer(n_states, n_out, length)``: ``tokens [B, L] int32`` (noisy, ids in
``[0, n_states)``, the mask included) and times ``t [B]`` -> ``[B, L, n_out]`` (clean-token logits,
``n_out = vocab_size``, or log scores, ``n_out = n_states``). Pre-norm blocks

    h <- h + Attn(LN(h)),   h <- h + MLP(LN(h)),   h_0 = E[x] + P + e(t)

with full (non-causal) attention, learned positions ``P`` and, unless ``time_conditioned=False``
(RADD's time-agnostic network), the sinusoidal time embedding ``e(t)`` of :mod:`.mlp` added to
every position through a zero-initialised projection. With the default initialisation that
projection's output (RMS 0.71) was 6x the token embeddings (0.12) and 35x the positions (0.02),
the same vector at every position: after the first LayerNorm the positions were nearly
invisible, and a time-conditioned network learnt a Markov chain no better than the marginals in
600 steps (docs/discrete.md). Starting at zero, the network is time-agnostic at
initialisation (exact for masked diffusion) and learns how much of ``t`` to use.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from .mlp import broadcast_time, time_embedding

Array = jax.Array

__all__ = ["DiscreteTransformer"]


class _Block(nnx.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int, rngs: nnx.Rngs):
        self.ln1 = nnx.LayerNorm(dim, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(heads, dim, decode=False, rngs=rngs)
        self.ln2 = nnx.LayerNorm(dim, rngs=rngs)
        self.up = nnx.Linear(dim, mlp_ratio * dim, rngs=rngs)
        self.down = nnx.Linear(mlp_ratio * dim, dim, rngs=rngs)

    def __call__(self, h: Array) -> Array:
        h = h + self.attn(self.ln1(h))
        return h + self.down(jax.nn.gelu(self.up(self.ln2(h))))


class DiscreteTransformer(nnx.Module):
    """Bidirectional transformer ``(tokens [B, L], t [B]) -> [B, L, n_out]``.

    Args:
      n_states: token ids the input may hold (``process.n_states``: vocabulary plus mask).
      n_out: output width (``vocab_size`` for clean logits, ``n_states`` for log scores).
      length: sequence length ``L``.
      dim: model width; heads: attention heads; depth: blocks; mlp_ratio: MLP expansion.
      time_conditioned: add the embedding of ``t`` (``False``: time-agnostic, ``t`` ignored).
      rngs: ``nnx.Rngs`` for the initialisation.
    """

    def __init__(self, n_states: int, n_out: int, length: int, *, dim: int = 64, heads: int = 4,
                 depth: int = 2, mlp_ratio: int = 4, time_conditioned: bool = True,
                 rngs: nnx.Rngs):
        if min(n_states, n_out, length, dim, heads, depth, mlp_ratio) < 1 or dim % heads:
            raise ValueError(f"n_states={n_states}, n_out={n_out}, length={length}, dim={dim}, "
                             f"heads={heads}, depth={depth} must be positive, dim divisible by "
                             "heads.")
        self.n_states, self.length, self.time_conditioned = n_states, length, time_conditioned
        self.embed = nnx.Embed(n_states, dim, rngs=rngs)
        self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (length, dim)))
        if time_conditioned:  # zero-initialised: starts time-agnostic (see the module doc)
            self.time_proj = nnx.Linear(64, dim, kernel_init=nnx.initializers.zeros_init(),
                                        rngs=rngs)
        self.blocks = nnx.List([_Block(dim, heads, mlp_ratio, rngs) for _ in range(depth)])
        self.ln = nnx.LayerNorm(dim, rngs=rngs)
        self.out = nnx.Linear(dim, n_out, rngs=rngs)

    def __call__(self, tokens: Array, t) -> Array:
        if tokens.ndim != 2 or tokens.shape[1] != self.length:
            raise ValueError(f"tokens must be [batch, {self.length}], got shape {tokens.shape}.")
        h = self.embed(tokens) + self.pos[...]
        if self.time_conditioned:
            e = time_embedding(broadcast_time(t, tokens.shape[0]), 64, max_freq=16.0)
            h = h + self.time_proj(e)[:, None, :]
        for block in self.blocks:
            h = block(h)
        return self.out(self.ln(h)).astype(jnp.float32)
