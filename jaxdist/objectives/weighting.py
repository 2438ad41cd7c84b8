r"""Loss weightings, each defined once on the x0-MSE scale as a function of the log-SNR.

A weighting is ``w(lambda)`` such that the per-example loss is ``w(lambda) ||x0_hat - x0||^2``
whatever the network predicts. A network predicting ``P`` (eps, x0, v, score, velocity) is trained
on ``(w / c_P^2) ||P_hat - P||^2`` where ``c_P`` is the exact factor between the two errors at fixed
``(x_t, t)``: ``P_hat - P = c_P (x0_hat - x0)``, with

======================  ==========================================
prediction              ``c_P^2``
======================  ==========================================
``x0``                  ``1``
``eps``                 ``alpha^2 / sigma^2 = exp(lambda)``
``v``                   ``(alpha^2 + sigma^2)^2 / sigma^2`` (VP: ``1 + exp(lambda)``)
``score``               ``alpha^2 / sigma^4``
``velocity``            ``(alpha' sigma - sigma' alpha)^2 / sigma^2``
======================  ==========================================

So a weighting means the same thing for every parameterisation (the diffusers bug class where
min-SNR was wrong for v-prediction cannot happen). The weightings:

* ``uniform``: ``w = 1`` (plain x0-MSE);
* ``snr``: ``w = exp(lambda)`` (plain eps-MSE, DDPM's "simple" loss);
* ``min_snr(gamma)``: ``w = min(exp(lambda), gamma)`` (Hang et al. 2023);
* ``likelihood``: ``w = exp(lambda) g^2 / sigma^2 = exp(lambda) (-d lambda / dt)``
  (score-SDE likelihood weighting ``g^2 ||s_hat - s||^2``; with ``t`` uniform the loss is the
  continuous-time ELBO up to constants);
* ``edm(sigma_data)``: ``w = (s^2 + sd^2) / (s sd)^2`` with ``s = exp(-lambda / 2)`` (Karras);
* ``sigmoid(bias)``: ``w = exp(lambda) sigmoid(bias - lambda)`` (eps-scale ``sigmoid(b - lambda)``
  of Kingma & Gao 2023, without their time-density factor).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from ..predictions import check_prediction
from ..schedules import Schedule

Array = jax.Array

__all__ = ["Weighting", "uniform", "snr", "min_snr", "likelihood", "edm", "sigmoid",
           "get_weighting", "error_scale", "target_weight", "WEIGHTINGS"]


@dataclasses.dataclass(frozen=True)
class Weighting:
    """``w(lambda, neg_dlam_dt)`` on the x0-MSE scale (``neg_dlam_dt = -d lambda/dt`` is used by
    ``likelihood`` only)."""

    name: str
    fn: Callable[[Array, Array], Array]

    def __call__(self, lam: Array, neg_dlam_dt: Array | None = None) -> Array:
        if neg_dlam_dt is None:
            neg_dlam_dt = jnp.ones_like(lam)
        return self.fn(lam, neg_dlam_dt)


def uniform() -> Weighting:
    """``w = 1``: unweighted x0-MSE."""
    return Weighting("uniform", lambda lam, d: jnp.ones_like(lam))


def snr() -> Weighting:
    """``w = exp(lambda)``: unweighted eps-MSE."""
    return Weighting("snr", lambda lam, d: jnp.exp(lam))


def min_snr(gamma: float = 5.0) -> Weighting:
    """``w = min(exp(lambda), gamma)`` (Min-SNR-gamma)."""
    if not gamma > 0:
        raise ValueError(f"gamma={gamma} must be positive (5.0 in Hang et al. 2023).")
    return Weighting(f"min_snr({gamma:g})", lambda lam, d: jnp.minimum(jnp.exp(lam), gamma))


def likelihood() -> Weighting:
    """``w = exp(lambda) g^2 / sigma^2 = exp(lambda) (-d lambda/dt)``."""
    return Weighting("likelihood", lambda lam, d: jnp.exp(lam) * d)


def edm(sigma_data: float = 0.5) -> Weighting:
    """``w = (s^2 + sd^2) / (s sd)^2``, ``s = exp(-lambda/2)`` (EDM's ``lambda(sigma)``)."""
    sd2 = float(sigma_data) ** 2
    return Weighting(f"edm({sigma_data:g})",
                     lambda lam, d: (jnp.exp(-lam) + sd2) / (jnp.exp(-lam) * sd2))


def sigmoid(bias: float = 0.0) -> Weighting:
    """``w = exp(lambda) sigmoid(bias - lambda)`` (eps-scale ``sigmoid(bias - lambda)``)."""
    return Weighting(f"sigmoid({bias:g})",
                     lambda lam, d: jnp.exp(lam) * jax.nn.sigmoid(bias - lam))


WEIGHTINGS = {"uniform": uniform, "snr": snr, "min_snr": min_snr, "likelihood": likelihood,
              "edm": edm, "sigmoid": sigmoid}


def get_weighting(weighting: str | Weighting, **options) -> Weighting:
    """A :class:`Weighting` from its name (``options`` go to the factory) or itself."""
    if isinstance(weighting, Weighting):
        return weighting
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting={weighting!r} is not known; use one of {sorted(WEIGHTINGS)} "
                         "or a jaxdist.objectives.weighting.Weighting.")
    return WEIGHTINGS[weighting](**options)


def error_scale(prediction: str, schedule: Schedule, t: Array) -> Array:
    """``c_P^2``: ``||P_hat - P||^2 = c_P^2 ||x0_hat - x0||^2`` at time ``t`` (any shape)."""
    check_prediction(prediction)
    if prediction == "x0":
        return jnp.ones_like(jnp.asarray(t, dtype=jnp.result_type(t, jnp.float32)))
    a, s = schedule.alpha(t), schedule.sigma(t)
    if prediction == "eps":
        return jnp.exp(schedule.log_snr(t))
    if prediction == "v":
        return (a * a + s * s) ** 2 / (s * s)
    if prediction == "score":
        return a * a / s**4
    return (schedule.d_alpha(t) * s - schedule.d_sigma(t) * a) ** 2 / (s * s)  # velocity


def target_weight(weighting: Weighting, prediction: str, schedule: Schedule, t: Array
                  ) -> tuple[Array, Array]:
    """``(w, w / c_P^2)``: the x0-scale weight and the weight of ``||P_hat - P||^2``."""
    lam = schedule.log_snr(t)
    neg_dlam = -jax.jvp(schedule.log_snr, (t,), (jnp.ones_like(t),))[1]
    w = weighting(lam, neg_dlam)
    if prediction == "eps":  # w / exp(lambda), without overflow at large |lambda|
        return w, w * jnp.exp(-lam)
    return w, w / error_scale(prediction, schedule, t)
