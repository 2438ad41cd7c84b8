"""Gaussian-mixture data with exact predictions at every noise level, for any schedule.

For data ``x0 ~ sum_k pi_k N(mu_k, diag(s_k^2))`` and ``x_t = alpha x0 + sigma eps`` the marginal is
``sum_k pi_k N(alpha mu_k, diag(v_k))`` with ``v_k = alpha^2 s_k^2 + sigma^2``. With posterior
component weights ``w_k(x) ∝ pi_k N(x; alpha mu_k, v_k)``:

* ``x0_hat = sum_k w_k (mu_k + alpha s_k^2 / v_k (x - alpha mu_k))``,
* ``eps_hat = sum_k w_k sigma (x - alpha mu_k) / v_k``,
* ``score = -sum_k w_k (x - alpha mu_k) / v_k``.

Times are the schedule's own times ``t`` in ``[0, t_max]`` (concrete times outside that range are an
error). A network wrapped in ``jd.Denoiser`` is called with ``schedule.model_time(t)`` instead
(for ``VPDiscrete`` the index ``N t - 1``): an oracle standing in for such a network takes
``time="model"``.

For one component the probability-flow ODE is solved in closed form,
``x_t = alpha_t mu + sqrt(v_t / v_s) (x_s - alpha_s mu)``; for a mixture ``ode_solution`` is an
adaptive 8th-order solve (diffrax ``Dopri8``) of ``dx/dt = f x - g^2/2 score`` at tight tolerances.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..denoiser import BaseDenoiser
from ..schedules import Schedule

Array = jax.Array

__all__ = ["GaussianMixture", "ExactDenoiser", "builtin_mixture", "TIMES"]

#: what the ``t`` given to the oracle's predictions means: the schedule's time, or what a network
#: inside ``jd.Denoiser`` receives (``schedule.model_time(t)``)
TIMES = ("schedule", "model")


def _schedule_time(schedule: Schedule, t, time: str):
    """``t`` as a schedule time, checked against ``[0, t_max]`` when concrete."""
    if time not in TIMES:
        raise ValueError(f"time={time!r} must be one of {TIMES}.")
    if time == "model":
        t = schedule.t_from_model_time(t)
    if isinstance(t, jax.core.Tracer):
        return t
    values = np.asarray(t, dtype=np.float64)
    hi = float(schedule.t_max)
    if values.size and (np.any(values < 0) or np.any(values > hi * (1 + 1e-5) + 1e-12)):
        bad = values[(values < 0) | (values > hi * (1 + 1e-5) + 1e-12)].ravel()[0]
        hint = ""
        if time == "schedule" and float(schedule.model_time(hi)) != hi:
            hint = (f"; a network inside jd.Denoiser receives schedule.model_time(t) "
                    f"(here up to {float(schedule.model_time(hi)):g}): pass time='model'")
        raise ValueError(f"t={bad:g} is outside the time range [0, {hi:g}] of "
                         f"{type(schedule).__name__}{hint}.")
    return t


class GaussianMixture:
    """A mixture of diagonal Gaussians in ``D`` dimensions.

    Args:
      weights: ``[K]`` mixture weights (normalised here).
      means: ``[K, D]``.
      variances: ``[K, D]`` (or ``[K]`` / scalar, broadcast).
    """

    def __init__(self, weights: jax.typing.ArrayLike, means: jax.typing.ArrayLike,
                 variances: jax.typing.ArrayLike):
        means = jnp.atleast_2d(jnp.asarray(means))
        weights = jnp.asarray(weights, dtype=means.dtype).reshape(-1)
        if weights.shape[0] != means.shape[0]:
            raise ValueError(f"weights has {weights.shape[0]} components but means has "
                             f"{means.shape[0]}.")
        variances = jnp.asarray(variances, dtype=means.dtype)
        if variances.ndim == 1 and variances.shape[0] == means.shape[0] and means.shape[1] != 1:
            variances = variances[:, None]
        variances = jnp.broadcast_to(variances, means.shape)
        if not isinstance(weights, jax.core.Tracer) and not isinstance(variances, jax.core.Tracer):
            if not bool(jnp.all(weights >= 0)) or float(weights.sum()) <= 0:
                raise ValueError("weights must be non-negative with a positive sum.")
            if not bool(jnp.all(variances >= 0)):
                raise ValueError("variances must be non-negative.")
        self.weights = weights / weights.sum()
        self.means = means
        self.variances = variances

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    @property
    def mean(self) -> Array:
        """Mixture mean ``[D]``."""
        return self.weights @ self.means

    @property
    def covariance(self) -> Array:
        """Mixture covariance ``[D, D]``."""
        m = self.mean
        centred = self.means - m
        return (jnp.diag(self.weights @ self.variances)
                + jnp.einsum("k,ki,kj->ij", self.weights, centred, centred))

    # ---------------------------------------------------------------------------------------
    def sample(self, key: Array, n: int) -> Array:
        """``n`` draws ``[n, D]`` from the data distribution."""
        k1, k2 = jax.random.split(key)
        comp = jax.random.choice(k1, self.weights.shape[0], (n,), p=self.weights)
        noise = jax.random.normal(k2, (n, self.dim), self.means.dtype)
        return self.means[comp] + jnp.sqrt(self.variances[comp]) * noise

    def _posterior(self, schedule: Schedule, x: Array, t):
        """Component weights ``[..., K]``, residuals ``x - alpha mu_k`` and variances ``v_k``."""
        a, s = jnp.asarray(schedule.alpha(t)), jnp.asarray(schedule.sigma(t))
        a, s = a.reshape(a.shape + (1, 1)), s.reshape(s.shape + (1, 1))  # against [..., K, D]
        v = a**2 * self.variances + s**2
        r = x[..., None, :] - a * self.means
        logp = jnp.log(self.weights) - 0.5 * jnp.sum(r**2 / v + jnp.log(2 * jnp.pi * v), -1)
        return jax.nn.softmax(logp, axis=-1), r, v, a, s, logp

    def log_prob(self, x: Array, t=0.0, schedule: Schedule | None = None) -> Array:
        """``log p_t(x)`` of the noised marginal (the data density when ``schedule`` is None)."""
        from ..schedules import EDM

        sched = schedule if schedule is not None else EDM()
        *_, logp = self._posterior(sched, x, t if schedule is not None else 0.0)
        return jax.nn.logsumexp(logp, axis=-1)

    def predictions(self, schedule: Schedule, x: Array, t, *,
                    time: str = "schedule") -> tuple[Array, Array]:
        """Exact ``(x0_hat, eps_hat)`` at ``x [..., D]`` and time ``t`` (scalar or ``[batch]``).

        ``time="schedule"``: ``t`` is the schedule's time in ``[0, t_max]``; ``time="model"``:
        ``t`` is what ``jd.Denoiser`` passes to a network, ``schedule.model_time(t)`` (use it
        when the oracle plays the network: ``jd.Denoiser(lambda x, m: gmm.predictions(schedule,
        x, m, time="model")[1], schedule, "eps")``).
        """
        t = _schedule_time(schedule, t, time)
        w, r, v, a, s, _ = self._posterior(schedule, x, t)
        w = w[..., None]
        x0 = jnp.sum(w * (self.means + a * self.variances / v * r), -2)
        eps = jnp.sum(w * s * r / v, -2)
        return x0, eps

    def score(self, schedule: Schedule, x: Array, t, *, time: str = "schedule") -> Array:
        """Exact ``grad_x log p_t(x)`` (``time`` as in :meth:`predictions`)."""
        t = _schedule_time(schedule, t, time)
        w, r, v, *_ = self._posterior(schedule, x, t)
        return -jnp.sum(w[..., None] * r / v, -2)

    def denoiser(self, schedule: Schedule) -> "ExactDenoiser":
        """A denoiser with the exact predictions of this mixture under ``schedule``."""
        return ExactDenoiser(self, schedule)

    # ---------------------------------------------------------------------------------------
    def ode_solution(self, schedule: Schedule, x_T: Array, t_start, t_end, *,
                     rtol: float | None = None, atol: float | None = None) -> Array:
        """The probability-flow ODE solution at ``t_end`` from ``x_T [..., D]`` at ``t_start``.

        Exact (closed form) for one component; for a mixture an adaptive Dopri8 solve with
        ``rtol = atol = 1e-11`` in float64 (``1e-6`` in float32).
        """
        x_T = jnp.asarray(x_T)
        if self.weights.shape[0] == 1:
            mu, var = self.means[0], self.variances[0]
            a_s, s_s = schedule.alpha(t_start), schedule.sigma(t_start)
            a_t, s_t = schedule.alpha(t_end), schedule.sigma(t_end)
            v_s, v_t = a_s**2 * var + s_s**2, a_t**2 * var + s_t**2
            return a_t * mu + jnp.sqrt(v_t / v_s) * (x_T - a_s * mu)
        return self._ode_reference(schedule, x_T, float(t_start), float(t_end), rtol, atol)

    def _ode_reference(self, schedule, x_T, t_start, t_end, rtol, atol):
        import diffrax  # optional dependency of the oracles (the 'test' extra)

        x64 = x_T.dtype == jnp.float64
        tol = 1e-11 if x64 else 1e-6
        rtol, atol = rtol or tol, atol or tol

        def drift(t, x, args):
            # dx/dt = f x - g^2/2 score: finite down to t = 0 for every schedule.
            return schedule.f(t) * x - 0.5 * schedule.g2(t) * self.score(schedule, x, t)

        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(drift), diffrax.Dopri8(), t0=t_start, t1=t_end,
            dt0=(t_end - t_start) / 64, y0=x_T,
            stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
            max_steps=100_000, saveat=diffrax.SaveAt(t1=True))
        return sol.ys[0]


class ExactDenoiser(BaseDenoiser):
    """The exact denoiser of a :class:`GaussianMixture` (inputs ``[batch, D]`` or ``[D]``)."""

    def __init__(self, mixture: GaussianMixture, schedule: Schedule):
        self.mixture, self.schedule = mixture, schedule

    def __call__(self, x: Array, t, **cond):
        t = jnp.asarray(t)
        if t.ndim == 1 and x.ndim == 2:
            return jax.vmap(lambda xi, ti: self.mixture.predictions(self.schedule, xi, ti))(x, t)
        return self.mixture.predictions(self.schedule, x, t)




def builtin_mixture(dim: int = 2) -> GaussianMixture:
    """Eight well-separated, anisotropic Gaussians on a ring of radius 2 (in the first two
    coordinates): the problem of ``jaxdist bench`` and the ``gmm`` data set."""
    k = 8
    angles = 2 * np.pi * np.arange(k) / k
    means = np.zeros((k, dim))
    means[:, 0], means[:, 1] = 2.0 * np.cos(angles), 2.0 * np.sin(angles)
    variances = np.full((k, dim), 0.04)
    variances[::2, 0] = 0.12
    weights = np.linspace(1.0, 2.0, k)
    return GaussianMixture(weights, means, variances)
