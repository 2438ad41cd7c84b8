"""Denoisers: any network output turned into the canonical pair ``(x0_hat, eps_hat)``.

Solvers only ever see that pair, so each solver is written once for every parameterisation and
schedule. Guidance, thresholding and preconditioning are *denoiser transformations*: they wrap a
denoiser and return another one.

A denoiser may carry state across the steps of a sampler (APG's momentum, for instance): it
implements ``init_state(x)`` and ``apply(state, x, t, **cond) -> ((x0, eps), state)``, and
``jd.sample`` threads the state through its ``lax.scan`` carry. Stateless denoisers need only
``__call__``.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from .predictions import check_prediction, to_x0_eps
from .schedules import EDM, Schedule, expand_to

Array = jax.Array
Pair = tuple[Array, Array]

__all__ = [
    "BaseDenoiser",
    "Denoiser",
    "DenoiserTransform",
    "EDMPreconditioned",
    "ClipX0",
    "DynamicThreshold",
    "ConsistencyDenoiser",
    "consistency_fn",
]


class BaseDenoiser:
    """Interface: ``schedule`` plus ``__call__(x, t, **cond) -> (x0_hat, eps_hat)``."""

    schedule: Schedule

    def __call__(self, x: Array, t, **cond) -> Pair:
        raise NotImplementedError

    def init_state(self, x: Array) -> Any:
        """State carried across sampler steps (none by default)."""
        return ()

    def apply(self, state: Any, x: Array, t, **cond) -> tuple[Pair, Any]:
        """Stateful evaluation used by ``jd.sample``; stateless denoisers ignore ``state``."""
        return self(x, t, **cond), state


def _check_output(out: Array, x: Array, fn: Callable) -> Array:
    if out.shape != x.shape:
        name = getattr(fn, "__name__", type(fn).__name__)
        raise ValueError(
            f"the model fn={name} returned shape {out.shape} for x of shape {x.shape}; a denoiser "
            "model must return an array of the same shape as its input x."
        )
    # Low-precision model outputs are upcast: solver state stays float32 or wider.
    return out.astype(jnp.result_type(x.dtype, jnp.float32))


class Denoiser(BaseDenoiser):
    """Wraps ``fn(x, t, **cond)`` that predicts ``prediction`` (``eps``, ``x0``, ``v``, ``score``,
    ``velocity``) under ``schedule``.

    ``fn`` receives ``schedule.model_time(t)``: a scalar inside ``jd.sample`` (or per-example
    ``[batch]`` in training); set ``broadcast_time=True`` to always pass ``[batch]``.
    """

    def __init__(self, fn: Callable[..., Array], schedule: Schedule, prediction: str = "eps",
                 *, broadcast_time: bool = False):
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}.")
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a jaxdist schedule, got {type(schedule).__name__}.")
        self.fn = fn
        self.schedule = schedule
        self.prediction = check_prediction(prediction)
        self.broadcast_time = broadcast_time

    def model_output(self, x: Array, t, **cond) -> Array:
        """The raw network output at ``(x, t)`` (checked to have the shape of ``x``)."""
        t_in = self.schedule.model_time(t)
        if self.broadcast_time:
            t_in = jnp.broadcast_to(t_in, x.shape[:1])
        return _check_output(self.fn(x, t_in, **cond), x, self.fn)

    def __call__(self, x: Array, t, **cond) -> Pair:
        return to_x0_eps(self.model_output(x, t, **cond), x, t, self.schedule, self.prediction)

    def __repr__(self) -> str:
        return f"Denoiser(fn={getattr(self.fn, '__name__', self.fn)}, schedule={self.schedule}, " \
               f"prediction={self.prediction!r})"


class DenoiserTransform(BaseDenoiser):
    """A denoiser built from ``inner``: subclasses implement ``transform(x0, eps, x, t)``.

    State (if ``inner`` has any) is passed through unchanged.
    """

    inner: BaseDenoiser

    @property
    def schedule(self) -> Schedule:  # type: ignore[override]
        return self.inner.schedule

    def transform(self, x0: Array, eps: Array, x: Array, t) -> Pair:
        raise NotImplementedError

    def __call__(self, x: Array, t, **cond) -> Pair:
        return self.transform(*self.inner(x, t, **cond), x, t)

    def init_state(self, x: Array) -> Any:
        return self.inner.init_state(x)

    def apply(self, state: Any, x: Array, t, **cond) -> tuple[Pair, Any]:
        pair, state = self.inner.apply(state, x, t, **cond)
        return self.transform(*pair, x, t), state


def _eps_from_x0(x0: Array, x: Array, t, schedule: Schedule) -> Array:
    a, s = expand_to(schedule.alpha(t), x), expand_to(schedule.sigma(t), x)
    return (x - a * x0) / s


class ClipX0(DenoiserTransform):
    """Static thresholding: ``x0_hat <- clip(x0_hat, -max_value, max_value)``, eps recomputed."""

    def __init__(self, inner: BaseDenoiser, max_value: float = 1.0):
        self.inner, self.max_value = inner, float(max_value)

    def transform(self, x0, eps, x, t) -> Pair:
        x0 = jnp.clip(x0, -self.max_value, self.max_value)
        return x0, _eps_from_x0(x0, x, t, self.schedule)


class DynamicThreshold(DenoiserTransform):
    """Imagen's dynamic thresholding (Saharia et al. 2022) of ``x0_hat``, per example.

    ``s = clip(quantile(|x0_hat|, ratio), 1, max_value)``, ``x0_hat <- clip(x0_hat, -s, s) / s``.
    ``x`` is ``[batch, ...]``; use it for pixel-space models only.
    """

    def __init__(self, inner: BaseDenoiser, ratio: float = 0.995, max_value: float = 1.0):
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"ratio={ratio} must be in (0, 1] (a quantile, not a percentile).")
        self.inner, self.ratio, self.max_value = inner, float(ratio), float(max_value)

    def transform(self, x0, eps, x, t) -> Pair:
        flat = jnp.abs(x0.reshape(x0.shape[0], -1))
        s = jnp.clip(jnp.quantile(flat, self.ratio, axis=1), 1.0, self.max_value)
        s = expand_to(s, x0)
        x0 = jnp.clip(x0, -s, s) / s
        return x0, _eps_from_x0(x0, x, t, self.schedule)


class EDMPreconditioned(BaseDenoiser):
    """EDM preconditioning (Karras et al. 2022, Table 1) around a raw network ``F``.

    In the scaled space ``x~ = x / alpha`` with noise level ``s = sigma / alpha``:
    ``D(x) = c_skip x~ + c_out F(c_in x~, c_noise)``, ``c_skip = sd^2 / (s^2 + sd^2)``,
    ``c_out = s sd / sqrt(s^2 + sd^2)``, ``c_in = 1 / sqrt(s^2 + sd^2)``, ``c_noise = log(s) / 4``.
    Works on any schedule (for ``EDM``, ``alpha = 1`` and ``s = t``).
    """

    def __init__(self, fn: Callable[..., Array], schedule: Schedule, sigma_data: float | None = None):
        self.fn, self.schedule = fn, schedule
        self.sigma_data = float(sigma_data if sigma_data is not None
                                else getattr(schedule, "sigma_data", 0.5))

    def scalings(self, t) -> tuple[Array, Array, Array, Array]:
        """``(c_skip, c_out, c_in, c_noise)`` at time ``t``."""
        s, sd2 = self.schedule.sigma_over_alpha(t), self.sigma_data**2
        norm = jnp.sqrt(s * s + sd2)
        return sd2 / (s * s + sd2), s * self.sigma_data / norm, 1.0 / norm, 0.25 * jnp.log(s)

    def __call__(self, x: Array, t, **cond) -> Pair:
        c_skip, c_out, c_in, c_noise = self.scalings(t)
        x_scaled = x / expand_to(self.schedule.alpha(t), x)
        out = _check_output(self.fn(expand_to(c_in, x) * x_scaled, c_noise, **cond), x, self.fn)
        x0 = expand_to(c_skip, x) * x_scaled + expand_to(c_out, x) * out
        return x0, _eps_from_x0(x0, x, t, self.schedule)


def consistency_fn(apply_fn: Callable[..., Array], params: Any, x: Array, s: Array, *,
                   sigma_min: float, sigma_data: float = 0.5, **cond) -> Array:
    """The consistency function (Song et al. 2023) in the EDM space ``x = x0 + s z``:

    ``f(x, s) = c_skip x + c_out F(c_in x, log(s)/4)`` with
    ``c_skip = sd^2 / ((s - s_min)^2 + sd^2)``, ``c_out = (s - s_min) sd / sqrt(s^2 + sd^2)``,
    ``c_in = 1 / sqrt(s^2 + sd^2)``, so
    ``f(x, s_min) = x`` exactly. ``x [B, ...]``; ``s`` scalar or ``[B]``;
    ``F = apply_fn(params, ., ., **cond)``.
    """
    s = jnp.broadcast_to(jnp.asarray(s, x.dtype), x.shape[:1])
    sd2 = sigma_data**2
    c_skip = sd2 / ((s - sigma_min) ** 2 + sd2)
    c_out = (s - sigma_min) * sigma_data / jnp.sqrt(s * s + sd2)
    c_in = 1.0 / jnp.sqrt(s * s + sd2)
    out = apply_fn(params, expand_to(c_in, x) * x, 0.25 * jnp.log(s), **cond)
    return expand_to(c_skip, x) * x + expand_to(c_out, x) * out


def _sigma_min(schedule: Schedule) -> float:
    return float(getattr(schedule, "sigma_min", None) or
                 float(schedule.sigma_over_alpha(schedule.t_min)))


class ConsistencyDenoiser(BaseDenoiser):
    """A consistency model as a denoiser: ``x0_hat = f(x / alpha, sigma / alpha)``
    (:func:`consistency_fn`), so every jaxdist ODE solver can also sample a consistency model.

    ``apply_fn(params, x, c_noise, **cond)`` is the raw network ``F``; ``schedule`` defaults to
    ``EDM()``, ``sigma_data`` to the schedule's (else 0.5).
    """

    def __init__(self, apply_fn: Callable[..., Array], params: Any,
                 schedule: Schedule | None = None, sigma_data: float | None = None):
        self.apply_fn, self.params = apply_fn, params
        self.schedule = EDM() if schedule is None else schedule
        self.sigma_data = float(sigma_data if sigma_data is not None
                                else getattr(self.schedule, "sigma_data", 0.5))
        self.sigma_min = _sigma_min(self.schedule)

    def __call__(self, x: Array, t, **cond) -> Pair:
        a = expand_to(self.schedule.alpha(t), x)
        s = self.schedule.sigma_over_alpha(t)
        x0 = consistency_fn(self.apply_fn, self.params, x / a, s, sigma_min=self.sigma_min,
                            sigma_data=self.sigma_data, **cond)
        return x0, (x - a * x0) / expand_to(self.schedule.sigma(t), x)
