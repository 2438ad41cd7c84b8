r"""MeanFlow (Geng et al. 2025): a network of the average velocity ``u(z, r, t)``.

On the rectified-flow path ``z_t = (1 - t) x + t e`` (``t = 0`` data, ``t = 1`` noise) the
average velocity over ``[r, t]`` is ``u(z_t, r, t) = (z_t - z_r) / (t - r)`` along the
probability-flow ODE, and it satisfies the MeanFlow identity ``u = v - (t - r) du/dt``. The loss
regresses ``u_theta`` on the stop-gradient target built from the network's own total derivative:

    ``(u, du/dt) = jvp(u_theta, (z_t, r, t), (v, 0, 1))``,
    ``u_tgt = stopgrad(v - clip(t - r, 0, 1) du/dt)``,
    ``loss = stopgrad(w) ||u_theta - u_tgt||^2``,  ``w = 1 / (||delta||^2 + c)^p``

with ``delta = u_theta - u_tgt`` (``p = 0``: plain squared error). ``v = e - x`` (training) or a
teacher's velocity at ``z_t`` (distillation, any jaxdist denoiser). Times: ``t, r`` independent
logit-normal (or uniform), sorted so ``t >= r``; a fraction ``1 - flow_ratio`` of the batch
(the leading rows) gets ``r = t``, plain flow matching. The network is ``apply_fn(params, z, t,
t - r)`` (time and interval length, as in the reference code).

Sampling: one step ``x = e - u(e, 0, 1)``; ``K`` steps on ``t_k = 1 - k/K``:
``z <- z - (t_k - t_{k+1}) u(z, t_{k+1}, t_k)``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from ..denoiser import BaseDenoiser
from ..schedules import RectifiedFlow, expand_to
from .dsm import ApplyFn
from .trigflow import denoiser_velocity

Array = jax.Array

__all__ = ["make_meanflow_loss", "mean_velocity", "meanflow_sample", "sample_times"]


def mean_velocity(apply_fn: ApplyFn, params: Any, z: Array, r, t) -> Array:
    """``u_theta(z, r, t) = apply_fn(params, z, t, t - r)``; ``r, t`` scalars or ``[B]``."""
    n = z.shape[:1]
    t = jnp.broadcast_to(jnp.asarray(t, z.dtype), n)
    r = jnp.broadcast_to(jnp.asarray(r, z.dtype), n)
    return apply_fn(params, z, t, t - r)


def sample_times(key: Array, n: int, dtype: Any, *, kind: str = "lognormal",
                 p_mean: float = -0.4, p_std: float = 1.0) -> Array:
    """``n`` times in ``(0, 1)``: ``sigmoid(p_mean + p_std N(0, 1))`` or uniform."""
    if kind == "lognormal":
        return jax.nn.sigmoid(p_mean + p_std * jax.random.normal(key, (n,), dtype))
    if kind == "uniform":
        return jax.random.uniform(key, (n,), dtype)
    raise ValueError(f"time_sampler={kind!r} must be 'lognormal' (logit-normal) or 'uniform'.")


def make_meanflow_loss(apply_fn: ApplyFn, *, teacher: BaseDenoiser | None = None,
                       flow_ratio: float = 0.25, time_sampler: str = "lognormal",
                       p_mean: float = -0.4, p_std: float = 1.0, norm_p: float = 1.0,
                       norm_eps: float = 1e-2, finite_difference: float | None = None
                       ) -> Callable[[Any, Array, dict], tuple[Array, dict]]:
    """MeanFlow ``loss(params, key, batch)`` (see the module docstring).

    Args:
      apply_fn: ``apply_fn(params, z, t, t - r) -> u``.
      teacher: ``None`` (train from data, ``v = e - x``) or a denoiser whose rectified-flow
        velocity replaces ``v`` (distillation).
      flow_ratio: fraction of the batch with ``r != t`` (the rest is flow matching, ``r = t``;
        the paper's best ImageNet setting keeps 25% ``r != t``).
      time_sampler: ``"lognormal"`` (logit-normal ``p_mean``, ``p_std``) or ``"uniform"``.
      norm_p, norm_eps: the adaptive weight ``1 / (||delta||^2 + norm_eps)^norm_p``.
      finite_difference: ``None`` takes ``du/dt`` by ``jax.jvp``; a step ``h`` by central
        differences ``(u(z + h v, r, t + h) - u(z - h v, r, t - h)) / 2h`` instead.

    ``aux``: ``per_example``, ``weights`` (the adaptive weights), ``t``, ``r``, ``mse``.
    """
    if not 0.0 <= flow_ratio <= 1.0:
        raise ValueError(f"flow_ratio={flow_ratio} must be in [0, 1].")
    if norm_p < 0 or not norm_eps > 0:
        raise ValueError(f"need norm_p >= 0 and norm_eps > 0, got {norm_p}, {norm_eps}.")
    sample_times(jax.random.key(0), 1, jnp.float32, kind=time_sampler)  # validates the name
    rf = RectifiedFlow()

    def loss(params, key, batch):
        x = batch["x"]
        n = x.shape[0]
        k_t, k_r, k_e = jax.random.split(key, 3)
        t = sample_times(k_t, n, x.dtype, kind=time_sampler, p_mean=p_mean, p_std=p_std)
        r = sample_times(k_r, n, x.dtype, kind=time_sampler, p_mean=p_mean, p_std=p_std)
        t, r = jnp.maximum(t, r), jnp.minimum(t, r)
        r = jnp.where(jnp.arange(n) < round(n * (1.0 - flow_ratio)), t, r)
        e = jax.random.normal(k_e, x.shape, x.dtype)
        z = expand_to(1.0 - t, x) * x + expand_to(t, x) * e
        if teacher is None:
            v = e - x
        else:
            v = jax.lax.stop_gradient(denoiser_velocity(teacher, rf, z, t))
        frozen = jax.lax.stop_gradient(params)
        u_frozen = lambda zz, rr, tt: mean_velocity(apply_fn, frozen, zz, rr, tt)  # noqa: E731
        if finite_difference is None:
            du_dt = jax.jvp(u_frozen, (z, r, t), (v, jnp.zeros_like(r), jnp.ones_like(t)))[1]
        else:
            h = finite_difference
            du_dt = (u_frozen(z + h * v, r, t + h) - u_frozen(z - h * v, r, t - h)) / (2.0 * h)
        target = jax.lax.stop_gradient(v - expand_to(jnp.clip(t - r, 0.0, 1.0), x) * du_dt)
        u = mean_velocity(apply_fn, params, z, r, t)
        sq = jnp.sum(((u - target) ** 2).reshape(n, -1), axis=1)
        w = jax.lax.stop_gradient(1.0 / (sq + norm_eps) ** norm_p)
        per_example = w * sq
        return jnp.mean(per_example), {"per_example": per_example, "weights": w, "t": t, "r": r,
                                       "mse": jnp.mean(sq) / x[0].size}

    return loss


def meanflow_sample(apply_fn: ApplyFn, params: Any, key: Array, shape: Sequence[int],
                    steps: int = 1) -> Array:
    """``steps``-step MeanFlow sampling of ``shape = [B, ...]`` from ``e ~ N(0, I)`` at
    ``t = 1`` on the uniform times ``t_k = 1 - k / steps``."""
    if steps < 1:
        raise ValueError(f"steps={steps} must be a positive integer.")
    z = jax.random.normal(key, tuple(shape))
    for k in range(steps):
        t, r = 1.0 - k / steps, 1.0 - (k + 1) / steps
        z = z - (t - r) * mean_velocity(apply_fn, params, z, r, t)
    return z
