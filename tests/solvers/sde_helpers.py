"""Shared oracles of the stochastic-sampler tests (strong order on one Brownian path, exact weak
errors on Gaussian data, mixture component weights)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

import jaxdist as jd
from jaxdist.noise import BrownianPath


@dataclasses.dataclass(frozen=True)
class SlotNoise:
    """Noise source for exact moment propagation: step ``k`` (found from its time ``t`` in
    ``times``) adds the unit vector ``e_{k+1}``. On data with a linear denoiser, column ``j`` of
    the output is then the coefficient of the ``j``-th independent standard normal, so the
    output variance is the sum of squares (no Monte Carlo)."""

    times: tuple

    def sample(self, key, x, t, t_next):
        slot = 1 + jnp.argmin(jnp.abs(jnp.asarray(self.times, x.dtype) - t))
        return jnp.broadcast_to(jax.nn.one_hot(slot, x.shape[-1], dtype=x.dtype), x.shape)


@dataclasses.dataclass(frozen=True)
class ZeroNoise:
    def sample(self, key, x, t, t_next):
        return jnp.zeros_like(x)


def weak_error(make_solver, schedule, n_steps, grid_fn, *, mu=0.7, var=0.25):
    """``(|E x - alpha mu|, |Var x - (alpha^2 var + sigma^2)|)`` at the end of the grid for data
    ``N(mu, var)`` (1-D), started from the exact marginal at ``grid[0]``; exact moments."""
    grid = grid_fn(schedule, n_steps)
    t0, t1 = grid[0], grid[-1]
    v = lambda t: schedule.alpha(t) ** 2 * var + schedule.sigma(t) ** 2  # noqa: E731
    k = n_steps + 1
    # variance: mean-zero data, linear denoiser; coefficients of the K independent normals
    lin = jd.testing.GaussianMixture([1.0], jnp.zeros((1, k)), var).denoiser(schedule)
    x_T = jnp.zeros((1, k)).at[0, 0].set(jnp.sqrt(v(t0)))
    times = tuple(float(t) for t in np.asarray(grid))
    coefs = jd.sample(make_solver(SlotNoise(times)), lin, x_T, grid, key=jax.random.key(0)).x
    variance = jnp.sum(coefs**2)
    # mean: the step is affine, so the mean follows the noise-free recursion from the mean
    aff = jd.testing.GaussianMixture([1.0], jnp.full((1, 1), mu), var).denoiser(schedule)
    m = jd.sample(make_solver(ZeroNoise()), aff, jnp.full((1, 1), schedule.alpha(t0) * mu), grid,
                  key=jax.random.key(0)).x[0, 0]
    return float(jnp.abs(m - schedule.alpha(t1) * mu)), float(jnp.abs(variance - v(t1)))


def strong_errors(make_solver, denoiser, x_T, step_counts, ref_steps, grid_fn, path):
    """RMS over paths of ``|x_n - x_ref|`` with every run on the same ``path``."""
    run = lambda n: jd.sample(make_solver(path), denoiser, x_T, grid_fn(n),  # noqa: E731
                              key=jax.random.key(0)).x
    ref = run(ref_steps)
    return [float(jnp.sqrt(jnp.mean(jnp.sum((run(n) - ref) ** 2, -1)))) for n in step_counts]


def mode_weights_check(x, mixture, n_sigma=4.0):
    """Assigns samples ``x [n, D]`` to the nearest mean and checks every component's fraction is
    within ``n_sigma`` binomial standard errors of its weight; returns (fractions, z-scores)."""
    d2 = jnp.sum((x[:, None, :] - mixture.means[None]) ** 2, -1)
    counts = jnp.bincount(jnp.argmin(d2, -1), length=mixture.means.shape[0])
    n = x.shape[0]
    frac = np.asarray(counts) / n
    w = np.asarray(mixture.weights)
    z = (frac - w) / np.sqrt(w * (1 - w) / n)
    return frac, z


def two_mode_mixture():
    """Two well-separated 2-D Gaussians with unequal weights (nearest-mean error ~ 1e-9)."""
    return jd.testing.GaussianMixture([0.3, 0.7], [[-2.0, 0.0], [2.0, 0.5]], [[0.09, 0.04], [0.04, 0.09]])


def smooth_mixture():
    """Two overlapping 2-D Gaussians: a nonlinear flow without rare mode switches, so strong
    errors are not dominated by paths that change modes between step counts."""
    return jd.testing.GaussianMixture([1.0, 2.0], [[-1.0, 0.0], [1.0, 0.5]], [[0.3, 0.2], [0.2, 0.3]])


BROWNIAN = BrownianPath(0.0, 1.0, seed=7, depth=16)


def time_grid(n, schedule=jd.schedules.VPLinear()):
    """``n`` steps uniform in time from 1 to 1e-2 (strong-order tests)."""
    return jd.grids.time_uniform(schedule, n, 1.0, 1e-2)


def logsnr_grid(schedule, n):
    """``n`` steps uniform in log-SNR from 1 to 1e-2 (weak-order tests)."""
    return jd.grids.logsnr_uniform(schedule, n, 1.0, 1e-2)
