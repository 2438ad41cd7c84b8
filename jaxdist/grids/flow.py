"""Time shifts for flow-matching (rectified-flow) models: SD3's static shift, Flux's resolution-
dependent ``mu``, ``time_shift_type`` ``"exponential"`` / ``"linear"`` and LTX's
``shift_terminal``, as diffusers' ``FlowMatchEulerDiscreteScheduler`` defines them.

They act on rectified-flow times ``t`` in ``[0, 1]`` (``t`` is the flow's sigma), elementwise, and
return what they are given: numpy in, numpy out; ``jax.Array`` in, ``jax.Array`` out (so a shift
can be tuned by gradient). A static shift multiplies the noise level ``sigma / alpha = t / (1 - t)``
by ``shift`` (it lowers the log-SNR by ``2 log shift``), keeping ``t = 0`` and ``t = 1`` fixed.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["flow_shift", "time_shift", "flux_mu", "stretch_to_terminal"]


def flow_shift(t, shift: float):
    """SD3's shift (Esser et al. 2024): ``t' = shift t / (1 + (shift - 1) t)``."""
    if not isinstance(shift, jax.Array) and not shift > 0:
        raise ValueError(f"shift={shift!r} must be positive.")
    return shift * t / (1.0 + (shift - 1.0) * t)


def time_shift(t, mu: float, kind: str = "exponential", sigma: float = 1.0):
    """diffusers' dynamic ``time_shift(mu, sigma, t)``: ``"exponential"`` gives
    ``e^mu / (e^mu + (1/t - 1)^sigma)`` (with ``sigma = 1`` this is ``flow_shift`` with
    ``shift = e^mu``); ``"linear"`` gives ``mu / (mu + (1/t - 1)^sigma)``. ``t = 0`` maps to 0."""
    if kind == "exponential":
        scale = jnp.exp(mu) if isinstance(mu, jax.Array) else math.exp(mu)
    elif kind == "linear":
        if not isinstance(mu, jax.Array) and not mu > 0:
            raise ValueError(f"mu={mu!r} must be positive for time_shift_type='linear'.")
        scale = mu
    else:
        raise ValueError(f"kind={kind!r}: time_shift_type is 'exponential' or 'linear'.")
    with np.errstate(divide="ignore"):
        odds = (1.0 / t - 1.0) ** sigma
    return scale / (scale + odds)


def flux_mu(image_seq_len: float, base_seq_len: float = 256, max_seq_len: float = 4096,
            base_shift: float = 0.5, max_shift: float = 1.15) -> float:
    """Flux's ``mu`` for a latent of ``image_seq_len`` tokens (diffusers' ``calculate_shift``):
    linear from ``base_shift`` at ``base_seq_len`` to ``max_shift`` at ``max_seq_len``
    (Flux.1 at 1024x1024: 4096 tokens, ``mu = 1.15``, ``shift = e^mu = 3.16``)."""
    if not max_seq_len != base_seq_len:
        raise ValueError("max_seq_len and base_seq_len must differ.")
    slope = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return float(base_shift + slope * (image_seq_len - base_seq_len))


def stretch_to_terminal(t, shift_terminal: float):
    """LTX-Video's ``shift_terminal``: rescales ``1 - t`` so that the last time (the smallest
    non-zero one: pass the grid without its final 0) becomes ``shift_terminal``:
    ``t' = 1 - (1 - t) (1 - shift_terminal) / (1 - t_last)``."""
    if not 0 < shift_terminal < 1:
        raise ValueError(f"shift_terminal={shift_terminal!r} must lie in (0, 1).")
    one_minus = 1.0 - t
    return 1.0 - one_minus * ((1.0 - shift_terminal) / one_minus[-1])
