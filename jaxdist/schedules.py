"""Noise schedules: how data becomes noise, ``x_t = alpha(t) * x0 + sigma(t) * eps``.

Every schedule exposes ``alpha``, ``sigma``, ``log_snr`` (``lambda = log(alpha^2 / sigma^2)``), its
exact inverse ``t_from_log_snr``, the forward-SDE coefficients ``f(t) = d log alpha / dt`` and
``g2(t) = d sigma^2/dt - 2 f sigma^2``, and the time range ``[t_min, t_max]`` a sampler may use.
``t = 0`` is clean data (``sigma = 0``). Times are continuous floats; ``model_time`` maps them to
what the network was trained on (and quantises only when a schedule is asked to).

All methods are elementwise in ``t`` (any shape) and safe under ``jit``, ``vmap`` and ``grad``.
Parameters are checked when a schedule is built from concrete (Python or NumPy) numbers: a bad
value raises ``ValueError`` naming the argument; traced values are not checked.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

__all__ = [
    "Schedule",
    "VPLinear",
    "VPCosine",
    "VPDiscrete",
    "VE",
    "EDM",
    "RectifiedFlow",
    "betas_from_diffusers_config",
]


def _float(t: Any) -> Array:
    """Promotes ``t`` to an inexact array of at least float32."""
    t = jnp.asarray(t)
    return t.astype(jnp.result_type(t.dtype, jnp.float32))


def _concrete(value: Any) -> float | None:
    """``value`` as a float if it is a concrete Python/NumPy real number, else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, np.ndarray) and value.ndim == 0 and np.issubdtype(value.dtype, np.number):
        return float(value)
    return None


def _check_parameters(schedule: Any, rules) -> None:
    """Raises ``ValueError`` for the first rule ``(names, predicate, requirement)`` whose
    concrete, finite values fail ``predicate(*values)`` (or that are not finite)."""
    for names, ok, requirement in rules:
        values = [_concrete(getattr(schedule, n)) for n in names]
        if any(v is None for v in values):
            continue  # traced or array-valued: checked where it is concrete
        got = ", ".join(f"{n}={getattr(schedule, n)!r}" for n in names)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"{type(schedule).__name__}({got}): {' and '.join(names)} must be "
                             "finite numbers.")
        if not ok(*values):
            raise ValueError(f"{type(schedule).__name__}({got}): {requirement}.")


def _pytree(cls=None, *, data: tuple[str, ...] = ()):
    """Frozen dataclass registered as a pytree: ``data`` fields are leaves, the rest static."""

    def wrap(cls):
        cls = dataclasses.dataclass(frozen=True, eq=not data)(cls)
        meta = tuple(f.name for f in dataclasses.fields(cls) if f.name not in data)
        return jax.tree_util.register_dataclass(cls, data_fields=list(data), meta_fields=list(meta))

    return wrap if cls is None else wrap(cls)


class Schedule(abc.ABC):
    """Base class. Subclasses define ``log_alpha``/``sigma`` (or ``alpha``) and ``t_from_log_snr``."""

    t_min: float
    t_max: float

    # --- required -------------------------------------------------------------------------
    @abc.abstractmethod
    def log_alpha(self, t) -> Array:
        """``log alpha(t)``."""

    @abc.abstractmethod
    def sigma(self, t) -> Array:
        """``sigma(t)``."""

    @abc.abstractmethod
    def t_from_log_snr(self, lam) -> Array:
        """Exact inverse of :meth:`log_snr`."""

    # --- derived ----------------------------------------------------------------------------
    def alpha(self, t) -> Array:
        """``alpha(t) = exp(log_alpha(t))``."""
        return jnp.exp(self.log_alpha(t))

    def log_snr(self, t) -> Array:
        """``lambda(t) = 2 log alpha(t) - 2 log sigma(t)``."""
        return 2.0 * (self.log_alpha(t) - jnp.log(self.sigma(t)))

    def sigma_over_alpha(self, t) -> Array:
        """The EDM-equivalent noise level ``sigma / alpha = exp(-lambda / 2)`` (Karras' sigma)."""
        return self.sigma(t) * jnp.exp(-self.log_alpha(t))

    def d_alpha(self, t) -> Array:
        """``d alpha / dt`` (autodiff by default; closed forms in subclasses)."""
        t = _float(t)
        return jax.jvp(self.alpha, (t,), (jnp.ones_like(t),))[1]

    def d_sigma(self, t) -> Array:
        """``d sigma / dt`` (autodiff by default; closed forms in subclasses)."""
        t = _float(t)
        return jax.jvp(self.sigma, (t,), (jnp.ones_like(t),))[1]

    def f(self, t) -> Array:
        """Forward-SDE drift coefficient ``f(t) = d log alpha / dt``: ``dx = f x dt + g dW``."""
        t = _float(t)
        return jax.jvp(self.log_alpha, (t,), (jnp.ones_like(t),))[1]

    def g2(self, t) -> Array:
        """Forward-SDE squared diffusion ``g(t)^2 = 2 sigma (d sigma/dt - f sigma)``."""
        s = self.sigma(t)
        return 2.0 * s * (self.d_sigma(t) - self.f(t) * s)

    def model_time(self, t) -> Array:
        """The time the network is conditioned on (identity unless the schedule says otherwise)."""
        return t

    def t_from_model_time(self, m) -> Array:
        """Inverse of :meth:`model_time`: the schedule time of the network's input time ``m``."""
        return m

    def marginal(self, x0: Array, eps: Array, t) -> Array:
        """``x_t = alpha(t) x0 + sigma(t) eps`` with ``t`` scalar or per-example ``[batch]``."""
        a, s = expand_to(self.alpha(t), x0), expand_to(self.sigma(t), x0)
        return a * x0 + s * eps


