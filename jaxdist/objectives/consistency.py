r"""Consistency models: improved consistency training (iCT) and consistency distillation (CD).

The consistency function (Song et al. 2023) in the EDM space ``x = x0 + s z`` (``s = sigma/alpha``):
``f(x, s) = c_skip(s) x + c_out(s) F(c_in(s) x, log(s) / 4)`` with
``c_skip = sd^2 / ((s - s_min)^2 + sd^2)``, ``c_out = (s - s_min) sd / sqrt(s^2 + sd^2)``,
``c_in = 1 / sqrt(s^2 + sd^2)``, so ``f(x, s_min) = x`` exactly.

**iCT** (Song & Dhariwal 2024): noise levels on a Karras grid
``s_i = (s_min^(1/rho) + i/(N-1) (s_max^(1/rho) - s_min^(1/rho)))^rho``, ``i = 0..N-1``; the
curriculum ``N(k) = min(s0 2^floor(k / K'), s1) + 1`` with ``K' = floor(K / (log2 floor(s1/s0) + 1))``;
the index ``i`` drawn with ``p(i) ∝ erf((log s_{i+1} - P_mean) / (sqrt 2 P_std)) - erf((log s_i -
P_mean) / (sqrt 2 P_std))``; loss ``lambda(s_i) d(f_theta(x0 + s_{i+1} z, s_{i+1}),
f_theta-(x0 + s_i z, s_i))`` with ``lambda = 1 / (s_{i+1} - s_i)``, the pseudo-Huber metric
``d(a, b) = sqrt(||a - b||^2 + c^2) - c``, ``c = 0.00054 sqrt(dim)``, and ``theta- = stopgrad(theta)``
(no EMA). The grid lives in a fixed array of ``s1 + 1`` entries and ``N(k)`` is a traced integer, so a
jitted step never recompiles as the curriculum advances.

**CD**: ``x_{n+1} = x0 + s_{n+1} z`` and ``x^_n`` = one step (or ``teacher_substeps``) of any
jaxdist ``solver`` on the teacher's probability-flow ODE from ``s_{n+1}`` to ``s_n`` (in the
teacher's own schedule), loss ``d(f_theta(x_{n+1}, s_{n+1}), f_theta-(x^_n, s_n))``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from jax.scipy.special import erf

from ..denoiser import BaseDenoiser, ConsistencyDenoiser, consistency_fn
from ..schedules import EDM, Schedule, expand_to
from .dsm import ApplyFn, mean_over_features

Array = jax.Array

__all__ = ["consistency_fn", "ConsistencyDenoiser", "consistency_sample", "karras_sigmas",
           "ict_num_scales", "ict_index_logits", "pseudo_huber", "make_ict_loss", "make_cd_loss"]


def consistency_sample(apply_fn: ApplyFn, params: Any, key: Array, shape: Sequence[int],
                       steps: int | Sequence[float] = 1, *, schedule: Schedule | None = None,
                       rho: float = 7.0, sigma_data: float | None = None,
                       cond: dict | None = None) -> Array:
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1) of ``shape = [B, ...]``.

    ``x = s_0 z``, ``x0 = f(x, s_0)``; for each further level ``s_k``:
    ``x = x0 + sqrt(s_k^2 - s_min^2) z``, ``x0 = f(x, s_k)``. ``steps`` is the decreasing list of
    levels ``s_k`` (first = ``sigma_max``), or their number: the first ``steps`` points of a Karras
    grid with ``steps + 1`` points (``steps = 1``: one network evaluation).
    """
    schedule = EDM() if schedule is None else schedule
    den = ConsistencyDenoiser(apply_fn, params, schedule, sigma_data)
    s_min, s_max = den.sigma_min, float(schedule.sigma_over_alpha(schedule.t_max))
    if isinstance(steps, int):
        if steps < 1:
            raise ValueError(f"steps={steps} must be a positive integer or a list of sigmas.")
        i = jnp.arange(steps + 1) / steps
        levels = (s_max ** (1 / rho) + i * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
        levels = levels[:-1]
    else:
        levels = jnp.asarray(steps)
    cond = cond or {}
    f = lambda x, s: consistency_fn(apply_fn, params, x, s, sigma_min=s_min,  # noqa: E731
                                    sigma_data=den.sigma_data, **cond)
    keys = jax.random.split(key, levels.shape[0])
    x0 = f(levels[0] * jax.random.normal(keys[0], tuple(shape)), levels[0])
    for k in range(1, levels.shape[0]):
        z = jax.random.normal(keys[k], tuple(shape), x0.dtype)
        x0 = f(x0 + jnp.sqrt(levels[k] ** 2 - s_min**2) * z, levels[k])
    return x0


def karras_sigmas(n: Array, size: int, *, sigma_min: float = 0.002, sigma_max: float = 80.0,
                  rho: float = 7.0, dtype: Any = None) -> Array:
    """Increasing Karras levels ``s_0 = sigma_min .. s_{n-1} = sigma_max`` in a fixed ``[size]``
    array (entries past ``n - 1`` repeat ``sigma_max``); ``n`` may be traced."""
    i = jnp.arange(size, dtype=jnp.result_type(float) if dtype is None else dtype)
    frac = jnp.minimum(i / jnp.maximum(n - 1, 1), 1.0)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (lo + frac * (hi - lo)) ** rho


def ict_num_scales(step: Array, total_steps: int, s0: int = 10, s1: int = 1280) -> Array:
    """iCT's curriculum ``N(k) = min(s0 2^floor(k/K'), s1) + 1`` (int32; ``step`` may be traced)."""
    k_prime = max(total_steps // (int(math.log2(s1 // s0)) + 1), 1)
    doublings = jnp.minimum(jnp.asarray(step) // k_prime, 30)
    return (jnp.minimum(s0 * 2 ** doublings, s1) + 1).astype(jnp.int32)


def ict_index_logits(sigmas: Array, n: Array, p_mean: float = -1.1, p_std: float = 2.0) -> Array:
    """Log-probabilities ``[size - 1]`` of the interval ``i`` (valid for ``i < n - 1``)."""
    cdf = erf((jnp.log(sigmas) - p_mean) / (math.sqrt(2.0) * p_std))
    mass = cdf[1:] - cdf[:-1]
    valid = jnp.arange(mass.shape[0]) < n - 1
    return jnp.where(valid & (mass > 0), jnp.log(jnp.where(mass > 0, mass, 1.0)), -jnp.inf)


def pseudo_huber(a: Array, b: Array, c: float | None = None) -> Array:
    """``sqrt(||a - b||^2 + c^2) - c`` per example (``c = 0.00054 sqrt(dim)`` by default)."""
    d = (a - b).reshape(a.shape[0], -1)
    c = 0.00054 * math.sqrt(d.shape[1]) if c is None else c
    return jnp.sqrt(jnp.sum(d * d, axis=1) + c * c) - c


def _metric(name: str) -> Callable[[Array, Array], Array]:
    if name == "pseudo-huber":
        return pseudo_huber
    if name == "l2":
        return lambda a, b: mean_over_features((a - b) ** 2)
    raise ValueError(f"metric={name!r} must be 'pseudo-huber' or 'l2'.")


def _target_params(params: Any, batch: dict) -> Any:
    return jax.lax.stop_gradient(batch.get("ema_params", params))


def make_ict_loss(apply_fn: ApplyFn, *, total_steps: int, s0: int = 10, s1: int = 1280,
                  sigma_min: float = 0.002, sigma_max: float = 80.0, sigma_data: float = 0.5,
                  rho: float = 7.0, p_mean: float = -1.1, p_std: float = 2.0,
                  metric: str = "pseudo-huber") -> Callable[[Any, Array, dict], tuple[Array, dict]]:
    """Improved consistency training ``loss(params, key, batch)``.

    ``batch = {"x": [B, ...], "step": int scalar}`` (``step`` drives the curriculum; default 0);
    optional ``batch["ema_params"]`` replaces ``stopgrad(params)`` as the target network (the
    original CT; iCT uses none). ``aux``: ``per_example``, ``weights`` (``1/(s_{i+1}-s_i)``),
    ``sigma`` (``s_{i+1}``), ``num_scales``.
    """
    if total_steps < 1 or not 1 <= s0 <= s1:
        raise ValueError(f"need total_steps >= 1 and 1 <= s0 <= s1, got total_steps={total_steps}, "
                         f"s0={s0}, s1={s1}.")
    dist = _metric(metric)

    def loss(params, key, batch):
        x0 = batch["x"]
        n_scales = ict_num_scales(batch.get("step", 0), total_steps, s0, s1)
        sig = karras_sigmas(n_scales, s1 + 1, sigma_min=sigma_min, sigma_max=sigma_max,
                            rho=rho, dtype=x0.dtype)
        k_i, k_z = jax.random.split(key)
        logits = ict_index_logits(sig, n_scales, p_mean, p_std)
        i = jax.random.categorical(k_i, logits, shape=x0.shape[:1])
        s_lo, s_hi = sig[i], sig[i + 1]
        z = jax.random.normal(k_z, x0.shape, x0.dtype)
        f = lambda p, x, s: consistency_fn(apply_fn, p, x, s, sigma_min=sigma_min,  # noqa: E731
                                           sigma_data=sigma_data, **(batch.get("cond") or {}))
        pred = f(params, x0 + expand_to(s_hi, x0) * z, s_hi)
        target = f(_target_params(params, batch), x0 + expand_to(s_lo, x0) * z, s_lo)
        weights = 1.0 / (s_hi - s_lo)
        per_example = weights * dist(pred, jax.lax.stop_gradient(target))
        return jnp.mean(per_example), {"per_example": per_example, "weights": weights,
                                       "sigma": s_hi, "num_scales": n_scales}

    return loss


def make_cd_loss(apply_fn: ApplyFn, *, teacher: BaseDenoiser | Callable[[Any], BaseDenoiser],
                 solver: Any = None, num_scales: int = 18, teacher_substeps: int = 1,
                 sigma_min: float = 0.002, sigma_max: float = 80.0, sigma_data: float = 0.5,
                 rho: float = 7.0, metric: str = "l2"
                 ) -> Callable[[Any, Array, dict], tuple[Array, dict]]:
    """Consistency distillation ``loss(params, key, batch)`` from a teacher sampled with ``solver``.

    ``teacher`` is a denoiser (any schedule), or a function ``teacher_params -> denoiser`` used with
    ``batch["teacher_params"]``. ``solver`` is any deterministic jaxdist solver (default DDIM); the
    teacher step from ``s_{n+1}`` to ``s_n`` uses ``teacher_substeps`` steps uniform in log-SNR of
    the teacher's schedule. ``batch["ema_params"]`` (optional) is the target network.
    """
    from ..sample import sample
    from ..solvers import DDIM

    solver = DDIM() if solver is None else solver
    if num_scales < 2 or teacher_substeps < 1:
        raise ValueError(f"need num_scales >= 2 and teacher_substeps >= 1, got {num_scales}, "
                         f"{teacher_substeps}.")
    dist = _metric(metric)

    def teacher_step(den: BaseDenoiser, x: Array, s_from: Array, s_to: Array) -> Array:
        sch = den.schedule
        lam = jnp.linspace(-2.0 * jnp.log(s_from), -2.0 * jnp.log(s_to), teacher_substeps + 1)
        grid = sch.t_from_log_snr(lam)

        def one(xi, g):
            y = sample(solver, den, (sch.alpha(g[0]) * xi)[None], g).x[0]
            return y / sch.alpha(g[-1])

        return jax.vmap(one)(x, grid.T)

    def loss(params, key, batch):
        x0 = batch["x"]
        den = teacher(batch["teacher_params"]) if not isinstance(teacher, BaseDenoiser) else teacher
        sig = karras_sigmas(num_scales, num_scales, sigma_min=sigma_min, sigma_max=sigma_max,
                            rho=rho, dtype=x0.dtype)
        k_i, k_z = jax.random.split(key)
        i = jax.random.randint(k_i, x0.shape[:1], 0, num_scales - 1)
        s_lo, s_hi = sig[i], sig[i + 1]
        x_hi = x0 + expand_to(s_hi, x0) * jax.random.normal(k_z, x0.shape, x0.dtype)
        x_lo = jax.lax.stop_gradient(teacher_step(den, x_hi, s_hi, s_lo))
        f = lambda p, x, s: consistency_fn(apply_fn, p, x, s, sigma_min=sigma_min,  # noqa: E731
                                           sigma_data=sigma_data, **(batch.get("cond") or {}))
        pred = f(params, x_hi, s_hi)
        target = jax.lax.stop_gradient(f(_target_params(params, batch), x_lo, s_lo))
        per_example = dist(pred, target)
        return jnp.mean(per_example), {"per_example": per_example,
                                       "weights": jnp.ones_like(s_hi), "sigma": s_hi}

    return loss
