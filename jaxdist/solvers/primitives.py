"""Shared primitives of the solvers: log-SNR clipping, phi functions, the exact first-order
exponential-integrator step, per-step order tables and the trace-time checks.

Every solver module imports these from here (no solver imports another solver's helpers).

* ``lambda = log(alpha / sigma)`` (half the log-SNR, :func:`half_log_snr`) is DPM-Solver's time
  variable; it is clipped to ``+-LAMBDA_CLIP / 2`` so that steps from pure noise
  (``lambda = -inf``) or to clean data (``lambda = +inf``) keep finite coefficients.
* ``phi_k(z)`` (:func:`phi_functions`): ``phi_1(z) = expm1(z) / z``,
  ``phi_(k+1)(z) = (phi_k(z) - 1/k!) / z``, with the Taylor series for ``|z| < 1`` where the
  recursion cancels.
* the first-order step (:func:`first_order_coefficients`) from ``s`` to ``u``:
  ``x_u = (sigma_u / sigma_s) x_s + (alpha_u - sigma_u alpha_s / sigma_s) x0_hat`` (data
  prediction) or ``x_u = (alpha_u / alpha_s) x_s + (sigma_u - alpha_u sigma_s / alpha_s) eps_hat``
  (noise prediction): exact for a constant model output, and finite from pure noise (data
  prediction) and to clean data.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..schedules import Schedule, expand_to

Array = jax.Array

__all__ = [
    "LAMBDA_CLIP", "clipped_log_snr", "hold_zero", "half_log_snr", "phi_functions", "dpm_phis",
    "first_order_coefficients", "output_in_space", "multistep_orders", "select_by_order",
    "check_order", "check_noise_start", "check_alpha_start", "concrete", "boundary_bound",
    "safe_sqrt", "cfgpp_renoise",
]

#: log-SNR values are clipped to +-LAMBDA_CLIP inside coefficient formulas only.
LAMBDA_CLIP = 40.0
_SERIES_TERMS = 16


def clipped_log_snr(schedule: Schedule, t: Array) -> Array:
    """``log(alpha^2 / sigma^2)(t)`` clipped to ``[-LAMBDA_CLIP, LAMBDA_CLIP]``.

    Differentiable everywhere (the double-``where`` trick): where the log-SNR is clipped (also
    where it is infinite, ``sigma = 0`` at ``t = 0`` or ``alpha = 0``) the value is the clip
    bound and the derivative is 0, without the ``0 * inf = nan`` that differentiating
    ``log(sigma)`` there would give; elsewhere the value is ``log_snr(t)`` unchanged.
    """
    t = jnp.asarray(t)
    raw = jax.lax.stop_gradient(schedule.log_snr(t))
    inside = jnp.abs(raw) < LAMBDA_CLIP
    t_safe = jnp.where(inside, t, 0.5 * (schedule.t_min + schedule.t_max))
    return jnp.where(inside, schedule.log_snr(t_safe), jnp.clip(raw, -LAMBDA_CLIP, LAMBDA_CLIP))


def hold_zero(grid: Array) -> Array:
    """``grid`` with a time ``t = 0`` held fixed under differentiation (same values).

    A step to clean data does not move with its end point, and for VP schedules the one-sided
    derivatives there are infinite (``sigma(t) ~ sqrt(t)``): the gradient with respect to a
    final ``0`` is defined as 0, so that ``d sample / d grid`` is finite for grids ending at 0.
    """
    grid = jnp.asarray(grid)
    return jnp.where(grid == 0, jax.lax.stop_gradient(grid), grid)


def half_log_snr(schedule: Schedule, t: Array) -> Array:
    """DPM-Solver's ``lambda = log(alpha / sigma)`` (half the log-SNR), clipped; step sizes are
    ``h = lambda_t - lambda_s``."""
    return 0.5 * clipped_log_snr(schedule, t)


def phi_functions(z: Array, k_max: int) -> list[Array]:
    """``[phi_1(z), .., phi_kmax(z)]``, ``phi_1 = expm1(z)/z``, ``phi_(k+1) = (phi_k - 1/k!)/z``.

    For ``|z| < 1`` the series ``phi_k(z) = sum_j z^j / (j + k)!`` (16 terms) replaces the
    recursion, which cancels catastrophically there (relative error ``~ eps / |z|^k``).
    """
    small = jnp.abs(z) < 1.0
    zs = jnp.where(small, z, 1.0)  # keeps both branches finite (and their gradients)
    zl = jnp.where(small, 1.0, z)
    out = []
    rec = jnp.expm1(zl) / zl
    for k in range(1, k_max + 1):
        series = sum(zs**j / float(math.factorial(j + k)) for j in range(_SERIES_TERMS))
        out.append(jnp.where(small, series, rec))
        rec = (rec - 1.0 / math.factorial(k)) / zl
    return out


def dpm_phis(prediction: str, schedule: Schedule, u: Array, h: Array) -> tuple[Array, Array]:
    """``(p2, p3)``: the higher-order terms of a DPM-Solver(++) step of size ``h`` to ``u`` are
    ``+ p2 D1 + p3 D2`` (``D1 ~ h m'``, ``D2 ~ h^2 m''/2`` of the model output ``m``).

    Data prediction: ``p2 = alpha_u h phi_2(-h)``, ``p3 = alpha_u h phi_3(-h)``; noise
    prediction: ``p2 = -sigma_u h phi_2(h)``, ``p3 = -sigma_u h phi_3(h)`` (in DPM-Solver's
    notation ``h phi_2 = expm1(-+h)/h +- 1`` and ``h phi_3 = (that)/h - 1/2``).
    """
    if prediction == "x0":
        _, phi2, phi3 = phi_functions(-h, 3)
        a = schedule.alpha(u) * h
        return a * phi2, a * phi3
    _, phi2, phi3 = phi_functions(h, 3)
    s = -schedule.sigma(u) * h
    return s * phi2, s * phi3


def first_order_coefficients(prediction: str, schedule: Schedule, s: Array,
                             u: Array) -> tuple[Array, Array]:
    """``(ratio, c1)`` of the exact first-order step ``x_u = ratio x_s + c1 D_s`` (``D`` = x0_hat
    for ``prediction="x0"``, eps_hat for ``"eps"``); see the module docstring."""
    a_s, s_s, a_u, s_u = schedule.alpha(s), schedule.sigma(s), schedule.alpha(u), schedule.sigma(u)
    if prediction == "x0":
        return s_u / s_s, a_u - s_u * a_s / s_s
    return a_u / a_s, s_u - a_u * s_s / a_s


def output_in_space(space: str, x0: Array, eps: Array, x: Array, t: Array,
                    schedule: Schedule) -> Array:
    """The model output a solver integrates: ``x0``, ``eps`` or the PF-ODE velocity
    ``dx/dt = alpha'(t) x0 + sigma'(t) eps``."""
    if space == "x0":
        return x0
    if space == "eps":
        return eps
    if space == "velocity":
        return expand_to(schedule.d_alpha(t), x) * x0 + expand_to(schedule.d_sigma(t), x) * eps
    raise ValueError(f"space={space!r} must be 'x0', 'eps' or 'velocity'.")


def multistep_orders(n_steps: int, order: int, lower_order_final: bool) -> np.ndarray:
    """Static per-step orders of a multistep method: warm-up ``1, 2, ..`` and, with
    ``lower_order_final``, ``.., 2, 1`` on the last steps (``min(order, steps left)``)."""
    i = np.arange(n_steps)
    orders = np.minimum(order, i + 1)
    if lower_order_final:
        orders = np.minimum(orders, n_steps - i)
    return orders.astype(np.int32)


def check_final_orders(name: str, caps: Sequence[int]) -> tuple[int, ...]:
    """``final_orders`` as a tuple of orders 1-3 (caps on the orders of the last steps)."""
    caps = tuple(caps)
    if any(isinstance(k, bool) or k not in (1, 2, 3) for k in caps):
        raise ValueError(f"{name}: final_orders={caps!r} must be orders 1-3 "
                         "(caps on the orders of the last steps, e.g. (2, 1)).")
    return caps


def cap_final_orders(orders: np.ndarray, caps: Sequence[int]) -> np.ndarray:
    """``orders`` with the last ``len(caps)`` entries capped by ``caps`` (fewer steps: the last
    caps)."""
    caps = tuple(caps)[-len(orders):] if len(orders) else ()
    if caps:
        orders[-len(caps):] = np.minimum(orders[-len(caps):], caps)
    return orders


def select_by_order(orders: Any, tables: Sequence[Array], width: int) -> Array:
    """Row ``i`` of ``tables[orders[i] - 1]`` (each ``[n, k]``, zero-padded to ``width``)."""
    padded = [jnp.pad(tab, ((0, 0), (0, width - tab.shape[1]))) for tab in tables]
    orders = jnp.asarray(orders)
    out = padded[0]
    for k, tab in enumerate(padded[1:], start=2):
        out = jnp.where((orders == k)[:, None], tab, out)
    return out


def boundary_bound(bulk: int, boundary_local_orders: Sequence[int]) -> int:
    """Global order of a method whose steps have local error ``O(h^(bulk + 1))`` except a fixed
    number of boundary steps (warm-up, final) of local error ``O(h^(p + 1))``, ``p`` in
    ``boundary_local_orders``: ``min(bulk, p + 1)`` (a boundary step's error is not
    accumulated over ``1/h`` steps)."""
    return int(min([bulk] + [p + 1 for p in boundary_local_orders]))


def check_order(name: str, order: int, allowed: tuple[int, ...]) -> None:
    """Raises unless ``order`` is one of ``allowed``."""
    if isinstance(order, bool) or order not in allowed:
        raise ValueError(f"{name}: order={order!r} is out of range; use one of {allowed}.")


def concrete(x: Any) -> np.ndarray | None:
    """``x`` as a float64 NumPy array, or ``None`` when it is traced (checks that need values
    are skipped under ``jit``; ``jd.sample(..., checks=True)`` checks traced grids)."""
    try:
        return np.asarray(x, dtype=np.float64)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def check_noise_start(name: str, prediction: str, schedule: Schedule, grid: Any) -> None:
    """Noise-prediction exponential integrators divide by ``alpha_s``: refuses a concrete grid
    starting where ``alpha = 0``."""
    if prediction == "eps":
        check_alpha_start(f"{name} (noise prediction)", schedule, grid,
                          "or use data prediction (e.g. DPMSolverPP)")


def check_alpha_start(name: str, schedule: Schedule, grid: Any,
                      alternative: str = "or use EulerEDM / DPMSolverPP, which step exactly "
                                         "from pure noise") -> None:
    """Raises if ``alpha(grid[0]) = 0`` (e.g. rectified flow at ``t = 1``) for a solver that
    divides by ``alpha``."""
    t0 = concrete(jnp.asarray(grid)[0])
    if t0 is not None and float(schedule.alpha(jnp.asarray(t0))) == 0.0:
        raise ValueError(
            f"{name} cannot start where alpha = 0 (grid[0]={float(t0)}); start the grid below "
            f"t_max (e.g. t_start=0.999 for RectifiedFlow) {alternative}.")


def safe_sqrt(v: Array) -> Array:
    """``sqrt(max(v, 0))`` with a finite derivative (0) where ``v <= 0`` (ancestral noise scales
    such as ``sqrt(s_next^2 - s_down^2)``, differentiated with respect to the grid)."""
    pos = v > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, v, 1.0)), 0.0)


def cfgpp_renoise(x: Array, x0: Array, eps: Array, alpha: Array,
                  sigma: Array) -> tuple[Array, Array]:
    """CFG++'s pair ``(x0_g, eps_u)`` (``jd.guidance.CFGPlusPlus``) at ``x [*shape]`` with
    ``alpha``, ``sigma`` of its time: the re-noised point ``x^ = alpha x0_g + sigma eps_u`` and the
    unconditional data prediction ``x0_u = (x - sigma eps_u) / alpha`` (``x0_g`` where
    ``alpha = 0``). For a consistent pair (any plain denoiser) ``x^ = x`` and ``x0_u = x0``."""
    a, s = (expand_to(v, x).astype(x.dtype) for v in (alpha, sigma))
    x0_u = jnp.where(a > 0, (x - s * eps) / jnp.where(a > 0, a, 1.0), x0)
    return a * x0 + s * eps, x0_u
