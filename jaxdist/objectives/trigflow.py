r"""TrigFlow (Lu & Song 2024) as a jaxdist schedule, and moving any denoiser between schedules.

TrigFlow writes ``x_t = cos(t) x0 + sin(t) z`` with ``z ~ N(0, sigma_d^2 I)``, ``t`` in
``[0, pi/2]``: a jaxdist schedule with ``alpha = cos t`` and ``sigma = sigma_d sin t``. A point
``x_s = alpha(s) x0 + sigma(s) eps`` of any schedule is the TrigFlow point

    ``t = atan2(sigma(s), alpha(s) sigma_d)``,  ``x_t = x_s cos(t) / alpha(s)``

(the same log-SNR, rescaled), so a denoiser trained in one schedule predicts the same
``(x0_hat, eps_hat)`` in any other: :class:`Rescheduled` does that, and
:func:`denoiser_velocity` gives the probability-flow velocity ``dx/dt = alpha' x0_hat +
sigma' eps_hat`` of a denoiser in any schedule (TrigFlow's ``dx_t/dt = sigma_d F``, rectified
flow's ``eps - x0``).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from ..denoiser import BaseDenoiser
from ..predictions import from_x0_eps
from ..schedules import Schedule, expand_to

Array = jax.Array

__all__ = ["TrigFlow", "trigflow_time", "to_trigflow", "from_trigflow", "Rescheduled",
           "denoiser_velocity"]


def _float(t) -> Array:
    t = jnp.asarray(t)
    return t.astype(jnp.result_type(t.dtype, jnp.float32))


@dataclasses.dataclass(frozen=True)
class TrigFlow(Schedule):
    """``alpha(t) = cos t``, ``sigma(t) = sigma_data sin t``.

    ``t_min``/``t_max`` are where ``sigma / alpha = sigma_data tan t`` equals ``sigma_min`` /
    ``sigma_max`` (EDM's range by default; ``t = pi/2`` itself is pure noise, ``alpha = 0``).
    """

    sigma_data: float = 0.5
    sigma_min: float = 0.002
    sigma_max: float = 80.0

    def __post_init__(self):
        if not (self.sigma_data > 0 and 0 < self.sigma_min < self.sigma_max):
            raise ValueError(f"TrigFlow needs sigma_data > 0 and 0 < sigma_min < sigma_max, got "
                             f"{self.sigma_data}, {self.sigma_min}, {self.sigma_max}.")

    @property
    def t_min(self) -> float:
        return math.atan(self.sigma_min / self.sigma_data)

    @property
    def t_max(self) -> float:
        return math.atan(self.sigma_max / self.sigma_data)

    def log_alpha(self, t) -> Array:
        return jnp.log(jnp.cos(_float(t)))

    def alpha(self, t) -> Array:
        return jnp.cos(_float(t))

    def sigma(self, t) -> Array:
        return self.sigma_data * jnp.sin(_float(t))

    def log_snr(self, t) -> Array:
        t = _float(t)
        return -2.0 * jnp.log(self.sigma_data * jnp.tan(t))

    def t_from_log_snr(self, lam) -> Array:
        return jnp.arctan(jnp.exp(-0.5 * _float(lam)) / self.sigma_data)

    def d_alpha(self, t) -> Array:
        return -jnp.sin(_float(t))

    def d_sigma(self, t) -> Array:
        return self.sigma_data * jnp.cos(_float(t))

    def f(self, t) -> Array:
        return -jnp.tan(_float(t))

    def g2(self, t) -> Array:
        return 2.0 * self.sigma_data**2 * jnp.tan(_float(t))


jax.tree_util.register_dataclass(TrigFlow, data_fields=[],
                                 meta_fields=["sigma_data", "sigma_min", "sigma_max"])


def trigflow_time(schedule: Schedule, t, sigma_data: float = 0.5) -> Array:
    """The TrigFlow time ``atan2(sigma(t), alpha(t) sigma_data)`` of time ``t`` of ``schedule``."""
    return jnp.arctan2(schedule.sigma(t), schedule.alpha(t) * sigma_data)


def to_trigflow(schedule: Schedule, x: Array, t, sigma_data: float = 0.5) -> tuple[Array, Array]:
    """``(x_hat, t_hat)``: the TrigFlow point of ``x [B, ...]`` at time ``t`` of ``schedule``."""
    t_hat = trigflow_time(schedule, t, sigma_data)
    scale = jnp.cos(t_hat) / schedule.alpha(t)
    return expand_to(scale, x) * x, t_hat


def from_trigflow(schedule: Schedule, x_hat: Array, t_hat, sigma_data: float = 0.5
                  ) -> tuple[Array, Array]:
    """``(x, t)``: the point of ``schedule`` with the log-SNR of TrigFlow time ``t_hat`` (the
    inverse of :func:`to_trigflow`)."""
    t = schedule.t_from_log_snr(TrigFlow(sigma_data).log_snr(t_hat))
    scale = schedule.alpha(t) / jnp.cos(_float(t_hat))
    return expand_to(scale, x_hat) * x_hat, t


class Rescheduled(BaseDenoiser):
    """``inner`` (a denoiser in any schedule) seen in ``schedule``.

    At ``(x, t)`` it evaluates ``inner`` at ``s = inner.schedule.t_from_log_snr(lambda(t))``,
    clipped to the inner schedule's ``[t_min, t_max]``, on ``x alpha_in(s) / alpha(t)``
    (computed as ``x (alpha_in + sigma_in) / (alpha + sigma)``, finite at pure noise). Inside
    the clip range the prediction pair is the inner one unchanged; outside it (noise levels the
    inner model never saw) ``x0_hat`` comes from the clipped level and ``eps_hat`` is recomputed
    from it in ``schedule``.
    """

    def __init__(self, inner: BaseDenoiser, schedule: Schedule):
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a jaxdist schedule, got {type(schedule).__name__}.")
        self.inner, self.schedule = inner, schedule

    def __call__(self, x: Array, t, **cond):
        inner = self.inner.schedule
        lam = self.schedule.log_snr(t)
        s_exact = inner.t_from_log_snr(lam)
        s = jnp.clip(s_exact, inner.t_min, inner.t_max)
        a_t, s_t = self.schedule.alpha(t), self.schedule.sigma(t)
        # alpha_in / alpha = sigma_in / sigma at equal SNR; the sum never divides 0 by 0
        scale = (inner.alpha(s) + inner.sigma(s)) / (a_t + s_t)
        x0, eps = self.inner(expand_to(scale, x) * x, s, **cond)
        a, sig = expand_to(a_t, x), expand_to(s_t, x)
        clipped = expand_to(s != s_exact, x)
        eps = jnp.where(clipped, (x - a * x0) / jnp.where(sig > 0, sig, 1.0), eps)
        return x0, eps


def denoiser_velocity(denoiser: BaseDenoiser, schedule: Schedule, x: Array, t, **cond) -> Array:
    """The probability-flow velocity ``dx/dt = alpha'(t) x0_hat + sigma'(t) eps_hat`` of
    ``denoiser`` in ``schedule`` (it is rescheduled when its own schedule differs)."""
    den = denoiser if denoiser.schedule == schedule else Rescheduled(denoiser, schedule)
    x0, eps = den(x, t, **cond)
    return from_x0_eps(x0, eps, x, t, schedule, "velocity")
