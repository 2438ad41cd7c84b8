"""Shared test problems: the schedules every solver test runs on and the exact Gaussian oracle.

``GAUSSIAN`` is data with distinct per-dimension variances, whose probability-flow ODE has the
closed-form solution ``x_t = alpha_t mu + sqrt(v_t / v_s) (x_s - alpha_s mu)``.
"""

import jax
import jax.numpy as jnp

import jaxdist as jd

#: the single-Gaussian oracle: its PF-ODE is solved exactly by ``gmm.ode_solution``
GAUSSIAN = dict(weights=[1.0], means=[[0.5, -1.0, 2.0]], variances=[[0.09, 2.89, 16.0]])

#: name -> (schedule, start time, end time) of the order tests
SCHEDULES = {
    "vp": (jd.schedules.VPLinear(), 1.0, 1e-3),
    "edm": (jd.schedules.EDM(), 80.0, 2e-3),
    "rf": (jd.schedules.RectifiedFlow(), 0.99, 1e-3),
}


def gaussian_problem(name: str, n: int = 16, spec: dict = GAUSSIAN, seed: int = 0):
    """``(schedule, t0, t1, gmm, x_T)``: ``n`` float64 starting points scaled by ``sigma(t0)``."""
    schedule, t0, t1 = SCHEDULES[name]
    gmm = jd.testing.GaussianMixture(**spec)
    x_T = jax.random.normal(jax.random.key(seed), (n, gmm.dim), jnp.float64) * schedule.sigma(t0)
    return schedule, t0, t1, gmm, x_T


def measure_gaussian_order(solver, name: str, steps, grid: str = "logsnr", n: int = 16, **kw):
    """``jd.testing.measure_order`` of ``solver`` on the Gaussian oracle of schedule ``name``
    with ``jd.grids.logsnr_uniform`` (``grid="logsnr"``) or ``karras`` grids."""
    schedule, t0, t1, gmm, x_T = gaussian_problem(name, n)
    grid_fn = {"logsnr": lambda k: jd.grids.logsnr_uniform(schedule, k, t0, t1),
               "karras": lambda k: jd.grids.karras(schedule, k, t_start=t0, t_end=t1),
               "time": lambda k: jd.grids.time_uniform(schedule, k, t0, t1)}[grid]
    return jd.testing.measure_order(
        solver, gmm.denoiser(schedule), x_T, steps, grid_fn,
        lambda g: gmm.ode_solution(schedule, x_T, g[0], g[-1]), **kw)
