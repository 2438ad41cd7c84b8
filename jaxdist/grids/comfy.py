"""The schedulers ComfyUI and A1111 users pick by name, spaced in the model's time: ``simple``,
``normal``, ``sgm_uniform``, ``ddim_uniform``, ``beta`` and ``linear_quadratic``. All end at
clean data (``t = 0``).

On a ``VPDiscrete`` schedule they pick the same training timesteps and noise levels as ComfyUI's
``ModelSamplingDiscrete`` (SD-type models): timestep ``k`` is ``t = (k + 1) / N`` and fractional
timesteps interpolate ``log sigma`` linearly, as ComfyUI does. On continuous schedules the same
rules act on ``t`` directly, with timestep ``k`` of ``[0, N - 1]`` becoming
``t = t_min + u (t_max - t_min)``, ``u = k / (N - 1)`` (on ``RectifiedFlow`` this is ComfyUI's
flow models without shift: their sigma is ``t``; compose with ``jaxdist.grids.flow_shift``).
"""

from __future__ import annotations

import jax
import numpy as np

from ..schedules import Schedule
from .common import (as_grid, check_steps, describe, index_times, is_discrete,
                     require_decreasing)

Array = jax.Array

__all__ = ["simple", "normal", "sgm_uniform", "ddim_uniform", "beta", "linear_quadratic"]


def _at_fraction(schedule: Schedule, u) -> np.ndarray:
    """Times at fractions ``u`` of the way from ``t_min`` (``u = 0``) to ``t_max`` (``u = 1``);
    on a discrete schedule ``u (N - 1)`` is the (fractional) training timestep."""
    u = np.asarray(u, dtype=np.float64)
    if is_discrete(schedule):
        return index_times(schedule, u * (schedule.num_train_timesteps - 1))
    t = schedule.t_min + u * (schedule.t_max - schedule.t_min)
    return np.where(u == 1.0, schedule.t_max, t)


def _no_more_than_train_steps(schedule: Schedule, n_steps: int, name: str) -> None:
    if is_discrete(schedule) and n_steps > schedule.num_train_timesteps:
        raise ValueError(f"{name}: n_steps={n_steps} exceeds the schedule's "
                         f"{schedule.num_train_timesteps} training timesteps.")


def simple(schedule: Schedule, n_steps: int) -> Array:
    """ComfyUI's ``simple``: ``t_x = t_max (1 - x / n)`` for ``x = 0..n-1``, then ``0``: uniform in
    ``t`` down to clean data. On ``VPDiscrete`` the ``x``-th level is the training sigma
    ``N - 1 - floor(x N / n)`` (ComfyUI's ``sigmas[-(1 + int(x N / n))]``)."""
    n_steps = check_steps(n_steps)
    _no_more_than_train_steps(schedule, n_steps, "simple")
    x = np.arange(n_steps)
    if is_discrete(schedule):
        n = schedule.num_train_timesteps
        times = index_times(schedule, n - 1 - np.floor(x * (n / n_steps)))
    else:
        times = schedule.t_max * (1.0 - x / n_steps)
        if times[-1] < schedule.t_min:
            raise ValueError(
                f"simple: t_max / n_steps = {times[-1]:g} is below t_min = "
                f"{schedule.t_min:g} of {describe(schedule)}; use fewer steps or sgm_uniform.")
    return as_grid(times, final_zero=True)


def normal(schedule: Schedule, n_steps: int) -> Array:
    """ComfyUI's ``normal``: ``n`` times uniform from ``t_max`` to ``t_min``, then ``0``
    (``time_uniform`` with ``final_zero=True``; fractional SD timesteps as ComfyUI)."""
    n_steps = check_steps(n_steps)
    return as_grid(_at_fraction(schedule, np.linspace(1.0, 0.0, n_steps)), final_zero=True)


def sgm_uniform(schedule: Schedule, n_steps: int) -> Array:
    """ComfyUI's ``sgm_uniform`` (Stability's SGM ``uniform`` discretisation): ``n + 1`` times
    uniform from ``t_max`` to ``t_min``, the last one dropped, then ``0``."""
    n_steps = check_steps(n_steps)
    u = np.linspace(1.0, 0.0, n_steps + 1)[:-1]
    return as_grid(_at_fraction(schedule, u), final_zero=True)


