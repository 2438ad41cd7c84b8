r"""Exact few-step oracles for Gaussian data, in any schedule; Gaussian f-divergences.

For data ``x0 ~ N(mu, diag(s^2))`` and ``x_t = alpha_t x0 + sigma_t eps`` every noised marginal
is ``N(alpha_t mu, diag(v_t))`` with ``v_t = alpha_t^2 s^2 + sigma_t^2``, and the
probability-flow map from time ``t`` to time ``r`` is affine:

    ``Phi_{t->r}(x) = alpha_r mu + sqrt(v_r / v_t) (x - alpha_t mu)``.

From it, in closed form (:class:`GaussianFlow`):

* the PF-ODE velocity ``d Phi_{t->r}/dr |_{r=t} = alpha'_t mu + v'_t / (2 v_t) (x - alpha_t mu)``;
* the consistency function ``f(x, t) = Phi_{t->t_0}(x)``;
* MeanFlow's average velocity ``u(z, r, t) = (z - Phi_{t->r}(z)) / (t - r)`` (``u(z, t, t)`` is
  the velocity);
* the sCM network ``F*`` of TrigFlow, ``cos t x - sin t sigma_d F*(x, t) = Phi_{t->0}(x)``;
* the shortcut map ``s(x, t, d) = u(x, t - d, t)``, and the exact fixed point of the shortcut
  objective with ``M`` base steps: one step of ``d = 2^k / M`` equals ``2^k`` Euler steps of the
  exact velocity of size ``1 / M``.

:func:`gaussian_f_divergence` integrates ``D_f(p || q) = E_q[f(p / q)]`` between two Gaussians on
a grid (1-D or 2-D; differentiable, so ``jax.grad`` gives the exact gradient the f-distill
estimator must reproduce); :func:`gaussian_kl` is the closed form of the KL divergence.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from ..schedules import Schedule, expand_to

Array = jax.Array

__all__ = ["GaussianFlow", "gaussian_logpdf", "gaussian_kl", "gaussian_f_divergence"]


class GaussianFlow:
    """Closed-form flow maps of ``N(mean, diag(variances))`` data under ``schedule``.

    Points ``x`` are ``[B, D]`` (or ``[D]``); times are scalars or ``[B]``.
    """

    def __init__(self, mean, variances, schedule: Schedule):
        self.mean = jnp.atleast_1d(jnp.asarray(mean))
        self.variances = jnp.broadcast_to(jnp.asarray(variances, self.mean.dtype),
                                          self.mean.shape)
        self.schedule = schedule

    def _coef(self, t, x: Array):
        a = expand_to(self.schedule.alpha(t), x)
        s = expand_to(self.schedule.sigma(t), x)
        return a, s, a * a * self.variances + s * s

    def marginal_variance(self, t, x: Array) -> Array:
        """``v_t = alpha_t^2 s^2 + sigma_t^2`` broadcast against ``x``."""
        return self._coef(t, x)[2]

    def flow_map(self, x: Array, t, r) -> Array:
        """``Phi_{t->r}(x)``: the probability-flow ODE solution at ``r`` from ``x`` at ``t``."""
        a_t, _, v_t = self._coef(t, x)
        a_r, _, v_r = self._coef(r, x)
        return a_r * self.mean + jnp.sqrt(v_r / v_t) * (x - a_t * self.mean)

    def velocity(self, x: Array, t) -> Array:
        """``dx/dt`` of the probability-flow ODE at ``(x, t)``."""
        a, s, v = self._coef(t, x)
        da = expand_to(self.schedule.d_alpha(t), x)
        ds = expand_to(self.schedule.d_sigma(t), x)
        dv = 2.0 * a * da * self.variances + 2.0 * s * ds
        return da * self.mean + 0.5 * dv / v * (x - a * self.mean)

    def consistency(self, x: Array, t, t0=0.0) -> Array:
        """The consistency function ``f(x, t) = Phi_{t->t0}(x)`` (``t0 = 0``: clean data)."""
        return self.flow_map(x, t, t0)

    def mean_velocity(self, x: Array, r, t) -> Array:
        """MeanFlow's ``u(x, r, t) = (x - Phi_{t->r}(x)) / (t - r)``; the velocity where
        ``r = t``."""
        gap = jnp.asarray(t) - jnp.asarray(r)
        same = expand_to(gap == 0, x)
        safe = jnp.where(gap == 0, 1.0, gap)
        u = (x - self.flow_map(x, t, r)) / expand_to(safe, x)
        return jnp.where(same, self.velocity(x, t), u)

    def shortcut(self, x: Array, t, d, base_steps: int | None = None) -> Array:
        """The shortcut map ``s(x, t, d)`` with ``x_{t-d} = x_t - d s`` (time runs towards data).

        ``base_steps=None``: the exact flow, ``s = u(x, t - d, t)``. ``base_steps = M``: the exact
        fixed point of the shortcut-model objective (the flow-matching velocity at the smallest
        step ``1/M`` and doubling above it), ``s = (x - E^{dM}(x)) / d`` where ``E`` is one
        Euler step ``x <- x - v(x, t) / M``; ``d M`` must be a power of two.
        """
        if base_steps is None:
            return self.mean_velocity(x, jnp.asarray(t) - jnp.asarray(d), t)
        m = float(base_steps)
        t = jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:1])
        d = jnp.broadcast_to(jnp.asarray(d, x.dtype), x.shape[:1])
        n = jnp.round(d * m).astype(jnp.int32)

        def one(xi, ti, ni):
            def body(k, y):
                tk = ti - k / m
                return y - self.velocity(y[None], tk[None])[0] / m
            return jax.lax.fori_loop(0, ni, body, xi)

        end = jax.vmap(one)(x, t, n)
        return jnp.where(expand_to(n == 0, x), self.velocity(x, t),
                         (x - end) / expand_to(jnp.where(d > 0, d, 1.0), x))

    def scm_network(self, x: Array, t) -> Array:
        """TrigFlow's exact sCM network ``F*(x, t) = (cos t x - Phi_{t->0}(x)) / (sigma_d sin t)``
        (the schedule must be :class:`jaxdist.objectives.trigflow.TrigFlow`); ``x`` unscaled."""
        sd = getattr(self.schedule, "sigma_data", None)
        if sd is None:
            raise ValueError("scm_network needs a TrigFlow schedule (it has sigma_data).")
        c, s = expand_to(jnp.cos(t), x), expand_to(jnp.sin(t), x)
        return (c * x - self.flow_map(x, t, 0.0)) / (sd * s)

    def sample(self, key: Array, n: int) -> Array:
        """``n`` data draws ``[n, D]``."""
        z = jax.random.normal(key, (n,) + self.mean.shape, self.mean.dtype)
        return self.mean + jnp.sqrt(self.variances) * z


def gaussian_logpdf(x: Array, mean: Array, cov: Array) -> Array:
    """``log N(x; mean, cov)`` for ``x [..., D]`` and a full covariance ``[D, D]``."""
    d = mean.shape[-1]
    chol = jnp.linalg.cholesky(cov)
    z = jax.scipy.linalg.solve_triangular(chol, (x - mean).reshape(-1, d).T, lower=True)
    logdet = 2.0 * jnp.sum(jnp.log(jnp.diag(chol)))
    out = -0.5 * (jnp.sum(z * z, axis=0) + d * jnp.log(2 * jnp.pi) + logdet)
    return out.reshape(x.shape[:-1])


def gaussian_kl(mean_q: Array, cov_q: Array, mean_p: Array, cov_p: Array) -> Array:
    """``KL(N(mean_q, cov_q) || N(mean_p, cov_p))`` in closed form."""
    d = mean_q.shape[-1]
    inv_p = jnp.linalg.inv(cov_p)
    diff = mean_p - mean_q
    return 0.5 * (jnp.trace(inv_p @ cov_q) + diff @ inv_p @ diff - d
                  + jnp.linalg.slogdet(cov_p)[1] - jnp.linalg.slogdet(cov_q)[1])


def gaussian_f_divergence(f_of_log_ratio: Callable[[Array], Array], mean_p: Array, cov_p: Array,
                          mean_q: Array, cov_q: Array, *, n: int = 401,
                          width: float = 9.0) -> Array:
    """``D_f(p || q) = int q f(p / q)`` by the trapezoid rule on a grid of ``n`` points per axis
    over ``+- width`` standard deviations of the wider of ``p, q`` (``D <= 2``).

    ``f_of_log_ratio(log r)`` is ``f(r)`` written in ``log r``, e.g. ``lambda l: -l`` for
    ``KL(q || p)``. Differentiable in all four moments.
    """
    d = mean_p.shape[-1]
    if d > 2:
        raise ValueError(f"quadrature is for D <= 2 (got D = {d}); use gaussian_kl in higher D.")
    centre = jax.lax.stop_gradient(0.5 * (mean_p + mean_q))
    scale = jax.lax.stop_gradient(jnp.sqrt(jnp.maximum(jnp.diag(cov_p), jnp.diag(cov_q))))
    axes = [centre[i] + scale[i] * jnp.linspace(-width, width, n) for i in range(d)]
    pts = jnp.stack(jnp.meshgrid(*axes, indexing="ij"), -1).reshape(-1, d)
    log_p = gaussian_logpdf(pts, mean_p, cov_p)
    log_q = gaussian_logpdf(pts, mean_q, cov_q)
    vals = (jnp.exp(log_q) * f_of_log_ratio(log_p - log_q)).reshape((n,) * d)
    for i in reversed(range(d)):
        vals = jnp.trapezoid(vals, axes[i], axis=i)
    return vals
