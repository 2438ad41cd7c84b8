"""``d sample / d grid`` is finite for every registered solver, on grids ending at ``t = 0`` and
at ``t_min`` (the gradient that ``jd.tune`` follows).

VP-linear schedule, where ``sigma(t) ~ sqrt(t)`` makes one-sided derivatives at ``t = 0``
infinite: ``jd.sample`` holds a final ``0`` fixed (gradient 0,
``jaxdist.solvers.primitives.hold_zero``) and the clipped log-SNR has derivative 0 where it is
clipped (``clipped_log_snr``, the double-``where`` trick). Every solver's coefficient table has
a finite reverse-mode derivative in the grid (of a fixed generic projection; cheap: no model);
for one solver of each step shape the whole sample is differentiated on the exact Gaussian
oracle (tests/problems.py), and for DPM-Solver++ 2M the gradient equals central finite
differences (float64).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdist as jd
from jaxdist.solvers import registry
from jaxdist.solvers.base import set_stages
from jaxdist.solvers.primitives import LAMBDA_CLIP, clipped_log_snr, hold_zero
from problems import gaussian_problem

NAMES = sorted(registry.SOLVERS)
#: one solver per step shape: stage table with history (multistep), singlestep stages, EDM's
#: final Euler step, a stochastic linear multistep
SAMPLE_NAMES = ["dpm++2m", "dpm-solver-2", "heun", "dpm++2m-sde"]
SCHEDULE = jd.schedules.VPLinear()


def _grids(n=3):
    return jnp.stack([jd.grids.karras(SCHEDULE, n, t_start=1.0, t_end=1e-3, final_zero=fz)
                      for fz in (True, False)])


@pytest.mark.parametrize("name", NAMES)
def test_coefficient_gradient_is_finite(name, x64):
    solver = registry.by_name(name)

    def projection(g):  # a fixed generic linear functional of the whole coefficient table
        leaves = jax.tree.leaves(set_stages(solver.coefficients(SCHEDULE, hold_zero(g)), None))
        return sum(jnp.sum(jnp.cos(jnp.arange(c.size) + k).reshape(c.shape) * c)
                   for k, c in enumerate(leaves))

    g = np.asarray(jax.jit(jax.vmap(jax.grad(projection)))(_grids()))
    assert np.all(np.isfinite(g)), (name, g)
    assert np.all(g[:, 1:-1] != 0), (name, g)  # the table moves with the inner times


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_sample_gradient_wrt_grid_is_finite(name, x64):
    _, _, _, gmm, x_T = gaussian_problem("vp", n=2)
    den = gmm.denoiser(SCHEDULE)
    solver = registry.by_name(name)
    key = jax.random.key(3) if solver.stochastic else None
    grad = jax.jit(jax.vmap(jax.grad(
        lambda g: jnp.sum(jd.sample(solver, den, x_T, g, key=key).x ** 2))))
    g = np.asarray(grad(_grids()))  # rows: ending at 0, ending at t_min
    assert np.all(np.isfinite(g)), (name, g)
    assert np.all(g[:, 1:-1] != 0), (name, g)
    assert g[0, -1] == 0.0  # a final t = 0 is held fixed


def test_sample_gradient_matches_finite_differences(x64):
    _, _, _, gmm, x_T = gaussian_problem("vp", n=2)
    den = gmm.denoiser(SCHEDULE)
    solver = jd.solvers.DPMSolverPP(order=2)
    loss = jax.jit(lambda g: jnp.sum(jd.sample(solver, den, x_T, g).x ** 2))
    grid = _grids()[0]
    g = np.asarray(jax.jit(jax.grad(loss))(grid))
    for i in (1, 2):
        e = jnp.zeros_like(grid).at[i].set(1e-6 * float(grid[i]))
        fd = (float(loss(grid + e)) - float(loss(grid - e))) / (2 * float(e[i]))
        np.testing.assert_allclose(g[i], fd, rtol=1e-5)


def test_clipped_log_snr_values_and_gradient(x64):
    for schedule, ends in ((jd.schedules.VPLinear(), (0.0,)), (jd.schedules.EDM(), (0.0,)),
                           (jd.schedules.RectifiedFlow(), (0.0, 1.0))):
        t = jnp.asarray([*ends, 0.5 * (schedule.t_min + schedule.t_max)])
        np.testing.assert_array_equal(clipped_log_snr(schedule, t),
                                      jnp.clip(schedule.log_snr(t), -LAMBDA_CLIP, LAMBDA_CLIP))
        grad = np.asarray(jax.vmap(jax.grad(lambda u: clipped_log_snr(schedule, u)))(t))
        assert np.all(grad[:-1] == 0) and np.isfinite(grad[-1]) and grad[-1] != 0
