r"""sCM: continuous-time consistency models in TrigFlow form (Lu & Song 2024), training and
distillation.

With ``x_t = cos t x0 + sin t z``, ``z ~ N(0, sigma_d^2)`` (:class:`~.trigflow.TrigFlow`) the
consistency function is ``f(x_t, t) = cos t x_t - sin t sigma_d F(x_t / sigma_d, t)`` and
``f(x, 0) = x`` exactly. The loss, per example,

    ``e^{-w(t)} / D ||F_theta - F^- - g||^2 + w(t)``,
    ``g = -cos^2 t (sigma_d F^- - dx_t/dt) - r cos t sin t (x_t + sigma_d dF^-/dt)``,

with ``F^- = stopgrad(F_theta)``, ``cos t sin t dF^-/dt`` one ``jax.jvp`` of ``(x, t) ->
F^-(x / sigma_d, t)`` along the tangents ``(cos t sin t dx_t/dt, cos t sin t)``, the warm-up
``r = min(1, step / warmup_steps)`` and the normalisation ``g <- g / (||g||_rms + c)``. ``g`` is
``cos t df^-/dt``: zero exactly when ``f`` is constant along the probability-flow ODE. Training
(sCT) uses the conditional velocity ``dx_t/dt = cos t z - sin t x0``; distillation (sCD) the
teacher's velocity in TrigFlow time (any jaxdist denoiser, :class:`~.trigflow.Rescheduled`).
``w(t)`` is the adaptive weighting ``w_phi(t)``, a linear function of a Fourier basis of ``t``
learned jointly (``params = {"model": ..., "logvar": ...}``); times are
``t = atan(e^tau / sigma_d)``, ``tau ~ N(p_mean, p_std^2)``, and the prior weighting
``1 / (sigma_d tan t)`` is optional (on by default, as in the paper).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from ..denoiser import BaseDenoiser
from ..schedules import expand_to
from .dsm import ApplyFn, mean_over_features
from .trigflow import TrigFlow, denoiser_velocity

Array = jax.Array

__all__ = ["make_scm_loss", "scm_consistency", "scm_sample", "scm_init_params",
           "adaptive_logvar", "scm_times"]


def adaptive_logvar(logvar_params: dict, t: Array) -> Array:
    """``-w_phi(t) = b + sum_k a_k cos(2 k t) + c_k sin(2 k t)``, ``t [B] -> [B]``."""
    a, c, b = logvar_params["cos"], logvar_params["sin"], logvar_params["bias"]
    k = 2.0 * jnp.arange(1, a.shape[0] + 1, dtype=t.dtype)
    return b + jnp.cos(t[:, None] * k) @ a + jnp.sin(t[:, None] * k) @ c


def scm_init_params(model_params: Any, features: int = 8, dtype: Any = jnp.float32) -> dict:
    """``{"model": model_params, "logvar": zeros}`` for ``adaptive_weight=True``."""
    return {"model": model_params,
            "logvar": {"cos": jnp.zeros((features,), dtype), "sin": jnp.zeros((features,), dtype),
                       "bias": jnp.zeros((), dtype)}}


def scm_consistency(apply_fn: ApplyFn, params: Any, x: Array, t, *, sigma_data: float = 0.5
                    ) -> Array:
    """``f(x, t) = cos t x - sin t sigma_d F(x / sigma_d, t)``; ``t`` scalar or ``[B]``."""
    t = jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:1])
    out = apply_fn(params, x / sigma_data, t)
    return expand_to(jnp.cos(t), x) * x - expand_to(jnp.sin(t), x) * sigma_data * out


def _split(params: Any, adaptive: bool) -> tuple[Any, Any]:
    if not adaptive:
        return params, None
    if not (isinstance(params, dict) and set(params) == {"model", "logvar"}):
        raise ValueError("with adaptive_weight=True the parameters must be "
                         "{'model': ..., 'logvar': ...}: build them with "
                         "jd.objectives.scm.scm_init_params(model_params).")
    return params["model"], params["logvar"]


def make_scm_loss(apply_fn: ApplyFn, *, sigma_data: float = 0.5,
                  teacher: BaseDenoiser | None = None, p_mean: float = -1.0, p_std: float = 1.4,
                  warmup_steps: int = 10_000, tangent_norm: float | None = 0.1,
                  adaptive_weight: bool = True, prior_weighting: bool = True,
                  finite_difference: float | None = None
                  ) -> Callable[[Any, Array, dict], tuple[Array, dict]]:
    """sCM ``loss(params, key, batch)`` (see the module docstring).

    Args:
      apply_fn: ``apply_fn(model_params, x_t / sigma_d, t) -> F`` with ``t`` in TrigFlow time.
      sigma_data: the data scale ``sigma_d``.
      teacher: ``None`` for consistency training; a denoiser (any schedule) for distillation.
      p_mean, p_std: the log-normal proposal of ``sigma_d tan t``.
      warmup_steps: tangent warm-up length (``batch["step"]``; 0 disables the warm-up).
      tangent_norm: ``c`` of the normalisation ``g / (||g||_rms + c)`` (``None``: none).
      adaptive_weight: learn ``w_phi(t)`` (params ``{"model", "logvar"}``, see
        :func:`scm_init_params`).
      prior_weighting: multiply by ``1 / (sigma_d tan t)``.
      finite_difference: ``None`` takes ``dF^-/dt`` by ``jax.jvp``; a step ``h`` takes it by
        central differences along the trajectory instead (``F^-`` at ``t +- h t`` on the
        conditional path for training, at ``x +- h t dx_t/dt`` for distillation), as
        FastGen offers for networks without forward-mode support.

    ``aux``: ``per_example``, ``weights`` (``1 / (sigma_d tan t)``), ``t``, ``logvar``, ``g_rms``
    and ``warmup``.
    """
    if not sigma_data > 0 or not p_std > 0:
        raise ValueError(f"need sigma_data > 0 and p_std > 0, got {sigma_data}, {p_std}.")
    if warmup_steps < 0 or (tangent_norm is not None and not tangent_norm > 0):
        raise ValueError(f"need warmup_steps >= 0 and tangent_norm > 0 (or None), got "
                         f"{warmup_steps}, {tangent_norm}.")
    trig = TrigFlow(sigma_data)

    def loss(params, key, batch):
        x0 = batch["x"]
        model, logvar_params = _split(params, adaptive_weight)
        k_t, k_z = jax.random.split(key)
        n = x0.shape[0]
        t = jnp.arctan(jnp.exp(p_mean + p_std * jax.random.normal(k_t, (n,), x0.dtype))
                       / sigma_data)
        z = sigma_data * jax.random.normal(k_z, x0.shape, x0.dtype)
        cos, sin = expand_to(jnp.cos(t), x0), expand_to(jnp.sin(t), x0)
        x_t = cos * x0 + sin * z
        if teacher is None:
            dxdt = cos * z - sin * x0
        else:
            dxdt = jax.lax.stop_gradient(denoiser_velocity(teacher, trig, x_t, t))
        frozen = jax.lax.stop_gradient(model)
        cs = jnp.cos(t) * jnp.sin(t)
        net = lambda x, s: apply_fn(frozen, x / sigma_data, s)  # noqa: E731
        if finite_difference is None:
            f_minus, f_jvp = jax.jvp(net, (x_t, t), (expand_to(cs, x0) * dxdt, cs))
        else:
            f_minus = net(x_t, t)
            h = finite_difference * t
            if teacher is None:  # along the conditional path x(s) = cos s x0 + sin s z
                def path(s):
                    return expand_to(jnp.cos(s), x0) * x0 + expand_to(jnp.sin(s), x0) * z

                hi, lo = net(path(t + h), t + h), net(path(t - h), t - h)
            else:  # along the teacher's velocity
                hi = net(x_t + expand_to(h, x0) * dxdt, t + h)
                lo = net(x_t - expand_to(h, x0) * dxdt, t - h)
            f_jvp = expand_to(cs / (2.0 * h), x0) * (hi - lo)
        warm = (jnp.minimum(1.0, jnp.asarray(batch.get("step", 0), x0.dtype) / warmup_steps)
                if warmup_steps else jnp.asarray(1.0, x0.dtype))
        g = (-cos * cos * (sigma_data * f_minus - dxdt)
             - warm * (expand_to(cs, x0) * x_t + sigma_data * f_jvp))
        g_rms = jnp.sqrt(mean_over_features(g * g))
        if tangent_norm is not None:
            g = g / expand_to(g_rms + tangent_norm, g)
        g = jax.lax.stop_gradient(g)
        f_theta = apply_fn(model, x_t / sigma_data, t)
        err = mean_over_features((f_theta - jax.lax.stop_gradient(f_theta) - g) ** 2)
        weights = 1.0 / (sigma_data * jnp.tan(t)) if prior_weighting else jnp.ones_like(t)
        logvar = (adaptive_logvar(logvar_params, t) if adaptive_weight else jnp.zeros_like(t))
        per_example = weights * jnp.exp(-logvar) * err + logvar
        return jnp.mean(per_example), {"per_example": per_example, "weights": weights, "t": t,
                                       "logvar": logvar, "g_rms": jnp.mean(g_rms),
                                       "warmup": warm}

    return loss


def scm_times(steps: int, *, sigma_data: float = 0.5, sigma_max: float = 80.0,
              sigma_min: float = 0.002, rho: float = 7.0) -> list[float]:
    """Decreasing TrigFlow times of ``steps``-step sampling: ``atan(s_k / sigma_d)`` for the first
    ``steps`` levels ``s_k`` of a Karras grid of ``steps + 1`` levels on ``[sigma_min,
    sigma_max]`` (one step: ``t_max = atan(sigma_max / sigma_d)``)."""
    if steps < 1:
        raise ValueError(f"steps={steps} must be a positive integer.")
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    levels = [(hi + k / steps * (lo - hi)) ** rho for k in range(steps)]
    return [math.atan(s / sigma_data) for s in levels]


def scm_sample(apply_fn: ApplyFn, params: Any, key: Array, shape: Sequence[int],
               steps: int | Sequence[float] = 1, *, sigma_data: float = 0.5) -> Array:
    """Multistep sCM sampling of ``shape = [B, ...]``: ``x = sigma_d z`` at ``t_0``,
    ``x0 = f(x, t_0)``; for each further time ``t_k``: ``x = cos t_k x0 + sin t_k sigma_d z``,
    ``x0 = f(x, t_k)``. ``steps``: decreasing TrigFlow times, or their number
    (:func:`scm_times`). ``params`` are the model parameters (not the ``logvar`` ones)."""
    times = scm_times(steps, sigma_data=sigma_data) if isinstance(steps, int) else list(steps)
    keys = jax.random.split(key, len(times))
    x = sigma_data * jax.random.normal(keys[0], tuple(shape))
    x0 = scm_consistency(apply_fn, params, x, times[0], sigma_data=sigma_data)
    for k in range(1, len(times)):
        z = sigma_data * jax.random.normal(keys[k], tuple(shape), x0.dtype)
        x0 = scm_consistency(apply_fn, params,
                             math.cos(times[k]) * x0 + math.sin(times[k]) * z, times[k],
                             sigma_data=sigma_data)
    return x0
