"""What the grid modules share: argument checks, end points, and the map between noise levels and
times. Not part of the ``jd.grids`` API (only ``append_zero`` is re-exported there).

A *noise level* is the EDM-equivalent ``s = sigma / alpha = exp(-lambda / 2)`` (k-diffusion's,
ComfyUI's and diffusers' ``sigma`` of a diffusion model); a time is the schedule's ``t``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..schedules import Schedule, VPDiscrete

Array = jax.Array

# Relative slack when a published or computed noise level sits on the schedule's end point.
LEVEL_RTOL = 1e-6


def describe(schedule: Schedule) -> str:
    """A short name of ``schedule`` for error messages (a ``VPDiscrete`` shows ``N``, not its
    knots)."""
    if isinstance(schedule, VPDiscrete):
        return f"VPDiscrete(N={schedule.num_train_timesteps})"
    return repr(schedule)


def float_dtype():
    """The default float dtype (float64 under ``jax_enable_x64``, else float32)."""
    return jnp.result_type(float)


def check_steps(n_steps: int, *, minimum: int = 1, name: str = "n_steps") -> int:
    """``n_steps`` as an ``int``, or a ``ValueError`` if it is not an integer ``>= minimum``."""
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < minimum:
        raise ValueError(f"{name}={n_steps!r} must be an integer >= {minimum}.")
    return int(n_steps)


def time_bounds(schedule: Schedule, t_start, t_end) -> tuple[float, float]:
    """``(t_start, t_end)`` with the schedule's ``t_max`` / ``t_min`` as defaults."""
    t_start = schedule.t_max if t_start is None else float(t_start)
    t_end = schedule.t_min if t_end is None else float(t_end)
    if not t_start > t_end > 0:
        raise ValueError(f"need t_start > t_end > 0, got t_start={t_start}, t_end={t_end}.")
    return t_start, t_end


def append_zero(grid: Array) -> Array:
    """Appends ``t = 0`` (clean data) to a grid."""
    return jnp.concatenate([grid, jnp.zeros((1,), grid.dtype)])


def n_points(n_steps: int, final_zero: bool) -> int:
    """Points between ``t_start`` and ``t_end`` (both included) for ``n_steps`` steps."""
    n = check_steps(n_steps) + (0 if final_zero else 1)
    if n < 2:
        raise ValueError("final_zero=True needs n_steps >= 2 (one step to t_end, one to zero).")
    return n


def pin_ends(times, t_start: float, t_end: float, final_zero: bool) -> Array:
    """Sets the end points exactly (inverse maps may round them by an ulp), then the final zero;
    returns the grid in the default float dtype."""
    times = np.array(times, dtype=np.float64)
    times[0], times[-1] = t_start, t_end
    if final_zero:
        times = np.append(times, 0.0)
    return jnp.asarray(times, float_dtype())


@functools.partial(jax.jit, static_argnames="method")
def _evaluate(schedule: Schedule, x: Array, method: str) -> Array:
    return getattr(schedule, method)(x)


def evaluate(schedule: Schedule, method: str, x) -> np.ndarray:
    """``schedule.<method>(x)`` (``"t_from_log_snr"``, ``"sigma_over_alpha"``, ``"log_snr"``, ...)
    as float64 numpy, computed in the default float dtype. Compiled once per schedule and method:
    1-D inputs are padded to a power-of-two length (at least 64), so every step count shares it."""
    x = np.asarray(x, dtype=np.float64)
    leaves = jax.tree_util.tree_leaves(schedule)
    if len(leaves) == 1 and leaves[0] is schedule:  # a schedule class that is not a pytree
        return np.asarray(getattr(schedule, method)(jnp.asarray(x, float_dtype())), np.float64)
    if x.ndim != 1:
        return np.asarray(_evaluate(schedule, jnp.asarray(x, float_dtype()), method), np.float64)
    n = x.shape[0]
    size = max(64, 1 << max(n - 1, 0).bit_length())
    padded = np.pad(x, (0, size - n), mode="edge") if n else np.ones(size)
    out = _evaluate(schedule, jnp.asarray(padded, float_dtype()), method)
    return np.asarray(out, np.float64)[:n]


def scalar(schedule: Schedule, method: str, t: float) -> float:
    """``float(schedule.<method>(t))`` at one time."""
    return float(evaluate(schedule, method, t))


def to_times(schedule: Schedule, lam) -> np.ndarray:
    """``schedule.t_from_log_snr(lam)`` of a 1-D array, as float64 numpy."""
    return evaluate(schedule, "t_from_log_snr", lam)


def level_range(schedule: Schedule, t_start=None, t_end=None) -> tuple[float, float]:
    """The noise levels ``(s(t_end), s(t_start))`` (float64; ``inf`` where ``alpha = 0``)."""
    t_start, t_end = time_bounds(schedule, t_start, t_end)
    lo, hi = (scalar(schedule, "sigma_over_alpha", t) for t in (t_end, t_start))
    return lo, (hi if np.isfinite(hi) else np.inf)


