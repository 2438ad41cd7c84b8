"""Conversions between model parameterisations, through the canonical pair ``(x0, eps)``.

With ``x = alpha x0 + sigma eps`` (``alpha, sigma`` at time ``t``, derivatives ``a' , s'``):

=============  ===============================  ==========================================================
prediction     what the model outputs           back to ``(x0, eps)``
=============  ===============================  ==========================================================
``eps``        ``eps``                          ``x0 = (x - sigma eps) / alpha``
``x0``         ``x0``                           ``eps = (x - alpha x0) / sigma``
``v``          ``v = alpha eps - sigma x0``     ``x0 = (alpha x - sigma v) / n``, ``eps = (sigma x + alpha v) / n``,
                                                ``n = alpha^2 + sigma^2``
``score``      ``grad log p_t = -eps / sigma``  ``eps = -sigma score``, then as ``eps``
``velocity``   ``u = a' x0 + s' eps = dx/dt``   ``d = alpha s' - sigma a'``: ``x0 = (s' x - sigma u) / d``,
                                                ``eps = (alpha u - a' x) / d``
=============  ===============================  ==========================================================

``t`` is a scalar or per-example ``[batch]``; outputs have the shape of ``x``.
"""

from __future__ import annotations

import jax

from .schedules import Schedule, expand_to

Array = jax.Array
PREDICTIONS = ("eps", "x0", "v", "score", "velocity")

__all__ = ["PREDICTIONS", "check_prediction", "to_x0_eps", "from_x0_eps", "convert"]


def check_prediction(prediction: str, argument: str = "prediction") -> str:
    """Raises a clear error for an unknown prediction type."""
    if prediction not in PREDICTIONS:
        raise ValueError(
            f"{argument}={prediction!r} is not a known prediction type; use one of {PREDICTIONS}."
        )
    return prediction


def _coefs(schedule: Schedule, t, x: Array, *derivatives: bool):
    a, s = expand_to(schedule.alpha(t), x), expand_to(schedule.sigma(t), x)
    if not derivatives:
        return a, s
    return a, s, expand_to(schedule.d_alpha(t), x), expand_to(schedule.d_sigma(t), x)


def to_x0_eps(pred: Array, x: Array, t, schedule: Schedule, prediction: str) -> tuple[Array, Array]:
    """Turns a model output of type ``prediction`` at ``(x, t)`` into ``(x0_hat, eps_hat)``."""
    check_prediction(prediction)
    if prediction == "velocity":
        a, s, da, ds = _coefs(schedule, t, x, True)
        det = a * ds - s * da
        return (ds * x - s * pred) / det, (a * pred - da * x) / det
    a, s = _coefs(schedule, t, x)
    if prediction == "x0":
        return pred, (x - a * pred) / s
    if prediction == "v":
        n = a * a + s * s
        return (a * x - s * pred) / n, (s * x + a * pred) / n
    eps = -s * pred if prediction == "score" else pred
    return (x - s * eps) / a, eps


def from_x0_eps(x0: Array, eps: Array, x: Array, t, schedule: Schedule, prediction: str) -> Array:
    """The model output of type ``prediction`` that corresponds to ``(x0, eps)`` at ``(x, t)``."""
    check_prediction(prediction)
    if prediction == "x0":
        return x0
    if prediction == "eps":
        return eps
    if prediction == "velocity":
        _, _, da, ds = _coefs(schedule, t, x, True)
        return da * x0 + ds * eps
    a, s = _coefs(schedule, t, x)
    if prediction == "v":
        return a * eps - s * x0
    return -eps / s  # score


def convert(pred: Array, x: Array, t, schedule: Schedule, src: str, dst: str) -> Array:
    """Converts a prediction of type ``src`` into type ``dst`` (e.g. ``"v"`` to ``"eps"``)."""
    check_prediction(src, "src")
    check_prediction(dst, "dst")
    if src == dst:
        return pred
    return from_x0_eps(*to_x0_eps(pred, x, t, schedule, src), x, t, schedule, dst)
