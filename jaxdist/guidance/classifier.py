"""Classifier guidance (Dhariwal & Nichol 2021) by ``jax.grad`` of any ``log p(y | x_t, t)``.

The guided score is ``grad log p_t(x) + w grad_x log p(y | x, t)``; with ``score = -eps/sigma``
and ``g = grad_x log p(y | x, t)``:

``eps_g = eps - w sigma g``,  ``x0_g = x0 + w (sigma^2 / alpha) g``

(a consistent pair: ``alpha x0_g + sigma eps_g = x``). ``w = 1`` samples ``p(x | y)`` exactly when
the classifier is the exact noisy posterior ``p_t(y | x_t)``.

Off-the-shelf classifiers trained on clean data (Ma et al. 2023, "Elucidating the design space
of classifier-guided diffusion generation", EluCD): evaluate the classifier on the denoised
``x0_hat`` (``input="x0"``; the gradient is taken with respect to ``x0_hat`` with the denoiser
held fixed, as in their reference code) and calibrate it with :func:`calibrated_log_prob`,
``log p~(y | x) = tau_j l_y(x) - logsumexp_k(tau_m l_k(x))`` (joint temperature ``tau_j`` and
marginal temperature ``tau_m``; both 1 give ``log_softmax``).
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from ..denoiser import BaseDenoiser
from ..schedules import expand_to
from ._common import Scale, eval_scale

Array = jax.Array

__all__ = ["ClassifierGuidance", "calibrated_log_prob"]


def calibrated_log_prob(logits_fn: Callable[[Array], Array], joint_temperature: float = 1.0,
                        marginal_temperature: float | None = None) -> Callable[..., Array]:
    """``log_prob(x, t, y) = tau_j l_y(x) - logsumexp(tau_m l(x))`` per example (EluCD).

    Args:
      logits_fn: ``x [B, ...] -> logits [B, K]`` (an off-the-shelf classifier; ``t`` unused).
      joint_temperature: ``tau_j`` on the selected logit.
      marginal_temperature: ``tau_m`` on the normaliser (default ``tau_j``: a tempered softmax).
    """
    tj = float(joint_temperature)
    tm = tj if marginal_temperature is None else float(marginal_temperature)
    if tj <= 0 or tm <= 0:
        raise ValueError(f"temperatures must be > 0, got joint={tj}, marginal={tm}.")

    def log_prob(x: Array, t, y: Array) -> Array:
        logits = logits_fn(x)
        y = jnp.broadcast_to(jnp.asarray(y), logits.shape[:-1])
        sel = jnp.take_along_axis(logits, y[..., None].astype(jnp.int32), axis=-1)[..., 0]
        return tj * sel - jax.nn.logsumexp(tm * logits, axis=-1)

    return log_prob


class ClassifierGuidance(BaseDenoiser):
    """``eps_g = eps - w sigma grad log p(y | x)``, ``x0_g = x0 + w sigma^2 / alpha grad``.

    Args:
      denoiser: the (usually unconditional) denoiser.
      log_prob_fn: ``log_prob_fn(z, t, **cond) -> [batch]`` log-probabilities of the labels in
        ``cond``; differentiated with ``jax.grad`` (summed over the batch: examples are
        independent).
      scale: ``w`` (number or ``w(t)``).
      input: ``"x_t"`` (a noise-aware classifier, ``z = x_t``) or ``"x0"`` (an off-the-shelf
        classifier at ``z = x0_hat``, gradient with respect to ``x0_hat``; EluCD).
      classifier_keys: conditioning keys consumed by the classifier only (not passed to the
        denoiser), e.g. ``("y",)`` for an unconditional denoiser.
    """

    def __init__(self, denoiser: BaseDenoiser, log_prob_fn: Callable[..., Array], scale: Scale, *,
                 input: str = "x_t", classifier_keys: Sequence[str] = ()):
        if input not in ("x_t", "x0"):
            raise ValueError(f"input={input!r} must be 'x_t' (noise-aware classifier) or 'x0' "
                             "(off-the-shelf classifier on the denoised prediction).")
        if not callable(log_prob_fn):
            raise TypeError("log_prob_fn must be callable: (x, t, **cond) -> [batch] log p(y|x).")
        self.inner, self.log_prob_fn, self.scale = denoiser, log_prob_fn, scale
        self.input, self.classifier_keys = input, tuple(classifier_keys)

    @property
    def schedule(self):  # type: ignore[override]
        return self.inner.schedule

    def init_state(self, x):
        return self.inner.init_state(x)

    def _guide(self, pair, x, t, cond):
        x0, eps = pair
        z = x if self.input == "x_t" else jax.lax.stop_gradient(x0)
        g = jax.grad(lambda v: jnp.sum(self.log_prob_fn(v, t, **cond)))(z)
        w = eval_scale(self.scale, t, x)
        a, s = expand_to(self.schedule.alpha(t), x), expand_to(self.schedule.sigma(t), x)
        return x0 + w * (s * s / a) * g, eps - w * s * g

    def _split(self, cond):
        return {k: v for k, v in cond.items() if k not in self.classifier_keys}

    def __call__(self, x, t, **cond):
        return self._guide(self.inner(x, t, **self._split(cond)), x, t, cond)

    def apply(self, state, x, t, **cond):
        pair, state = self.inner.apply(state, x, t, **self._split(cond))
        return self._guide(pair, x, t, cond), state
