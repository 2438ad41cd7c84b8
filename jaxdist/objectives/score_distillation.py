r"""Score distillation: SDS, and the score-difference gradient shared by VSD, DMD and f-distill.

For a sample ``x`` (differentiable in parameters ``theta``), a time ``t``, ``eps ~ N(0, I)`` and
``x_t = alpha_t x + sigma_t eps``, every method here moves ``x`` along

    ``g = w(t) h(r(x_t)) (x0_fake(x_t) - x0_real(x_t))``

through the surrogate ``l = mean_d 1/2 (x - stopgrad(x - g))^2`` (gradient ``E[g dx/dtheta] / D``).
``x0_real`` is a frozen teacher denoiser; ``x0_fake`` is a score model of the samples' own
distribution (VSD, DMD) or the sample itself (SDS: ``x0_fake = x``, so ``eps_fake`` is the noise
that was added). In score terms ``x0_fake - x0_real = sigma^2 / alpha (s_fake - s_real)``, so:

* ``weighting="kl"``: ``w = alpha^2 / sigma^2``, the exact gradient at time ``t`` of the
  divergence ``D(p_t || q_t)`` between the noised teacher and sample distributions;
* ``weighting="dmd"``: ``w = 1 / mean_d |x - x0_real|`` per example (DMD, DMD2's normaliser);
* ``weighting="sds"``: ``w = alpha sigma``, DreamFusion's ``w(t) (eps_hat - eps)`` with
  ``w(t) = sigma^2``;
* a callable ``weighting(t, x, x0_real) -> [B]``.

``h`` is f-distill's weight (Xu et al. 2025) of the density ratio ``r = p_t / q_t`` at ``x_t``:
for ``D_f(p || q) = E_q[f(p / q)]`` the gradient is ``E[r^2 f''(r) (s_q - s_p) dx_t/dtheta]``, so
``h = r^2 f''(r)``: reverse KL (``h = 1``, DMD/VSD), forward KL (``h = r``), Jensen-Shannon
(``h = r / (2 (1 + r))``), squared Hellinger (``h = sqrt(r) / 2``). The constant factors are
exact here (the tests compare with the closed-form gradients); f-distill's reference
implementation clips ``r`` and normalises ``h`` by its batch mean, which drops them.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from ..denoiser import BaseDenoiser
from ..schedules import Schedule, expand_to
from .dsm import TimeSampler, mean_over_features

Array = jax.Array

__all__ = ["FDivergence", "F_DIVERGENCES", "get_divergence", "distillation_weight",
           "score_difference", "surrogate", "f_weight", "karras_time", "make_sds_loss"]


class FDivergence(NamedTuple):
    """``f`` and ``h = r^2 f''(r)``, both written as functions of ``log r``."""

    name: str
    f: Callable[[Array], Array]
    h: Callable[[Array], Array]


F_DIVERGENCES: dict[str, FDivergence] = {
    "reverse-kl": FDivergence("reverse-kl", lambda l: -l, lambda l: jnp.ones_like(l)),
    "forward-kl": FDivergence("forward-kl", lambda l: jnp.exp(l) * l, jnp.exp),
    "js": FDivergence(
        "js",
        lambda l: 0.5 * (jnp.exp(l) * l - (1.0 + jnp.exp(l)) * (jnp.logaddexp(0.0, l)
                                                              - jnp.log(2.0))),
        lambda l: 0.5 * jax.nn.sigmoid(l)),
    "squared-hellinger": FDivergence("squared-hellinger", lambda l: (jnp.exp(0.5 * l) - 1.0) ** 2,
                                     lambda l: 0.5 * jnp.exp(0.5 * l)),
}
_ALIASES = {"rkl": "reverse-kl", "kl": "forward-kl", "fkl": "forward-kl",
            "jensen-shannon": "js", "hellinger": "squared-hellinger", "sh": "squared-hellinger"}


def get_divergence(divergence: str | FDivergence) -> FDivergence:
    """An :class:`FDivergence` by name (or alias: ``rkl``, ``kl``/``fkl``, ``sh``, ...)."""
    if isinstance(divergence, FDivergence):
        return divergence
    name = _ALIASES.get(divergence, divergence)
    if name not in F_DIVERGENCES:
        raise ValueError(f"divergence={divergence!r} is not known; use one of "
                         f"{sorted(F_DIVERGENCES)} (or an FDivergence(name, f, h)).")
    return F_DIVERGENCES[name]


def f_weight(divergence: FDivergence, log_ratio: Array, *, ratio_clip: tuple[float, float] | None
             = None, normalize: bool = False) -> Array:
    """``h(r)`` at ``log_ratio [B]``, optionally with ``r`` clipped to ``ratio_clip`` and ``h``
    divided by its batch mean (f-distill's reference settings: ``(0.1, 20)``, normalised)."""
    log_ratio = jax.lax.stop_gradient(log_ratio)
    if ratio_clip is not None:
        lo, hi = ratio_clip
        log_ratio = jnp.clip(log_ratio, jnp.log(lo), jnp.log(hi))
    h = divergence.h(log_ratio)
    if normalize:
        h = h / (jnp.mean(h) + 1e-6)
    return h


def distillation_weight(weighting: str | Callable, schedule: Schedule, t: Array, x: Array,
                        x0_real: Array) -> Array:
    """``w [B]``: the per-example factor on ``x0_fake - x0_real`` (see the module docstring)."""
    if callable(weighting):
        return weighting(t, x, x0_real)
    a, s = schedule.alpha(t), schedule.sigma(t)
    if weighting == "kl":
        return jnp.exp(schedule.log_snr(t))
    if weighting == "dmd":
        return 1.0 / (mean_over_features(jnp.abs(x - x0_real)) + 1e-6)
    if weighting == "sds":
        return a * s
    raise ValueError(f"weighting={weighting!r} must be 'kl', 'dmd', 'sds' or a callable "
                     "(t, x, x0_real) -> [B].")


def score_difference(x: Array, x_t: Array, t: Array, real: BaseDenoiser,
                     fake: BaseDenoiser | None, weighting: str | Callable = "dmd",
                     h: Array | None = None, **cond) -> tuple[Array, dict]:
    """``g = w h (x0_fake - x0_real)`` at ``x_t`` (no gradient), and diagnostics.

    ``fake=None`` is SDS (``x0_fake = x``). ``h [B]`` is the f-divergence weight (default 1).
    """
    x_t = jax.lax.stop_gradient(x_t)
    x0_real, _ = real(x_t, t, **cond)
    x0_fake = x if fake is None else fake(x_t, t, **cond)[0]
    w = distillation_weight(weighting, real.schedule, t, jax.lax.stop_gradient(x), x0_real)
    if h is not None:
        w = w * h
    g = jax.lax.stop_gradient(expand_to(w, x) * (x0_fake - x0_real))
    return g, {"weights": w, "grad_rms": jnp.sqrt(jnp.mean(g * g))}


def surrogate(x: Array, g: Array) -> Array:
    """Per-example ``mean_d 1/2 (x - stopgrad(x - g))^2``: its gradient in ``x`` is ``g / D``."""
    return mean_over_features(0.5 * (x - jax.lax.stop_gradient(x - g)) ** 2)


def karras_time(schedule: Schedule, *, rho: float = 7.0, u_min: float = 0.0, u_max: float = 1.0,
                t_max: float | None = None) -> TimeSampler:
    """Times whose noise level ``s = sigma/alpha`` is a Karras level at a uniform position
    ``u ~ U[u_min, u_max]``: ``s = (s_min^(1/rho) + u (s_max^(1/rho) - s_min^(1/rho)))^rho``
    between the schedule's ``t_min`` and ``t_max`` (DMD2 draws uniform indices of a 1000-level
    Karras grid; DMD uses ``u`` in ``[0.02, 0.98]``). ``t_max`` overrides the top time (for
    schedules whose ``t_max`` is pure noise, e.g. rectified flow, 0.999 is used)."""
    if not 0.0 <= u_min < u_max <= 1.0:
        raise ValueError(f"need 0 <= u_min < u_max <= 1, got {u_min}, {u_max}.")
    top = schedule.t_max if t_max is None else t_max
    with jax.ensure_compile_time_eval():  # constants, also when built inside jit
        s_hi = float(schedule.sigma_over_alpha(top))
        if not math.isfinite(s_hi):
            s_hi = float(schedule.sigma_over_alpha(0.999 * schedule.t_max))
        s_lo = float(schedule.sigma_over_alpha(schedule.t_min))
    lo, hi = s_lo ** (1.0 / rho), s_hi ** (1.0 / rho)

    def sample(key, n, dtype):
        u = jax.random.uniform(key, (n,), dtype, u_min, u_max)
        s = (lo + u * (hi - lo)) ** rho
        return schedule.t_from_log_snr(-2.0 * jnp.log(s)).astype(dtype)

    return sample


def make_sds_loss(render_fn: Callable[[Any, Array], Array], teacher: BaseDenoiser, *,
                  time_sampler: TimeSampler | None = None, weighting: str | Callable = "sds"
                  ) -> Callable[[Any, Array, dict], tuple[Array, dict]]:
    """Score distillation sampling ``loss(theta, key, batch)`` for a sample
    ``x = render_fn(theta, key) [B, ...]``: gradient ``E[w(t) (eps_hat(x_t, t) - eps) dx/dtheta]
    / D`` (DreamFusion; ``weighting="sds"`` is ``w = sigma^2``). ``batch`` may hold ``"cond"``.
    Times default to :func:`karras_time` on ``[0.02, 0.98]``."""
    sampler = time_sampler or karras_time(teacher.schedule, u_min=0.02, u_max=0.98)

    def loss(theta, key, batch):
        k_x, k_t, k_e = jax.random.split(key, 3)
        x = render_fn(theta, k_x)
        t = sampler(k_t, x.shape[0], x.dtype)
        x_t = teacher.schedule.marginal(x, jax.random.normal(k_e, x.shape, x.dtype), t)
        g, info = score_difference(x, x_t, t, teacher, None, weighting,
                                   **((batch or {}).get("cond") or {}))
        per_example = surrogate(x, g)
        return jnp.mean(per_example), {"per_example": per_example, "t": t, **info}

    return loss
