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
from problems import GAUSSIAN


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
    """Max error of one step of order ``solver.solver_order`` (the predictor; with
    ``corrected``, the value after the next step's UniC) against the exact solution, for each
    ``h``. Uses the solver's weight tables: ``x_1 = a x + b . [m_new, m_prev, ..]``."""
    gmm = jd.testing.GaussianMixture(**spec)
    den = gmm.denoiser(schedule)
    p = solver.solver_order
    pick = 0 if solver.space == "x0" else 1
    x_ref = jax.random.normal(jax.random.key(3), (4, gmm.dim), jnp.float64)
    errors = []
    for h in hs:
        grid = local_grid(schedule, p, h, knots)
        t_ref = grid[p - 1]
        xs = [gmm.ode_solution(schedule, x_ref, t_ref, t) if i != p - 1 else x_ref
              for i, t in enumerate(grid)]
        if hasattr(solver, "predictor_corrector"):
            a, b, corr = solver.predictor_corrector(schedule, grid)
        else:
            (a, b), corr = solver.weights(schedule, grid), None
        outs = [den(xs[i], grid[i])[pick] for i in range(p)]  # m_0 .. m_{p-1} (exact)
        hist = jnp.stack(outs[::-1] + [jnp.zeros_like(x_ref)] * (b.shape[1] - p))
        x1 = a[p - 1] * x_ref + jnp.tensordot(b[p - 1], hist, 1)
        if corrected:
            m1 = den(x1, grid[p])[pick]
            x1 = x1 + jnp.tensordot(corr[p], jnp.concatenate([m1[None], hist[:-1]]), 1)
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
