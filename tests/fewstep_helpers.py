"""Shared pieces of the few-step tests: Gaussian data, exact-plus-perturbation models, the
standard-error checks, Gaussian generator / fake-score / density-ratio families."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jaxdist as jd
from jaxdist.testing.fewstep import GaussianFlow, gaussian_logpdf

MU = np.array([0.5, -1.0])
SCALES = np.array([0.4, 1.5])
B = 4096
#: a teacher schedule whose range covers every level the students ask for
WIDE_EDM = jd.schedules.EDM(sigma_max=1e4, sigma_data=1.0)


def gaussian() -> jd.testing.GaussianMixture:
    return jd.testing.GaussianMixture([1.0], jnp.asarray(MU)[None], jnp.asarray(SCALES**2)[None])


def flow(schedule) -> GaussianFlow:
    return GaussianFlow(jnp.asarray(MU), jnp.asarray(SCALES**2), schedule)


def zero_params() -> dict:
    return {"a": jnp.zeros(2), "b": jnp.zeros(2)}


def data(key: int = 0, n: int = B):
    return gaussian().sample(jax.random.key(100 + key), n)


def per_example_grads(loss, batch, key: int = 0):
    """``params -> (jacobian of aux['per_example'] [B, ...] per leaf, aux)``, jitted once per
    ``loss`` (``batch`` is an argument, not a constant)."""
    def per(p, b):
        aux = loss(p, jax.random.key(key), b)[1]
        return aux["per_example"], aux

    jac = jax.jit(jax.jacfwd(per, has_aux=True))
    return lambda p, b=batch: jac(p, b)


def assert_zero_mean(grads: dict, n_se: float = 4.0) -> None:
    """Every gradient component's mean over the batch within ``n_se`` standard errors of 0."""
    for name, g in grads.items():
        g = np.asarray(g).reshape(g.shape[0], -1)
        mean, se = g.mean(0), g.std(0, ddof=1) / np.sqrt(g.shape[0])
        assert np.all(np.abs(mean) < n_se * se + 1e-12), (name, mean, se)


def assert_restoring(grad_fn, direction: dict, eps: float) -> None:
    """At ``eps * direction`` the descent direction points back: ``<grad, direction> > 0`` by
    more than 4 standard errors (the loss rises along the perturbation)."""
    grads, _ = grad_fn(jax.tree.map(lambda d: eps * d, direction))
    inner = sum(np.asarray(grads[k]).reshape(grads[k].shape[0], -1) @ np.ravel(direction[k])
                for k in direction)
    mean, se = inner.mean(), inner.std(ddof=1) / np.sqrt(inner.shape[0])
    assert mean > 4 * se and mean > 0, (mean, se)


# ----------------------------------------------------------------------------- DMD families
def linear_generator(schedule, grid):
    """``G(z) = mu + L z`` as a one-step generator denoiser: ``x0 = mu + L x / sigma(tau_0)``."""
    scale = schedule.sigma(grid[0])

    def den(p):
        return jd.Denoiser(lambda x, t: p["mu"] + (x / scale) @ p["L"].T, schedule, "x0")

    return den


def gaussian_x0(schedule, mean, cov, x, t):
    """The exact ``x0_hat`` of ``N(mean, cov)`` data at ``x [B, D]``, times ``t`` (scalar or
    ``[B]``): ``mean + alpha C (alpha^2 C + sigma^2)^-1 (x - alpha mean)``."""
    d = mean.shape[0]
    a = jnp.broadcast_to(schedule.alpha(t), x.shape[:1])
    s = jnp.broadcast_to(schedule.sigma(t), x.shape[:1])

    def one(xi, ai, si):
        gain = ai * cov @ jnp.linalg.inv(ai**2 * cov + si**2 * jnp.eye(d, dtype=x.dtype))
        return mean + gain @ (xi - ai * mean)

    return jax.vmap(one)(x, a, s)


def gaussian_fake(schedule):
    """A fake-score family that contains every Gaussian: params ``{"m", "A"}``, ``C = A A^T``;
    ``(apply_fn, denoiser_fn)`` with ``apply_fn`` predicting ``x0``."""
    def apply_fn(p, x, t):
        return gaussian_x0(schedule, p["m"], p["A"] @ p["A"].T, x, t)

    return apply_fn, lambda p: jd.Denoiser(lambda x, t: apply_fn(p, x, t), schedule, "x0")


def exact_log_ratio(schedule, gen_params):
    """``log p_t(x) - log q_t(x)`` for the Gaussian teacher ``p`` and generator ``q``."""
    mu_p, cov_p = jnp.asarray(MU), jnp.diag(jnp.asarray(SCALES**2))
    mu_q = gen_params["mu"]
    cov_q = gen_params["L"] @ gen_params["L"].T

    def log_ratio(x, t):
        a, s = schedule.alpha(t), schedule.sigma(t)

        def one(xi, ai, si):
            eye = jnp.eye(2, dtype=x.dtype)
            return (gaussian_logpdf(xi, ai * mu_p, ai**2 * cov_p + si**2 * eye)
                    - gaussian_logpdf(xi, ai * mu_q, ai**2 * cov_q + si**2 * eye))

        return jax.vmap(one)(x, jnp.broadcast_to(a, x.shape[:1]), jnp.broadcast_to(s, x.shape[:1]))

    return log_ratio
