"""Shared machinery of the guidance transformations: conditioning, batching, scales, intervals.

Every guided denoiser here evaluates a *positive* and a *negative* prediction pair
``(x0, eps)`` and combines them. For classifier-free guidance both come from one model, with the
user's conditioning and with a *null* conditioning, in one batched call; for the general
combinator they come from two denoisers. Guidance may be restricted to an interval of noise
levels ``sigma/alpha`` (Kynkaanniemi et al. 2024); outside it only the positive prediction is
evaluated, and with a scalar time (as inside ``jd.sample``) the negative evaluation is skipped for
real by ``lax.cond``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

from ..denoiser import BaseDenoiser
from ..schedules import Schedule, expand_to

Array = jax.Array
Pair = tuple[Array, Array]
Scale = float | Callable[[Array], Array]
NullCond = Mapping[str, Any] | Callable[[dict], dict]

__all__ = ["Guidance", "null_conditioning", "batched_pairs", "per_sample_dot", "switch_time"]


def null_conditioning(cond: dict, null_cond: NullCond | None) -> dict:
    """The unconditional keyword conditioning for ``cond``.

    ``null_cond`` is either a callable ``cond -> null cond`` or a mapping whose values replace
    the entries of ``cond`` under the same key, broadcast to their shapes (so ``{"y": 10}``
    turns every label into the null token 10; an embedding ``[D]`` fills ``[B, L, D]``). Keys of
    ``cond`` not in the mapping are shared by both branches; extra keys are added.
    """
    if null_cond is None:
        raise ValueError("null_cond is required: pass e.g. null_cond={'y': NULL_LABEL} or a "
                         "function cond -> unconditional cond.")
    if callable(null_cond):
        return dict(null_cond(dict(cond)))
    out = dict(cond)
    for k, v in null_cond.items():
        if k in cond and _is_array(cond[k]) and not isinstance(v, (dict, list, tuple)):
            ref = jnp.asarray(cond[k])
            out[k] = jnp.broadcast_to(jnp.asarray(v, dtype=ref.dtype), ref.shape)
        else:
            out[k] = v
    return out


def _is_array(v: Any) -> bool:
    return isinstance(v, (int, float, bool)) or hasattr(v, "shape")


def _batch_leaf(leaf: Any, batch: int) -> Array:
    leaf = jnp.asarray(leaf)
    if leaf.ndim >= 1 and leaf.shape[0] == batch:
        return leaf
    return jnp.broadcast_to(leaf, (batch,) + leaf.shape)


def batched_pairs(denoiser: BaseDenoiser, x: Array, t, cond: dict,
                  neg_cond: dict) -> tuple[Pair, Pair]:
    """``(pair(x, t, cond), pair(x, t, neg_cond))`` from ONE call on the batch ``[x; x]``.

    Every conditioning leaf is given a leading batch axis (broadcast if it has none) and the
    two conditionings are concatenated along it, ``[cond; neg_cond]``; a per-example time
    ``[B]`` is concatenated too. ``x`` is ``[B, ...]``.
    """
    if jnp.ndim(x) < 1:
        raise ValueError("batched guidance needs x of shape [batch, ...]; pass batched=False.")
    b = x.shape[0]
    if set(cond) != set(neg_cond):
        raise ValueError(f"the conditional and null conditioning must have the same keys for a "
                         f"batched call, got {sorted(cond)} and {sorted(neg_cond)}.")
    both = {}
    for k in cond:
        both[k] = jax.tree.map(lambda c, n: jnp.concatenate([_batch_leaf(c, b), _batch_leaf(n, b)]),
                               cond[k], neg_cond[k])
    t = jnp.asarray(t)
    t2 = jnp.concatenate([t, t]) if t.ndim == 1 else t
    x0, eps = denoiser(jnp.concatenate([x, x]), t2, **both)
    return (x0[:b], eps[:b]), (x0[b:], eps[b:])


def per_sample_dot(a: Array, b: Array) -> Array:
    """``<a_i, b_i>`` over the non-batch axes of ``[batch, ...]`` arrays, kept broadcastable
    (an unbatched ``[D]`` array is one sample)."""
    axes = tuple(range(1, a.ndim)) if a.ndim >= 2 else tuple(range(a.ndim))
    return jnp.sum(a * b, axis=axes, keepdims=True)


def eval_scale(scale: Scale, t, x: Array) -> Array:
    """The guidance scale at ``t`` (a number or ``scale(t)``), broadcastable against ``x``."""
    w = scale(t) if callable(scale) else scale
    return expand_to(jnp.asarray(w, dtype=jnp.result_type(x.dtype, jnp.float32)), x)


def check_interval(interval) -> tuple[float, float] | None:
    if interval is None:
        return None
    try:
        lo, hi = (float(v) for v in interval)
    except (TypeError, ValueError):
        raise ValueError(f"interval={interval!r} must be a pair (lo, hi) of noise levels "
                         "sigma/alpha, or None.") from None
    if not 0.0 <= lo <= hi:
        raise ValueError(f"interval={interval!r} needs 0 <= lo <= hi (noise levels sigma/alpha; "
                         "use math.inf for no upper bound).")
    return lo, hi


def switch_time(grid, n_guided: int) -> float:
    """A time between ``grid[n_guided - 1]`` and ``grid[n_guided]``: with
    ``guided_until(schedule, switch_time(grid, k))`` the first ``k`` steps of a DDIM/multistep
    sampler on ``grid`` are guided and the rest conditional only."""
    g = [float(v) for v in jnp.asarray(grid)]
    if not 1 <= n_guided < len(g) - 1:
        raise ValueError(f"n_guided={n_guided} must be in [1, {len(g) - 2}] for a grid of "
                         f"{len(g) - 1} steps.")
    return 0.5 * (g[n_guided - 1] + g[n_guided])


def guided_until(schedule: Schedule, t_switch: float) -> tuple[float, float]:
    """The interval of noise levels ``(sigma/alpha at t_switch, inf)``: guidance while
    ``t >= t_switch`` (sampling runs from large to small ``t``), conditional only after."""
    return float(schedule.sigma_over_alpha(jnp.asarray(float(t_switch)))), math.inf


class Guidance(BaseDenoiser):
    """Base of the two-branch guidance denoisers.

    Subclasses implement ``pairs(x, t, cond) -> (positive, negative)``, ``positive(x, t, cond)``
    and ``combine(state, pos, neg, x, t) -> (pair, state)``; optional ``init_state``.
    ``interval = (lo, hi)`` restricts guidance to noise levels ``lo <= sigma/alpha <= hi``;
    outside, the denoiser returns the positive pair alone and (for a scalar ``t``) skips the
    negative evaluation with ``lax.cond``. Under ``jax.vmap`` over ``t`` the predicate is
    batched and ``lax.cond`` runs both branches (no saving, same result).
    """

    inner: BaseDenoiser
    interval: tuple[float, float] | None = None

    @property
    def schedule(self) -> Schedule:  # type: ignore[override]
        return self.inner.schedule

    # --- to implement ----------------------------------------------------------------------
    def pairs(self, x: Array, t, cond: dict) -> tuple[Pair, Pair]:
        raise NotImplementedError

    def positive(self, x: Array, t, cond: dict) -> Pair:
        raise NotImplementedError

    def combine(self, state: Any, pos: Pair, neg: Pair, x: Array, t) -> tuple[Pair, Any]:
        raise NotImplementedError

    # --- shared ------------------------------------------------------------------------------
    def _check_stateless(self, x: Array, *dens: BaseDenoiser) -> None:
        for d in dens:
            if jax.tree.leaves(d.init_state(x)):
                raise ValueError(f"{type(self).__name__} wraps stateless denoisers; "
                                 f"{type(d).__name__} carries state. Apply the stateful "
                                 "transformation outside the guidance instead.")

    def init_state(self, x: Array) -> Any:
        self._check_stateless(x, self.inner)
        return ()

    def active(self, t) -> Array:
        """Whether guidance is on at ``t`` (scalar or ``[batch]``)."""
        lo, hi = self.interval  # type: ignore[misc]
        s = self.schedule.sigma_over_alpha(t)
        return (s >= lo) & (s <= hi)

    def _guided(self, state, x, t, cond):
        pos, neg = self.pairs(x, t, cond)
        (x0, eps), state = self.combine(state, pos, neg, x, t)
        return (x0.astype(pos[0].dtype), eps.astype(pos[1].dtype)), state

    def apply(self, state: Any, x: Array, t, **cond) -> tuple[Pair, Any]:
        if self.interval is None:
            return self._guided(state, x, t, cond)
        on = self.active(t)
        if jnp.ndim(t) == 0:
            return jax.lax.cond(on, lambda s: self._guided(s, x, t, cond),
                                lambda s: (self.positive(x, t, cond), s), state)
        # Per-example times: both branches are computed and selected per example.
        (g0, ge), new_state = self._guided(state, x, t, cond)
        p0, pe = self.positive(x, t, cond)
        m = expand_to(on, x)
        return (jnp.where(m, g0, p0), jnp.where(m, ge, pe)), new_state

    def __call__(self, x: Array, t, **cond) -> Pair:
        """Evaluation without carried state (a stateful guidance starts from a fresh state)."""
        return self.apply(self.init_state(x), x, t, **cond)[0]
