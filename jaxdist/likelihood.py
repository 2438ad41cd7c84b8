"""Exact likelihoods through the probability-flow ODE, solved adaptively and compiled.

Along the PF-ODE ``dx/dt = v(x, t) = alpha'(t) x0_hat + sigma'(t) eps_hat`` the log-density
obeys ``d log p_t(x_t) / dt = -div v(x_t, t)``, so integrating the augmented system from ``t0``
(the data) to ``t1`` gives

    log p_{t0}(x) = log p_{t1}(x_{t1}) + int_{t0}^{t1} div v(x_t, t) dt.

The divergence is exact (``jacfwd``, cost ``D`` Jacobian-vector products: small dimension) or
the Hutchinson estimator ``div v ~ mean_k e_k^T (dv/dx) e_k`` with ``n_probes`` Rademacher or
Gaussian probes ``e_k`` fixed along the solve (unbiased; forward-mode JVPs under ``vmap``).
The prior ``log p_{t1}`` defaults to ``N(0, (alpha(t1)^2 prior_var + sigma(t1)^2) I)``.
The solve is a diffrax ``Tsit5`` with a PID controller, inside ``jit`` (no host callbacks).
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from .noise import normal_like, rademacher_like, uniform_like
from .solvers.primitives import output_in_space

Array = jax.Array

__all__ = ["log_prob", "LogProbResult", "bits_per_dim", "bits_per_dim_from_log_prob", "dequantise",
           "gaussian_prior"]


class LogProbResult(NamedTuple):
    """``log_prob [batch]``: ``log p_{t0}(x)``; ``prior_log_prob [batch]`` at ``x_{t1}``;
    ``delta [batch]``: the divergence integral; ``x_t1``: the ODE end point; ``num_steps``:
    accepted+rejected solver steps."""

    log_prob: Array
    prior_log_prob: Array
    delta: Array
    x_t1: Array
    num_steps: Array


def gaussian_prior(std: float | Array) -> Callable[[Array], Array]:
    """``z [batch, ...] -> log N(z; 0, std^2 I)`` summed over non-batch axes."""

    def logp(z):
        flat = z.reshape(z.shape[0], -1)
        d = flat.shape[1]
        return (-0.5 * jnp.sum(flat**2, axis=1) / std**2
                - d * (jnp.log(std) + 0.5 * math.log(2 * math.pi)))

    return logp


def _sum_rest(v: Array) -> Array:
    return jnp.sum(v.reshape(v.shape[0], -1), axis=1)


def log_prob(denoiser: Any, x: Array, *, key: Array | None = None, t0: float = 1e-5,
             t1: float | None = None, divergence: str = "exact", probe: str = "rademacher",
             n_probes: int = 1, rtol: float = 1e-5, atol: float = 1e-5,
             prior_log_prob: Callable[[Array], Array] | None = None, prior_var: float = 1.0,
             max_steps: int = 4096, cond: dict | None = None) -> LogProbResult:
    """``log p_{t0}(x)`` of ``x [batch, ...]`` under ``denoiser`` via the PF-ODE (module docstring).

    Args:
      denoiser: a ``jd.Denoiser`` (its schedule defines ``v``).
      x: points ``[batch, ...]``.
      key: PRNG key for the Hutchinson probes (required when ``divergence="hutchinson"``).
      t0: start of the integration (the data end).
      t1: end of the integration (defaults to ``schedule.t_max``).
      divergence: ``"exact"`` (Jacobian trace) or ``"hutchinson"``.
      probe: ``"rademacher"`` or ``"gaussian"``; ``n_probes``: probes averaged per example.
      rtol: relative tolerance of the adaptive solve.
      atol: absolute tolerance of the adaptive solve.
      prior_log_prob: ``z [batch, ...] -> [batch]``; default a centred Gaussian whose variance
        is ``alpha(t1)^2 prior_var + sigma(t1)^2``.
      max_steps: step budget of the solver.
      cond: keyword conditioning of the denoiser.

    Returns:
      :class:`LogProbResult`.
    """
    import diffrax

    if divergence not in ("exact", "hutchinson"):
        raise ValueError(f"divergence={divergence!r} must be 'exact' or 'hutchinson'.")
    if probe not in ("rademacher", "gaussian"):
        raise ValueError(f"probe={probe!r} must be 'rademacher' or 'gaussian'.")
    if divergence == "hutchinson" and key is None:
        raise ValueError("divergence='hutchinson' needs key=jax.random.key(seed) for the probes.")
    if not (isinstance(n_probes, int) and n_probes >= 1):
        raise ValueError(f"n_probes={n_probes!r} must be a positive int.")
    schedule, cond = denoiser.schedule, dict(cond or {})
    x = jnp.asarray(x)
    t1 = float(schedule.t_max if t1 is None else t1)
    if not t1 > t0 >= 0:
        raise ValueError(f"need t1 > t0 >= 0, got t0={t0}, t1={t1}.")

    def velocity(y, t):
        x0, eps = denoiser(y, t, **cond)
        return output_in_space("velocity", x0, eps, y, t, schedule)

    if divergence == "exact":
        def div(y, t):
            def single(yi):
                f = lambda u: velocity(u[None], t)[0].reshape(-1)  # noqa: E731
                jac = jax.jacfwd(f)(yi)
                return jnp.trace(jac.reshape(f(yi).shape[0], -1))
            return jax.vmap(single)(y)
    else:
        draw = rademacher_like if probe == "rademacher" else normal_like
        probes = jnp.stack([draw(jax.random.fold_in(key, k), x) for k in range(n_probes)])

        def div(y, t):
            def one(e):
                _, jv = jax.jvp(lambda u: velocity(u, t), (y,), (e,))
                return _sum_rest(e * jv)
            return jnp.mean(jax.vmap(one)(probes), axis=0)

    def rhs(t, state, args):
        y, _ = state
        return velocity(y, t), div(y, t)

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(rhs), diffrax.Tsit5(), t0=t0, t1=t1, dt0=(t1 - t0) / 64,
        y0=(x, jnp.zeros(x.shape[:1], x.dtype)),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        saveat=diffrax.SaveAt(t1=True), max_steps=max_steps)
    x_t1, delta = sol.ys[0][0], sol.ys[1][0]
    if prior_log_prob is None:
        var = schedule.alpha(jnp.asarray(t1, x.dtype)) ** 2 * prior_var \
            + schedule.sigma(jnp.asarray(t1, x.dtype)) ** 2
        prior_log_prob = gaussian_prior(jnp.sqrt(var))
    prior = prior_log_prob(x_t1)
    return LogProbResult(prior + delta, prior, delta, x_t1,
                         sol.stats["num_steps"])


def bits_per_dim_from_log_prob(log_prob_z: Array, dim: int, *, n_bins: int = 256,
                               data_range: tuple[float, float] = (-1.0, 1.0)) -> Array:
    """Bits per dimension of discrete data from ``log p_z`` of its dequantised, rescaled value.

    With ``y = (x + u) / n_bins`` in ``[0, 1)`` and ``z = lo + (hi - lo) y``:
    ``log p_y = log p_z + D log(hi - lo)`` and ``bpd = -log p_y / (D ln 2) + log2(n_bins)``.
    """
    lo, hi = data_range
    log_p_y = log_prob_z + dim * math.log(hi - lo)
    return -log_p_y / (dim * math.log(2.0)) + math.log2(n_bins)


def bits_per_dim(denoiser: Any, x_int: Array, key: Array, *, n_bins: int = 256,
                 data_range: tuple[float, float] = (-1.0, 1.0), **kwargs) -> Array:
    """Bits per dimension ``[batch]`` of integer data ``x_int`` in ``{0, .., n_bins - 1}``
    (e.g. uint8 images) with uniform dequantisation ``y = (x + u) / n_bins``, ``u ~ U[0, 1)``,
    mapped to ``data_range`` where the model lives. ``kwargs`` go to :func:`log_prob` (pass a
    different ``key`` there for Hutchinson probes)."""
    k_deq, k_probe = jax.random.split(key)
    z = dequantise(x_int, k_deq, n_bins=n_bins, data_range=data_range)
    kwargs.setdefault("key", k_probe)
    res = log_prob(denoiser, z, **kwargs)
    dim = int(math.prod(z.shape[1:]))
    return bits_per_dim_from_log_prob(res.log_prob, dim, n_bins=n_bins, data_range=data_range)


def dequantise(x_int: Array, key: Array, *, n_bins: int = 256,
               data_range: tuple[float, float] = (-1.0, 1.0)) -> Array:
    """``z = lo + (hi - lo) (x + u) / n_bins`` with ``u ~ U[0, 1)``: integer data as a point of
    its bin in ``data_range`` (:func:`bits_per_dim` uses ``jax.random.split(key)[0]``)."""
    x = jnp.asarray(x_int).astype(jnp.result_type(float))
    lo, hi = data_range
    return lo + (hi - lo) * (x + uniform_like(key, x)) / n_bins