def expand_to(coef: Array, x: Array) -> Array:
    """Reshapes a scalar or ``[batch]`` coefficient so it broadcasts against ``x [batch, ...]``."""
    coef = jnp.asarray(coef)
    if coef.ndim == 0:
        return coef
    return coef.reshape(coef.shape + (1,) * (x.ndim - coef.ndim))


def _log_alpha_from_log_snr(lam: Array) -> Array:
    """For VP (``alpha^2 + sigma^2 = 1``): ``alpha^2 = sigmoid(lambda)``."""
    return -0.5 * jax.nn.softplus(-lam)


def _vp_sigma(log_alpha: Array) -> Array:
    return jnp.sqrt(0.0 - jnp.expm1(2.0 * log_alpha))  # 0 - x, not -x: sigma(0) = +0, not -0


def _vp_log_snr(log_alpha: Array) -> Array:
    return 2.0 * log_alpha - jnp.log(-jnp.expm1(2.0 * log_alpha))


class _VP(Schedule):
    """Variance preserving: ``sigma^2 = 1 - alpha^2``; ``g2 = -2 f``."""

    def sigma(self, t) -> Array:
        return _vp_sigma(self.log_alpha(t))

    def log_snr(self, t) -> Array:
        return _vp_log_snr(self.log_alpha(t))

    def g2(self, t) -> Array:
        return -2.0 * self.f(t)

    def d_alpha(self, t) -> Array:
        """``alpha' = alpha f``."""
        return self.alpha(t) * self.f(t)

    def d_sigma(self, t) -> Array:
        """``sigma' = -alpha^2 f / sigma`` (from ``sigma sigma' = -alpha alpha'``)."""
        log_alpha = self.log_alpha(t)
        return -jnp.exp(2.0 * log_alpha) * self.f(t) / _vp_sigma(log_alpha)


