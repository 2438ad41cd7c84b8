"""Classifier-free guidance and its successors as denoiser transformations.

Notation: ``(x0_c, eps_c)`` conditional, ``(x0_u, eps_u)`` unconditional pair at ``(x, t)``,
``w`` the guidance scale (``w = 1``: conditional, ``w = 0``: unconditional).

* :class:`CFG` (Ho & Salimans 2022): ``D = D_u + w (D_c - D_u)`` on both members of the pair.
  The combination is affine with weights summing to one and ``x = alpha x0 + sigma eps`` holds
  for both branches, so guiding ``eps`` and recomputing ``x0`` (or guiding ``x0``, ``v``, the
  score or the velocity) gives the same pair: the choice of space does not matter for CFG, and
  combining both members directly avoids dividing by ``alpha`` or ``sigma``.
* :class:`APG` (Sadat et al. 2024): on the data prediction, ``d = D_c - D_u``; momentum
  ``m <- d + beta m``, ``d = m``; norm threshold ``d <- d min(1, r / ||d||)``; split
  ``d_par = <d, D_c> D_c / ||D_c||^2``, ``d_perp = d - d_par``;
  ``D = D_c + (w - 1) (d_perp + eta d_par)``. ``eta = 1, beta = 0, r = inf`` is CFG.
* :class:`CFGPlusPlus` (Chung et al. 2024): guided data prediction with the *unconditional*
  noise, ``(x0_u + lam (x0_c - x0_u), eps_u)``, ``lam`` in ``[0, 1]``. DDIM's update
  ``alpha_next x0 + sigma_next eps`` is then CFG++; for DPM-Solver++ use :func:`cfgpp_solver`.
* :class:`Guided`: ``positive + w (positive - negative)`` over any two denoisers (autoguidance
  with a weaker model as the negative, perturbed-attention guidance with a perturbed model).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ..denoiser import BaseDenoiser
from ..schedules import expand_to
from ._common import (Guidance, NullCond, Scale, batched_pairs, check_interval, eval_scale,
                      null_conditioning, per_sample_dot)

Array = jax.Array

__all__ = ["CFG", "CFGPlusPlus", "APG", "Guided", "WithCond"]


def _check_denoiser(den: Any, name: str = "denoiser") -> None:
    if not (callable(den) and hasattr(den, "schedule")):
        raise TypeError(f"{name} must be a jd.Denoiser (or a transformation of one), got "
                        f"{type(den).__name__}.")


class _ClassifierFree(Guidance):
    """One model, conditional vs null conditioning (one batched call unless ``batched=False``)."""

    def __init__(self, denoiser: BaseDenoiser, scale: Scale, null_cond: NullCond, *,
                 batched: bool = True, interval=None):
        _check_denoiser(denoiser)
        if null_cond is None:
            raise ValueError("null_cond is required: e.g. null_cond={'y': NULL_LABEL} (values "
                             "replace the conditioning under the same key) or a function "
                             "cond -> unconditional cond.")
        self.inner, self.scale, self.null_cond = denoiser, scale, null_cond
        self.batched, self.interval = bool(batched), check_interval(interval)

    def pairs(self, x, t, cond):
        neg = null_conditioning(cond, self.null_cond)
        if self.batched:
            return batched_pairs(self.inner, x, t, cond, neg)
        return self.inner(x, t, **cond), self.inner(x, t, **neg)

    def positive(self, x, t, cond):
        return self.inner(x, t, **cond)


class CFG(_ClassifierFree):
    """Classifier-free guidance ``D = D_u + w (D_c - D_u)`` (both ``x0`` and ``eps``).

    Args:
      denoiser: the conditional model, called as ``denoiser(x, t, **cond)``.
      scale: ``w`` (number) or ``w(t)`` (scalar or ``[batch]``): a time-varying scale.
      null_cond: the unconditional conditioning (see :func:`null_conditioning`).
      batched: evaluate both branches in one call on ``[x; x]`` (default) or in two calls.
      interval: ``(lo, hi)``: guide only where ``lo <= sigma/alpha <= hi``; outside, return the
        conditional pair and skip the unconditional evaluation (``guided_until`` builds the
        interval of adaptive guidance).
    """

    def combine(self, state, pos, neg, x, t):
        w = eval_scale(self.scale, t, x)
        return tuple(u + w * (c - u) for c, u in zip(pos, neg)), state  # type: ignore[return-value]


class CFGPlusPlus(_ClassifierFree):
    """CFG++: ``(x0_u + lam (x0_c - x0_u), eps_u)`` (an intentionally *inconsistent* pair).

    With DDIM, ``x_next = alpha_next x0_g + sigma_next eps_u`` is the CFG++ update. With a
    data-prediction multistep solver wrap the solver in :func:`cfgpp_solver` (a plain
    DPM-Solver++ uses only ``x0`` and would give ordinary CFG). ``lam`` is usually in
    ``[0, 1]``; ``lam = 0`` is unconditional sampling.

    A CFG++ step jumps by ``O(sigma lam |eps_c - eps_u|)`` however small the step, so it has
    no ODE limit and cannot be inverted to vanishing error (measured: the DDIM round-trip error
    grows with the step count); invert guided data with :class:`CFG`, a regular guided ODE.
    """

    def combine(self, state, pos, neg, x, t):
        w = eval_scale(self.scale, t, x)
        return (neg[0] + w * (pos[0] - neg[0]), neg[1]), state


class APG(_ClassifierFree):
    """Adaptive projected guidance (Sadat et al. 2024); the momentum is carried across steps.

    ``denoiser``, ``scale``, ``null_cond``, ``batched`` and ``interval`` are as in :class:`CFG`.

    Args:
      eta: weight of the part of ``d = D_c - D_u`` parallel to ``D_c`` (paper default 0).
      norm_threshold: ``r``: ``d`` is rescaled to norm at most ``r`` per sample (None: off).
      momentum: ``beta`` of ``m <- d + beta m`` (negative, e.g. -0.5; 0: off). The buffer is the
        denoiser state, threaded by ``jd.sample`` and updated at every evaluation.
      space: ``"x0"`` (the paper) or ``"eps"``: the prediction the projection acts on; the other
        member of the pair is recomputed from ``x = alpha x0 + sigma eps``.

    Norms and projections are per sample over the non-batch axes of ``x [batch, ...]``, in at
    least float32.
    """

    def __init__(self, denoiser: BaseDenoiser, scale: Scale, null_cond: NullCond, *,
                 eta: float = 0.0, norm_threshold: float | None = None, momentum: float = 0.0,
                 space: str = "x0", batched: bool = True, interval=None):
        super().__init__(denoiser, scale, null_cond, batched=batched, interval=interval)
        if space not in ("x0", "eps"):
            raise ValueError(f"space={space!r} must be 'x0' (the paper) or 'eps'.")
        if norm_threshold is not None and not norm_threshold > 0:
            raise ValueError(f"norm_threshold={norm_threshold} must be > 0 (or None for no "
                             "threshold).")
        self.eta, self.momentum, self.space = float(eta), float(momentum), space
        self.norm_threshold = None if norm_threshold is None else float(norm_threshold)

    def init_state(self, x):
        super().init_state(x)
        return jnp.zeros(jnp.shape(x), jnp.result_type(x.dtype, jnp.float32))

    def combine(self, state, pos, neg, x, t):
        k = 0 if self.space == "x0" else 1
        dtype = state.dtype
        pc, pu = pos[k].astype(dtype), neg[k].astype(dtype)
        d = pc - pu
        if self.momentum != 0.0:
            d = d + self.momentum * state
            state = d
        if self.norm_threshold is not None:
            norm = jnp.sqrt(per_sample_dot(d, d))
            d = d * jnp.minimum(1.0, self.norm_threshold / jnp.maximum(norm, 1e-30))
        v = pc / jnp.maximum(jnp.sqrt(per_sample_dot(pc, pc)), 1e-30)
        d_par = per_sample_dot(d, v) * v
        w = eval_scale(self.scale, t, x)
        g = pc + (w - 1.0) * ((d - d_par) + self.eta * d_par)
        a, s = expand_to(self.schedule.alpha(t), x), expand_to(self.schedule.sigma(t), x)
        pair = (g, (x - a * g) / s) if k == 0 else ((x - s * g) / a, g)
        return pair, state


class WithCond(BaseDenoiser):
    """``denoiser`` with keyword conditioning fixed (overriding what the sampler passes):
    ``WithCond(den, y=NULL)`` is the unconditional branch of a class-conditional model."""

    def __init__(self, denoiser: BaseDenoiser, **fixed):
        _check_denoiser(denoiser)
        self.inner, self.fixed = denoiser, fixed

    @property
    def schedule(self):  # type: ignore[override]
        return self.inner.schedule

    def __call__(self, x, t, **cond):
        return self.inner(x, t, **{**cond, **self.fixed})

    def init_state(self, x):
        return self.inner.init_state(x)

    def apply(self, state, x, t, **cond):
        return self.inner.apply(state, x, t, **{**cond, **self.fixed})


class Guided(Guidance):
    """``D = D_pos + w (D_pos - D_neg)`` on both members of the pair, for any two denoisers.

    Autoguidance (Karras et al. 2024): ``negative`` a smaller / less trained version of the
    model, both conditional; perturbed-attention guidance (Ahn et al. 2024): ``negative`` the
    same network with perturbed self-attention. CFG with scale ``w_cfg`` is
    ``Guided(den, WithCond(den, y=NULL), w_cfg - 1)`` (in two calls instead of one).
    Both denoisers receive the sampler's conditioning; ``interval`` as in :class:`CFG`.
    """

    def __init__(self, positive: BaseDenoiser, negative: BaseDenoiser, scale: Scale, *,
                 interval=None):
        _check_denoiser(positive, "positive")
        _check_denoiser(negative, "negative")
        if positive.schedule != negative.schedule:
            raise ValueError("positive and negative must share a schedule (their pairs are "
                             f"combined at the same t), got {positive.schedule} and "
                             f"{negative.schedule}.")
        self.inner, self.negative, self.scale = positive, negative, scale
        self.interval = check_interval(interval)

    def init_state(self, x):
        self._check_stateless(x, self.inner, self.negative)
        return ()

    def pairs(self, x, t, cond):
        return self.inner(x, t, **cond), self.negative(x, t, **cond)

    def positive(self, x, t, cond):
        return self.inner(x, t, **cond)

    def combine(self, state, pos, neg, x, t):
        w = eval_scale(self.scale, t, x)
        return tuple(p + w * (p - n) for p, n in zip(pos, neg)), state  # type: ignore[return-value]

