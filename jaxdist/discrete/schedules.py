"""Masking/keep schedules of discrete diffusion: ``alpha(t)``, the probability that a token is kept.

Time runs from ``t = 0`` (clean data, ``alpha = 1``) to ``t = 1`` (noise, ``alpha ~ 0``). Every
schedule gives ``alpha(t)``, its derivative ``dalpha(t) <= 0`` and the inverse ``t_from_alpha(a)``
(used by the first-hitting sampler). The total noise of SEDD is ``sigma_bar(t) = -log alpha(t)``
and its rate ``sigma_bar'(t) = -alpha'(t) / alpha(t)``.

==========================  ==============================================  ================
schedule                    ``alpha(t)``                                     source
==========================  ==============================================  ================
:class:`LinearSchedule`     ``1 - t``                                        MD4, MDLM
:class:`CosineSchedule`     ``1 - cos(pi / 2 (1 - t))``                      MD4 ``cosine``
:class:`PolynomialSchedule` ``1 - t**p``                                     MD4 ``polyN``
:class:`LogLinearSchedule`  ``1 - (1 - eps) t``, ``sigma_bar = -log1p(-(1-eps) t)``  SEDD, RADD
==========================  ==============================================  ================
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = ["DiscreteSchedule", "LinearSchedule", "CosineSchedule", "PolynomialSchedule",
           "LogLinearSchedule", "SCHEDULES", "get_schedule"]


class DiscreteSchedule:
    """Base: ``alpha(t)``, ``dalpha(t)``, ``t_from_alpha(a)``; derived ``sigma_bar``, its rate."""

    def alpha(self, t) -> Array:
        raise NotImplementedError

    def dalpha(self, t) -> Array:
        raise NotImplementedError

    def t_from_alpha(self, a) -> Array:
        raise NotImplementedError

    def sigma_bar(self, t) -> Array:
        """Total noise ``-log alpha(t)`` (SEDD's ``sigma_bar``)."""
        return -jnp.log(self.alpha(t))

    def sigma_rate(self, t) -> Array:
        """``d sigma_bar / dt = -alpha'(t) / alpha(t)``."""
        return -self.dalpha(t) / self.alpha(t)


@dataclasses.dataclass(frozen=True)
class LinearSchedule(DiscreteSchedule):
    """``alpha(t) = 1 - t``."""

    def alpha(self, t) -> Array:
        return 1.0 - jnp.asarray(t)

    def dalpha(self, t) -> Array:
        return -jnp.ones_like(jnp.asarray(t, dtype=jnp.result_type(float)))

    def t_from_alpha(self, a) -> Array:
        return 1.0 - jnp.asarray(a)


@dataclasses.dataclass(frozen=True)
class CosineSchedule(DiscreteSchedule):
    """``alpha(t) = 1 - cos(pi / 2 (1 - t)) = 1 - sin(pi t / 2)`` (exactly 1 at ``t = 0``),
    ``alpha'(t) = -pi / 2 cos(pi t / 2)``."""

    def alpha(self, t) -> Array:
        return 1.0 - jnp.sin(0.5 * jnp.pi * jnp.asarray(t))

    def dalpha(self, t) -> Array:
        return -0.5 * jnp.pi * jnp.cos(0.5 * jnp.pi * jnp.asarray(t))

    def t_from_alpha(self, a) -> Array:
        return jnp.arcsin(1.0 - jnp.asarray(a)) / (0.5 * jnp.pi)


@dataclasses.dataclass(frozen=True)
class PolynomialSchedule(DiscreteSchedule):
    """``alpha(t) = 1 - t**p`` (``p > 0``), ``alpha'(t) = -p t**(p - 1)``."""

    p: float = 2.0

    def __post_init__(self):
        if not (isinstance(self.p, (int, float)) and math.isfinite(self.p) and self.p > 0):
            raise ValueError(f"PolynomialSchedule(p={self.p!r}): p must be a positive number.")

    def alpha(self, t) -> Array:
        return 1.0 - jnp.asarray(t) ** self.p

    def dalpha(self, t) -> Array:
        return -self.p * jnp.asarray(t) ** (self.p - 1.0)

    def t_from_alpha(self, a) -> Array:
        return (1.0 - jnp.asarray(a)) ** (1.0 / self.p)


@dataclasses.dataclass(frozen=True)
class LogLinearSchedule(DiscreteSchedule):
    """SEDD's log-linear noise: ``sigma_bar(t) = -log1p(-(1 - eps) t)``, so
    ``alpha(t) = 1 - (1 - eps) t`` and ``alpha(1) = eps``."""

    eps: float = 1e-3

    def __post_init__(self):
        if not (isinstance(self.eps, (int, float)) and 0.0 <= self.eps < 1.0):
            raise ValueError(f"LogLinearSchedule(eps={self.eps!r}): eps must be in [0, 1).")

    def alpha(self, t) -> Array:
        return 1.0 - (1.0 - self.eps) * jnp.asarray(t)

    def dalpha(self, t) -> Array:
        return -(1.0 - self.eps) * jnp.ones_like(jnp.asarray(t, dtype=jnp.result_type(float)))

    def t_from_alpha(self, a) -> Array:
        return (1.0 - jnp.asarray(a)) / (1.0 - self.eps)

    def sigma_bar(self, t) -> Array:
        return -jnp.log1p(-(1.0 - self.eps) * jnp.asarray(t))


#: schedule names (CLI and experiments) -> factories
SCHEDULES = {"linear": LinearSchedule, "cosine": CosineSchedule, "poly2": PolynomialSchedule,
             "loglinear": LogLinearSchedule}


def get_schedule(name: str | DiscreteSchedule) -> DiscreteSchedule:
    """A schedule by name (``linear``, ``cosine``, ``poly<p>``, ``loglinear``) or as given."""
    if isinstance(name, DiscreteSchedule):
        return name
    if isinstance(name, str) and name.startswith("poly"):
        try:
            return PolynomialSchedule(float(name[4:]))
        except ValueError:
            pass
    if name not in SCHEDULES:
        raise ValueError(f"schedule={name!r} is unknown; use one of linear, cosine, poly<p> "
                         "(e.g. poly2), loglinear, or a DiscreteSchedule instance.")
    return SCHEDULES[name]()