def as_grid(times, *, final_zero: bool = False) -> Array:
    """A grid (default float dtype) from float64 ``times``, with ``t = 0`` appended if asked."""
    times = np.asarray(times, np.float64)
    return jnp.asarray(np.append(times, 0.0) if final_zero else times, float_dtype())


def times_from_levels(schedule: Schedule, levels, *, what: str) -> np.ndarray:
    """Times (float64) ``t(s) = t_from_log_snr(-2 log s)`` of positive, decreasing levels ``s``
    (a level ``0`` gives ``t = 0``). Levels within ``LEVEL_RTOL`` of the schedule's range are set
    to its end points; levels outside it raise a ``ValueError`` naming ``what``."""
    s = np.asarray(levels, dtype=np.float64)
    lo, hi = level_range(schedule)
    inner = s[s > 0]
    if inner.size and (inner.min() < lo * (1 - LEVEL_RTOL) or inner.max() > hi * (1 + LEVEL_RTOL)):
        raise ValueError(
            f"{what} has noise levels sigma/alpha in [{inner.min():.6g}, {inner.max():.6g}], "
            "outside "
            f"[{lo:.6g}, {hi:.6g}] of {describe(schedule)}; use a schedule that covers them (e.g. "
            "VPDiscrete.from_diffusers_config of the model's config, or EDM(sigma_max=...)), or "
            "pass rescale=True to map the levels' log range onto the schedule's.")
    t = np.clip(to_times(schedule, -2.0 * np.log(np.where(s > 0, s, 1.0))), schedule.t_min,
                schedule.t_max)
    t = np.where(s >= hi * (1 - 1e-12), schedule.t_max, t)
    t = np.where(s <= lo * (1 + 1e-12), schedule.t_min, t)
    return np.where(s > 0, t, 0.0)


def rescale_levels(levels, schedule: Schedule, t_start=None, t_end=None) -> np.ndarray:
    """Maps positive levels affinely in ``log s`` so that their range becomes
    ``[s(t_end), s(t_start)]`` of ``schedule`` (zeros stay zero)."""
    s = np.asarray(levels, dtype=np.float64)
    lo, hi = level_range(schedule, t_start, t_end)
    if not np.isfinite(hi):
        raise ValueError("rescale=True needs a finite noise level at t_start for "
                         f"{describe(schedule)}; pass "
                         "t_start < t_max (e.g. t_start=0.999 for RectifiedFlow).")
    pos = s[s > 0]
    a, b = np.log(pos.min()), np.log(pos.max())
    with np.errstate(divide="ignore"):
        u = (np.log(np.where(s > 0, s, 1.0)) - a) / (b - a)
    return np.where(s > 0, np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo))), 0.0)


# --------------------------------------------------------------------------------------------
# the training timesteps of a discrete (DDPM-style) schedule


def train_levels(schedule: VPDiscrete) -> np.ndarray:
    """``sigma_k = sqrt((1 - abar_k) / abar_k)`` of the ``N`` training timesteps ``k = 0..N-1``
    (float64; ``t = (k + 1) / N``), the table diffusers and ComfyUI index."""
    knots = np.asarray(schedule.log_alpha_knots, dtype=np.float64)[1:]
    return np.sqrt(np.expm1(-2.0 * knots))


def index_times(schedule: VPDiscrete, index) -> np.ndarray:
    """Times of (possibly fractional) training timesteps ``index`` in ``[0, N - 1]``: integer
    indices give ``t = (k + 1) / N`` exactly; between them ``log sigma`` is interpolated linearly in
    the index, as ComfyUI's ``ModelSamplingDiscrete.sigma`` does."""
    idx = np.asarray(index, dtype=np.float64)
    n = schedule.num_train_timesteps
    if idx.size and (idx.min() < 0 or idx.max() > n - 1):
        raise ValueError(f"training timesteps must lie in [0, {n - 1}], got "
                         f"{idx.min()}..{idx.max()}.")
    log_s = np.interp(idx, np.arange(n), np.log(train_levels(schedule)))
    t = times_from_levels(schedule, np.exp(log_s), what="index_times")
    return np.where(idx == np.round(idx), (np.round(idx) + 1.0) / n, t)


def is_discrete(schedule: Schedule) -> bool:
    """Whether ``schedule`` has training timesteps (a ``VPDiscrete``)."""
    return isinstance(schedule, VPDiscrete)


def require_decreasing(times: np.ndarray, what: str) -> np.ndarray:
    """Raises unless ``times`` are strictly decreasing (names ``what``)."""
    if np.any(np.diff(times) >= 0):
        raise ValueError(f"{what} is not strictly decreasing ({times}); use fewer steps.")
    return times
