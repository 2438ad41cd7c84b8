"""Local truncation error of one multistep step started from the exact solution and the exact
model-output history (shared by the UniPC, DEIS and iPNDM tests).

The global order of a multistep method with a lower-order warm-up is bounded by the warm-up
(a first-order first step has local error O(h^2)); the local error of one full-order step is
not, so it measures the order of the method itself: O(h^(p+1)) for a p-th order step.
"""

import jax
import jax.numpy as jnp
import numpy as np

import jaxdist as jd
from jaxdist.sample import DenoiserModel
from jaxdist.solvers.base import ModelState, half_log_snr

GAUSSIAN = dict(weights=[1.0], means=[[0.5, -1.0, 2.0]], variances=[[0.09, 2.89, 16.0]])


def local_grid(schedule, p, h, knots="lambda", lam_c=0.0):
    """``p + 2`` times whose step ``p - 1`` starts at half-log-SNR ``lam_c``; uniform steps of
    ``h`` in ``lambda`` or of ``h rho_c`` in ``rho = sigma/alpha`` (``knots="rho"``)."""
    k = jnp.arange(p + 2, dtype=jnp.float64) - (p - 1)
    if knots == "lambda":
        lam = lam_c + k * h
    else:
        rho_c = np.exp(-lam_c)
        lam = -jnp.log(rho_c * (1.0 - k * h))
    return schedule.t_from_log_snr(2.0 * lam)


def local_errors(solver, schedule, hs, *, knots="lambda", corrected=False, spec=GAUSSIAN):
    """Max error of one step of order ``solver.order`` (the predictor; with ``corrected``, the
    value after the next step's corrector) against the exact solution, for each ``h``."""
    gmm = jd.testing.GaussianMixture(**spec)
    den = gmm.denoiser(schedule)
    model = DenoiserModel(den)
    p = solver.order
    x_ref = jax.random.normal(jax.random.key(3), (4, gmm.dim), jnp.float64)
    errors = []
    for h in hs:
        grid = local_grid(schedule, p, h, knots)
        t_ref = grid[p - 1]
        xs = [gmm.ode_solution(schedule, x_ref, t_ref, t) if i != p - 1 else x_ref
              for i, t in enumerate(grid)]
        coef = solver.coefficients(schedule, grid)
        ms = ModelState(jnp.zeros((), jnp.int32), ())
        x, hist, _ = solver.init(x_ref, ms)
        outs = [den(xs[i], grid[i])[0 if solver.space == "x0" else 1] for i in range(p - 1)]
        for j, d in enumerate(reversed(outs)):  # newest first: t_{p-2}, t_{p-3}, ..
            hist = hist.at[j].set(d)
        c = jax.tree.map(lambda a: a[p - 1], coef)
        if "corr" in c:
            c = {**c, "corr": jnp.zeros_like(c["corr"])}  # the start point is exact
        x1, hist1, ms1 = solver.step(model, (x_ref, hist, ms), c, None)
        if corrected:
            c2 = jax.tree.map(lambda a: a[p], coef)
            c2 = {**c2, "a": jnp.ones_like(c2["a"]), "b": jnp.zeros_like(c2["b"])}
            x1, _, _ = solver.step(model, (x1, hist1, ms1), c2, None)
        errors.append(float(jnp.max(jnp.abs(x1 - xs[p]))))
    return errors


def local_order(errors, hs):
    return jd.testing.empirical_order([1.0 / h for h in hs], errors)


def assert_point_mass_exact(solver, n_steps):
    """Point-mass data: every step of a multistep exponential integrator is exact, with and
    without a final step to t = 0 (float64, 1e-9), and NFE equals the number of steps."""
    schedule = jd.schedules.VPLinear()
    mu = jnp.array([0.3, -1.2, 2.0], jnp.float64)
    gmm = jd.testing.GaussianMixture([1.0], [mu], [[0.0, 0.0, 0.0]])
    x_T = jax.random.normal(jax.random.key(1), (4, 3), jnp.float64)
    for grid in (jd.grids.logsnr_uniform(schedule, n_steps, 0.999),
                 jd.grids.append_zero(jd.grids.logsnr_uniform(schedule, n_steps, 0.999))):
        res = jd.sample(solver, gmm.denoiser(schedule), x_T, grid)
        exact = gmm.ode_solution(schedule, x_T, grid[0], grid[-1])
        assert float(jnp.max(jnp.abs(res.x - exact))) < 1e-9
        assert int(res.nfe) == grid.shape[0] - 1
