r"""Shortcut models (Frans et al. 2024): one network ``s(x_t, t, d)`` for every step size ``d``.

On the rectified-flow path ``x_t = (1 - t) x + t e`` (``t = 0`` data, ``t = 1`` noise; the
paper runs time the other way, ``t_paper = 1 - t``) a step of size ``d`` is
``x_{t-d} = x_t - d s(x_t, t, d)``. The loss (paper eq. 5, checked against the reference code
``kvfrans/shortcut-models``, ``targets_shortcut.py``) has two parts over one batch:

* flow matching at ``d = 0``: ``||s(x_t, t, 0) - (e - x)||^2`` (or the teacher's velocity);
* self-consistency for ``2d``: ``||s(x_t, t, 2d) - stopgrad(s_tgt)||^2`` with
  ``s_tgt = (s(x_t, t, d) + s(x', t - d, d)) / 2`` and ``x' = x_t - d s(x_t, t, d)``.

As in the reference code the step sizes are dyadic, ``2d = 2^k / M`` for ``k = 1 .. log2 M``
(``M = base_steps``, 128 in the paper), drawn uniformly; the smallest ``d = 1/M`` is queried at
``d = 0`` (the paper's rule), so the exact fixed point is ``2^k`` Euler steps of the flow
(:meth:`jaxdist.testing.fewstep.GaussianFlow.shortcut`). ``t`` is on the grid of ``2d``,
``t in {2d, 4d, ..., 1}``, so that sampling steps land on trained times. A fraction
``bootstrap_ratio`` of the batch (the leading rows; 1/4 in the paper) takes the self-consistency
term, the rest flow matching. The bootstrap targets use ``batch["ema_params"]`` when given (the
paper's EMA option), else ``stopgrad(params)``.

Sampling ``K`` steps (a power of two, at most ``M``): ``d = 1/K`` from ``t = 1``; ``K = M``
queries ``d = 0``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from ..denoiser import BaseDenoiser
from ..schedules import RectifiedFlow, expand_to
from .dsm import ApplyFn, mean_over_features
from .trigflow import denoiser_velocity

Array = jax.Array

__all__ = ["make_shortcut_loss", "shortcut_step", "shortcut_sample"]


def shortcut_step(apply_fn: ApplyFn, params: Any, x: Array, t, d) -> Array:
    """``s(x, t, d) = apply_fn(params, x, t, d)`` with ``t, d`` scalars or ``[B]``."""
    n = x.shape[:1]
    return apply_fn(params, x, jnp.broadcast_to(jnp.asarray(t, x.dtype), n),
                    jnp.broadcast_to(jnp.asarray(d, x.dtype), n))


def _check_power_of_two(name: str, value: int) -> int:
    if value < 1 or value & (value - 1):
        raise ValueError(f"{name}={value} must be a power of two (1, 2, 4, ...).")
    return int(value)


def make_shortcut_loss(apply_fn: ApplyFn, *, teacher: BaseDenoiser | None = None,
                       base_steps: int = 128, bootstrap_ratio: float = 0.25,
                       target_clip: float | None = None
                       ) -> Callable[[Any, Array, dict], tuple[Array, dict]]:
    """Shortcut-model ``loss(params, key, batch)`` (see the module docstring).

    Args:
      apply_fn: ``apply_fn(params, x_t, t, d) -> s``.
      teacher: ``None`` (train from data) or a denoiser whose rectified-flow velocity is the
        ``d = 0`` target (distillation).
      base_steps: ``M``, the number of steps of the finest (flow-matching) level.
      bootstrap_ratio: fraction of the batch on the self-consistency term.
      target_clip: clip the bootstrap targets to ``+-target_clip`` (the reference code uses 4
        for images in ``[-1, 1]``); ``None`` keeps them.

    ``aux``: ``per_example``, ``weights`` (ones), ``t``, ``d`` (0 on flow-matching rows),
    ``fm_loss``, ``bootstrap_loss``.
    """
    m = _check_power_of_two("base_steps", base_steps)
    if m < 2:
        raise ValueError("base_steps must be at least 2 (one doubling level).")
    if not 0.0 <= bootstrap_ratio < 1.0:
        raise ValueError(f"bootstrap_ratio={bootstrap_ratio} must be in [0, 1).")
    levels = int(math.log2(m))
    rf = RectifiedFlow()

    def loss(params, key, batch):
        x = batch["x"]
        n = x.shape[0]
        n_b = int(round(n * bootstrap_ratio))
        k_lv, k_j, k_t, k_e = jax.random.split(key, 4)
        e = jax.random.normal(k_e, x.shape, x.dtype)
        # bootstrap rows (the first n_b): 2d = 2^k / M, t = j 2d with j in 1 .. 1/(2d)
        k = jax.random.randint(k_lv, (n_b,), 1, levels + 1)
        two_d = (2.0 ** k / m).astype(x.dtype)
        j = jnp.floor(jax.random.uniform(k_j, (n_b,), x.dtype) * (m / 2.0 ** k)) + 1.0
        # flow-matching rows: t uniform on (0, 1], d = 0
        t_fm = 1.0 - jax.random.uniform(k_t, (n - n_b,), x.dtype)
        t = jnp.concatenate([j * two_d, t_fm])
        d_cond = jnp.concatenate([two_d, jnp.zeros_like(t_fm)])
        x_t = expand_to(1.0 - t, x) * x + expand_to(t, x) * e
        if teacher is None:
            v = (e - x)[n_b:]
        else:
            v = denoiser_velocity(teacher, rf, x_t[n_b:], t[n_b:])
        target_params = jax.lax.stop_gradient(batch.get("ema_params", params))
        d = 0.5 * two_d
        d_query = jnp.where(d * m <= 1.0, 0.0, d)  # the smallest step is the flow (d = 0)
        xb, tb = x_t[:n_b], t[:n_b]
        s1 = shortcut_step(apply_fn, target_params, xb, tb, d_query)
        s2 = shortcut_step(apply_fn, target_params, xb - expand_to(d, xb) * s1, tb - d, d_query)
        s_tgt = 0.5 * (s1 + s2)
        if target_clip is not None:
            s_tgt = jnp.clip(s_tgt, -target_clip, target_clip)
        target = jax.lax.stop_gradient(jnp.concatenate([s_tgt, v]))
        is_b = jnp.arange(n) < n_b
        out = shortcut_step(apply_fn, params, x_t, t, d_cond)
        per_example = mean_over_features((out - target) ** 2)
        fm = jnp.sum(jnp.where(is_b, 0.0, per_example)) / max(n - n_b, 1)
        bs = jnp.sum(jnp.where(is_b, per_example, 0.0)) / max(n_b, 1)
        return jnp.mean(per_example), {"per_example": per_example,
                                       "weights": jnp.ones_like(t), "t": t, "d": d_cond,
                                       "fm_loss": fm, "bootstrap_loss": bs}

    return loss


def shortcut_sample(apply_fn: ApplyFn, params: Any, key: Array, shape: Sequence[int],
                    steps: int = 1, *, base_steps: int = 128) -> Array:
    """``steps``-step sampling ``x <- x - d s(x, t, d)``, ``d = 1 / steps`` from ``x = e`` at
    ``t = 1`` (``steps = base_steps`` queries ``d = 0``, the flow)."""
    _check_power_of_two("steps", steps)
    if steps > base_steps:
        raise ValueError(f"steps={steps} exceeds base_steps={base_steps}, the finest trained "
                         "step; use at most base_steps steps.")
    d = 1.0 / steps
    d_query = 0.0 if steps == base_steps else d
    x = jax.random.normal(key, tuple(shape))
    for k in range(steps):
        x = x - d * shortcut_step(apply_fn, params, x, 1.0 - k * d, d_query)
    return x