def ddim_uniform(schedule: Schedule, n_steps: int) -> Array:
    """ComfyUI's ``ddim_uniform`` (DDIM's "uniform" skip): training timesteps ``1, 1 + c,
    1 + 2c, ... < N`` with ``c = max(N // n, 1)``, from the noisiest down, then ``0``. Like DDIM's
    and ComfyUI's, this takes ``ceil((N - 1) / c)`` steps, more than ``n`` when ``n`` does not
    divide ``N`` (``N = 1000, n = 7``: 8 steps). Needs a ``VPDiscrete`` schedule."""
    n_steps = check_steps(n_steps)
    if not is_discrete(schedule):
        raise ValueError(f"ddim_uniform picks training timesteps and needs a VPDiscrete schedule, "
                         f"got {describe(schedule)}; use time_uniform or normal.")
    n = schedule.num_train_timesteps
    index = np.arange(1, n, max(n // n_steps, 1))[::-1]
    return as_grid(index_times(schedule, index), final_zero=True)


def beta(schedule: Schedule, n_steps: int, alpha: float = 0.6, beta: float = 0.6) -> Array:
    """ComfyUI's ``beta`` (Lee et al. 2024, "Beta Sampling is All You Need"):
    ``u_x = F^-1(1 - x/n)`` for ``x = 0..n-1``, ``F`` the Beta(alpha, beta) CDF, at fraction
    ``u_x`` of the time range, then ``0``. On ``VPDiscrete`` the timesteps are ``rint(u (N - 1))``
    and repeated ones are dropped (so a large ``n`` can give fewer steps), as in ComfyUI. (diffusers'
    ``use_beta_sigmas`` applies the same quantiles to sigma instead: see ``from_diffusers``.)"""
    from scipy.special import betaincinv  # the Beta quantile; scipy ships with jax

    n_steps = check_steps(n_steps)
    if not (alpha > 0 and beta > 0):
        raise ValueError(f"alpha={alpha!r} and beta={beta!r} must be positive.")
    u = betaincinv(alpha, beta, 1.0 - np.linspace(0.0, 1.0, n_steps, endpoint=False))
    if is_discrete(schedule):
        index = np.rint(u * (schedule.num_train_timesteps - 1))
        keep = np.concatenate([[True], index[1:] != index[:-1]])
        return as_grid(index_times(schedule, index[keep]), final_zero=True)
    return as_grid(require_decreasing(_at_fraction(schedule, u), "beta"), final_zero=True)


def linear_quadratic(schedule: Schedule, n_steps: int, threshold_noise: float = 0.025,
                     linear_steps: int | None = None) -> Array:
    """ComfyUI's ``linear_quadratic`` (Genmo's Mochi schedule): ``t_i = t_max (1 - f_i)`` with
    ``f`` rising linearly from 0 to ``threshold_noise`` over ``linear_steps`` (default ``n // 2``)
    steps, then quadratically to 1 (``t = 0``); ``f`` and its slope are continuous at the joint.
    Written for flow models, where ``t`` is their sigma; ComfyUI multiplies an SD model's
    ``sigma_max`` by ``1 - f`` instead."""
    n_steps = check_steps(n_steps)
    if not 0 < threshold_noise < 1:
        raise ValueError(f"threshold_noise={threshold_noise!r} must lie in (0, 1).")
    if n_steps == 1:
        f = np.array([0.0, 1.0])
    else:
        m = n_steps // 2 if linear_steps is None else check_steps(linear_steps, name="linear_steps")
        if m >= n_steps:
            raise ValueError(f"linear_steps={m} must be below n_steps={n_steps}.")
        i = np.arange(n_steps, dtype=np.float64)
        gap = m - threshold_noise * n_steps
        q = n_steps - m
        quad, lin = gap / (m * q**2), threshold_noise / m - 2.0 * gap / q**2
        f = np.where(i < m, i * threshold_noise / m, quad * i**2 + lin * i + quad * m**2)
        f = np.append(f, 1.0)
    times = schedule.t_max * (1.0 - f[:-1])
    if times[-1] < schedule.t_min:
        raise ValueError(f"linear_quadratic: the last time {times[-1]:g} is below t_min = "
                         f"{schedule.t_min:g} of {describe(schedule)}.")
    return as_grid(require_decreasing(times, "linear_quadratic"), final_zero=True)