@_pytree
class VPLinear(_VP):
    """VP SDE with linear ``beta(t) = beta_min + t (beta_max - beta_min)`` (DDPM / score-SDE).

    ``log alpha(t) = -t^2 (beta_max - beta_min) / 4 - t beta_min / 2``.
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    t_min: float = 1e-3
    t_max: float = 1.0

    def __post_init__(self):
        _check_parameters(self, (
            (("beta_min",), lambda b: b >= 0,
             "beta_min must be >= 0 (beta(t) = beta_min + t (beta_max - beta_min) is a noise "
             "rate), e.g. 0.1"),
            (("beta_min", "beta_max"), lambda lo, hi: hi >= lo and hi > 0,
             "beta_max must be positive and at least beta_min (beta grows from beta_min at t = 0 "
             "to beta_max at t = 1), e.g. beta_min=0.1, beta_max=20"),
            (("t_min", "t_max"), lambda lo, hi: 0 < lo < hi, "need 0 < t_min < t_max"),
        ))

    def log_alpha(self, t) -> Array:
        t = _float(t)
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def f(self, t) -> Array:
        t = _float(t)
        return -0.5 * (self.beta_min + t * (self.beta_max - self.beta_min))

    def t_from_log_snr(self, lam) -> Array:
        # Solve a t^2 + b t + c = 0 with c = log alpha < 0, in the cancellation-free form.
        c = _log_alpha_from_log_snr(_float(lam))
        a, b = 0.25 * (self.beta_max - self.beta_min), 0.5 * self.beta_min
        return -2.0 * c / (b + jnp.sqrt(b * b - 4.0 * a * c))


@_pytree
class VPCosine(_VP):
    """Improved-DDPM cosine schedule, ``alpha(t) = cos(pi/2 (t+s)/(1+s)) / cos(pi/2 s/(1+s))``.

    ``t_max`` defaults to 0.9946 (as in DPM-Solver), where ``lambda`` is still finite.
    """

    s: float = 0.008
    t_min: float = 1e-3
    t_max: float = 0.9946

    def __post_init__(self):
        _check_parameters(self, (
            (("s",), lambda v: v >= 0, "s must be >= 0 (the offset of the cosine), e.g. 0.008"),
            (("t_min", "t_max"), lambda lo, hi: 0 < lo < hi < 1,
             "need 0 < t_min < t_max < 1 (alpha reaches 0 at t = 1)"),
        ))

    def _log_cos0(self) -> float:
        return math.log(math.cos(0.5 * math.pi * self.s / (1.0 + self.s)))

    def _log_cos(self, t: Array) -> Array:
        return jnp.log(jnp.cos(0.5 * jnp.pi * (t + self.s) / (1.0 + self.s)))

    def log_alpha(self, t) -> Array:
        # The normaliser is computed like the numerator (same ops, same dtype), so that
        # log alpha(0) = 0 and sigma(0) = 0 exactly in float32 too.
        t = _float(t)
        return self._log_cos(t) - self._log_cos(jnp.zeros_like(t))

    def f(self, t) -> Array:
        """``f = -pi / (2 (1 + s)) tan(pi/2 (t + s) / (1 + s))``."""
        t = _float(t)
        c = 0.5 * jnp.pi / (1.0 + self.s)
        return -c * jnp.tan(c * (t + self.s))

    def t_from_log_snr(self, lam) -> Array:
        log_alpha = _log_alpha_from_log_snr(_float(lam)) + self._log_cos0()
        return 2.0 * (1.0 + self.s) / jnp.pi * jnp.arccos(jnp.exp(log_alpha)) - self.s


def betas_from_diffusers_config(config: Mapping[str, Any]) -> np.ndarray:
    """The float64 ``betas`` a diffusers scheduler config describes.

    Covers ``beta_schedule`` in ``linear``, ``scaled_linear``, ``squaredcos_cap_v2``,
    ``trained_betas`` and ``rescale_betas_zero_snr`` (Lin et al. 2024, Algorithm 1).
    """
    n = int(config.get("num_train_timesteps", 1000))
    start, end = float(config.get("beta_start", 0.0001)), float(config.get("beta_end", 0.02))
    kind = config.get("beta_schedule", "linear")
    if config.get("trained_betas") is not None:
        betas = np.asarray(config["trained_betas"], dtype=np.float64)
    elif kind == "linear":
        betas = np.linspace(start, end, n, dtype=np.float64)
    elif kind == "scaled_linear":
        betas = np.linspace(start**0.5, end**0.5, n, dtype=np.float64) ** 2
    elif kind == "squaredcos_cap_v2":
        def alpha_bar(u):
            return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = np.array(
            [min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), 0.999) for i in range(n)]
        )
    else:
        raise ValueError(
            f"config['beta_schedule']={kind!r} is not supported; use 'linear', 'scaled_linear', "
            "'squaredcos_cap_v2' or pass 'trained_betas'."
        )
    if config.get("rescale_betas_zero_snr", False):
        sqrt_ab = np.sqrt(np.cumprod(1.0 - betas))
        a0, aT = sqrt_ab[0], sqrt_ab[-1]
        sqrt_ab = (sqrt_ab - aT) * a0 / (a0 - aT)
        ab = sqrt_ab**2
        betas = 1.0 - np.concatenate([ab[:1], ab[1:] / ab[:-1]])
    return betas


@_pytree(data=("log_alpha_knots",))
class VPDiscrete(_VP):
    """A DDPM-style discrete schedule of ``N`` betas, made continuous.

    Model index ``i`` (0-based, as in diffusers) sits at ``t = (i + 1) / N``; ``log alpha`` is
    piecewise linear in ``t`` between the knots ``t = k / N`` (``log alpha(0) = 0``), as in
    DPM-Solver. ``model_time(t) = N t - 1`` is the (continuous) index the network expects,
    rounded only if ``quantize=True``. Build it with ``VPDiscrete(betas)`` or
    :meth:`from_diffusers_config`.
    """

    log_alpha_knots: Array
    quantize: bool = False

    def __init__(self, betas=None, *, log_alpha_knots=None, quantize: bool = False):
        if log_alpha_knots is None:
            betas = np.asarray(betas, dtype=np.float64)
            if (betas.ndim != 1 or betas.size < 2 or not np.all((betas > 0) & (betas <= 1))
                    or np.any(betas[:-1] >= 1)):
                raise ValueError("betas must be a 1-D array of at least 2 values in (0, 1) "
                                 "(only the last may be 1: a zero terminal SNR).")
            # A zero terminal SNR (rescaled betas) is clamped to 2^-24 as diffusers does; other
            # (tiny but positive) values are kept exactly, as in diffusers.
            alphas_cumprod = np.cumprod(1.0 - betas)
            if alphas_cumprod[-1] == 0.0:
                alphas_cumprod[-1] = 2.0**-24
            log_alpha_knots = jnp.asarray(np.concatenate([[0.0], 0.5 * np.log(alphas_cumprod)]))
        object.__setattr__(self, "log_alpha_knots", log_alpha_knots)
        object.__setattr__(self, "quantize", quantize)

    @property
    def t_min(self) -> float:
        return 1.0 / self.num_train_timesteps

    @property
    def t_max(self) -> float:
        return 1.0

    @classmethod
    def from_diffusers_config(cls, config: Mapping[str, Any], *, quantize: bool = False):
        """The schedule of a diffusers scheduler config (``scheduler_config.json`` as a dict)."""
        return cls(betas_from_diffusers_config(config), quantize=quantize)

    @property
    def num_train_timesteps(self) -> int:
        return int(self.log_alpha_knots.shape[0]) - 1

    def _knot_times(self, dtype) -> Array:
        return jnp.linspace(0.0, 1.0, self.num_train_timesteps + 1, dtype=dtype)

    def _segment(self, t: Array):
        """``(u - k, log alpha at knot k, slope per unit u)`` with ``u = N t`` and ``k`` the knot
        at or left of ``u``: direct indexing of the uniform knots, no search."""
        n = self.num_train_timesteps
        knots = self.log_alpha_knots.astype(t.dtype)
        u = t * n
        k = jnp.clip(jnp.floor(u), 0, n - 1)
        i = k.astype(jnp.int32)
        lo = knots[i]
        return u - k, lo, knots[i + 1] - lo

    def log_alpha(self, t) -> Array:
        # Linear interpolation between the knots k / N, constant outside [0, 1] (as jnp.interp).
        t = _float(t)
        frac, lo, slope = self._segment(t)
        knots = self.log_alpha_knots.astype(t.dtype)
        return jnp.where(t < 0, knots[0], jnp.where(t > 1, knots[-1], lo + frac * slope))

    def f(self, t) -> Array:
        """``f = d log alpha / dt = N (log alpha_{k+1} - log alpha_k)`` on ``[k/N, (k+1)/N)``."""
        t = _float(t)
        _, _, slope = self._segment(t)
        return jnp.where((t < 0) | (t > 1), 0.0, self.num_train_timesteps * slope)

    def t_from_log_snr(self, lam) -> Array:
        lam = _float(lam)
        log_alpha = _log_alpha_from_log_snr(lam)
        knots = self.log_alpha_knots.astype(lam.dtype)
        return jnp.interp(-log_alpha, -knots, self._knot_times(lam.dtype))

    def model_time(self, t) -> Array:
        index = _float(t) * self.num_train_timesteps - 1.0
        return jnp.round(index) if self.quantize else index

    def t_from_model_time(self, m) -> Array:
        """``t = (index + 1) / N``."""
        return (_float(m) + 1.0) / self.num_train_timesteps


@_pytree
class VE(Schedule):
    """Variance exploding (score-SDE) with its exact marginal, so that ``sigma(0) = 0``.

    ``alpha = 1``, ``sigma(t)^2 = sigma_min^2 ((sigma_max/sigma_min)^(2t) - 1)``, the variance the
    SDE ``dx = sqrt(d[sigma_min^2 r^(2t)]/dt) dW`` gives from clean data. ``t_min`` is where
    ``sigma = sigma_min``; ``sigma(1) ~= sigma_max``.
    """

    sigma_min: float = 0.01
    sigma_max: float = 50.0
    t_max: float = 1.0

    def __post_init__(self):
        _check_parameters(self, (
            (("sigma_min",), lambda v: v > 0, "sigma_min must be positive, e.g. 0.01"),
            (("sigma_min", "sigma_max"), lambda lo, hi: hi > lo,
             "sigma_max must be larger than sigma_min, e.g. sigma_min=0.01, sigma_max=50"),
            (("t_max",), lambda hi: hi > self.t_min,
             "t_max must exceed t_min = log 2 / (2 log(sigma_max / sigma_min))"),
        ))

    @property
    def _log_r(self) -> float:
        return math.log(self.sigma_max / self.sigma_min)

    @property
    def t_min(self) -> float:
        return math.log(2.0) / (2.0 * self._log_r)

    def log_alpha(self, t) -> Array:
        return jnp.zeros_like(_float(t))

    def alpha(self, t) -> Array:
        return jnp.ones_like(_float(t))

    def sigma(self, t) -> Array:
        t = _float(t)
        return self.sigma_min * jnp.sqrt(jnp.expm1(2.0 * self._log_r * t))

    def log_snr(self, t) -> Array:
        t = _float(t)
        return -2.0 * math.log(self.sigma_min) - jnp.log(jnp.expm1(2.0 * self._log_r * t))

    def t_from_log_snr(self, lam) -> Array:
        lam = _float(lam)
        return jnp.log1p(jnp.exp(-lam) / self.sigma_min**2) / (2.0 * self._log_r)

    def f(self, t) -> Array:
        return jnp.zeros_like(_float(t))

    def g2(self, t) -> Array:
        t = _float(t)
        return 2.0 * self._log_r * self.sigma_min**2 * jnp.exp(2.0 * self._log_r * t)


@_pytree
class EDM(Schedule):
    """Karras et al. (2022): ``alpha = 1``, ``sigma(t) = t``; ``sigma_data`` is used by the
    EDM preconditioning and loss. Times are noise levels: ``t_min = sigma_min``."""

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    sigma_data: float = 0.5

    def __post_init__(self):
        _check_parameters(self, (
            (("sigma_min",), lambda v: v > 0, "sigma_min must be positive, e.g. 0.002"),
            (("sigma_min", "sigma_max"), lambda lo, hi: hi > lo,
             "sigma_max must be larger than sigma_min, e.g. sigma_min=0.002, sigma_max=80"),
            (("sigma_data",), lambda v: v > 0,
             "sigma_data must be positive (the data's standard deviation), e.g. 0.5"),
        ))

    @property
    def t_min(self) -> float:
        return self.sigma_min

    @property
    def t_max(self) -> float:
        return self.sigma_max

    def log_alpha(self, t) -> Array:
        return jnp.zeros_like(_float(t))

    def alpha(self, t) -> Array:
        return jnp.ones_like(_float(t))

    def sigma(self, t) -> Array:
        return _float(t)

    def log_snr(self, t) -> Array:
        return -2.0 * jnp.log(_float(t))

    def t_from_log_snr(self, lam) -> Array:
        return jnp.exp(-0.5 * _float(lam))

    def d_sigma(self, t) -> Array:
        return jnp.ones_like(_float(t))

    def f(self, t) -> Array:
        return jnp.zeros_like(_float(t))

    def g2(self, t) -> Array:
        return 2.0 * _float(t)


@_pytree
class RectifiedFlow(Schedule):
    """Rectified flow / linear interpolant: ``alpha = 1 - t``, ``sigma = t``, ``t`` in ``[0, 1]``.

    ``t_max = 1`` is pure noise (``lambda = -inf``); data-prediction solvers step from it exactly,
    noise-prediction solvers need ``t_max < 1``.
    """

    t_min: float = 1e-3
    t_max: float = 1.0

    def __post_init__(self):
        _check_parameters(self, (
            (("t_min", "t_max"), lambda lo, hi: 0 < lo < hi <= 1,
             "need 0 < t_min < t_max <= 1 (t = 1 is pure noise)"),
        ))

    def log_alpha(self, t) -> Array:
        return jnp.log1p(-_float(t))

    def alpha(self, t) -> Array:
        return 1.0 - _float(t)

    def sigma(self, t) -> Array:
        return _float(t)

    def log_snr(self, t) -> Array:
        t = _float(t)
        return 2.0 * (jnp.log1p(-t) - jnp.log(t))

    def t_from_log_snr(self, lam) -> Array:
        return jax.nn.sigmoid(-0.5 * _float(lam))

    def d_alpha(self, t) -> Array:
        return -jnp.ones_like(_float(t))

    def d_sigma(self, t) -> Array:
        return jnp.ones_like(_float(t))

    def f(self, t) -> Array:
        return -1.0 / (1.0 - _float(t))

    def g2(self, t) -> Array:
        t = _float(t)
        return 2.0 * t / (1.0 - t)
