"""Langevin MCMC on a score or a log-density: unadjusted Langevin (ULA) and MALA.

ULA: ``x <- x + eps score(x) + sqrt(2 eps) z``. MALA proposes the same move ``y`` and accepts
it with probability ``min(1, p(y) q(x | y) / (p(x) q(y | x)))``,
``log q(y | x) = -||y - x - eps grad log p(x)||^2 / (4 eps)``, which makes ``p`` exactly invariant.

Both start from given points ``x_init [batch, ...]`` and run ``n_steps`` (stopping early, e.g.
Langevin started at the data and stopped after a few steps, recovers the weights of a mixture of
log-concave components). Noise is per example (``jd.noise.normal_like``), so a chain does not
depend on the batch size.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from .noise import normal_like, uniform_like

Array = jax.Array

__all__ = ["langevin", "mala", "MALAResult", "score_from_log_prob", "score_from_energy"]


def score_from_log_prob(log_prob_fn: Callable[[Array], Array]) -> Callable[[Array], Array]:
    """``x [batch, ...] -> grad log p(x)`` for ``log_prob_fn(x) -> [batch]``."""
    return jax.grad(lambda x: jnp.sum(log_prob_fn(x)))


def score_from_energy(energy_fn: Callable[[Array], Array]) -> Callable[[Array], Array]:
    """``x -> -grad E(x)`` for an energy ``energy_fn(x) -> [batch]`` (``p ∝ exp(-E)``)."""
    return jax.grad(lambda x: -jnp.sum(energy_fn(x)))


def _check(step_size: float, n_steps: int) -> None:
    if not step_size > 0:
        raise ValueError(f"step_size={step_size} must be > 0.")
    if not (isinstance(n_steps, int) and n_steps >= 0):
        raise ValueError(f"n_steps={n_steps!r} must be an int >= 0.")


def langevin(key: Array, x_init: Array, score_fn: Callable[[Array], Array], step_size: float,
             n_steps: int) -> Array:
    """Unadjusted Langevin: ``n_steps`` of ``x <- x + eps score(x) + sqrt(2 eps) z`` from
    ``x_init [batch, ...]``; step ``k`` draws from ``fold_in(key, k)``. Returns ``x``."""
    _check(step_size, n_steps)

    def body(k, x):
        z = normal_like(jax.random.fold_in(key, k), x)
        return x + step_size * score_fn(x) + jnp.sqrt(2.0 * step_size) * z

    return jax.lax.fori_loop(0, n_steps, body, jnp.asarray(x_init))


class MALAResult(NamedTuple):
    """``x``: final states; ``acceptance_rate``: fraction of accepted proposals per example."""

    x: Array
    acceptance_rate: Array


def mala(key: Array, x_init: Array, log_prob_fn: Callable[[Array], Array], step_size: float,
         n_steps: int) -> MALAResult:
    """Metropolis-adjusted Langevin from ``x_init [batch, ...]`` on ``log_prob_fn(x) -> [batch]``."""
    _check(step_size, n_steps)
    value_and_grad = jax.value_and_grad(lambda x: jnp.sum(log_prob_fn(x)))
    sum_axes = lambda v: jnp.sum(v.reshape(v.shape[0], -1), axis=1)  # noqa: E731

    def logp_and_score(x):
        return log_prob_fn(x), value_and_grad(x)[1]

    def log_q(y, x, score_x):  # log q(y | x) up to a constant
        return -sum_axes((y - x - step_size * score_x) ** 2) / (4.0 * step_size)

    def body(k, carry):
        x, lp, sc, accepted = carry
        kk = jax.random.fold_in(key, k)
        kz, ku = jax.random.split(kk)
        y = x + step_size * sc + jnp.sqrt(2.0 * step_size) * normal_like(kz, x)
        lp_y, sc_y = logp_and_score(y)
        log_ratio = lp_y + log_q(x, y, sc_y) - lp - log_q(y, x, sc)
        u = uniform_like(ku, lp[:, None])[:, 0]
        accept = jnp.log(u) < log_ratio
        sel = lambda a, b: jnp.where(accept.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)  # noqa
        return sel(y, x), sel(lp_y, lp), sel(sc_y, sc), accepted + accept

    x = jnp.asarray(x_init)
    lp, sc = logp_and_score(x)
    x, _, _, accepted = jax.lax.fori_loop(
        0, n_steps, body, (x, lp, sc, jnp.zeros(x.shape[:1], jnp.int32)))
    return MALAResult(x, accepted / max(n_steps, 1))
