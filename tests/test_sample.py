"""``jd.sample``: transforms (jit, vmap, grad, remat), retracing, trajectories, conditioning,
precision and input validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxdist as jd
from jaxdist.solvers import DDIM, DPMSolver, DPMSolverPP

SCHEDULE = jd.schedules.VPLinear()
GMM = jd.testing.GaussianMixture([0.4, 0.6], [[1.0, -1.0], [-1.0, 0.5]], [[0.2, 0.1], [0.3, 0.2]])


def _x_T(n=6, seed=0, dtype=jnp.float32):
    return jax.random.normal(jax.random.key(seed), (n, 2), dtype)


@pytest.mark.parametrize("solver", [DDIM(), DPMSolverPP(order=3), DPMSolver(order=3)], ids=repr)
def test_jit_matches_eager(solver):
    den, grid, x_T = GMM.denoiser(SCHEDULE), jd.grids.logsnr_uniform(SCHEDULE, 8), _x_T()
    eager = jd.sample(solver, den, x_T, grid)
    jitted = jax.jit(lambda x: jd.sample(solver, den, x, grid))(x_T)
    np.testing.assert_allclose(jitted.x, eager.x, atol=1e-5, rtol=1e-5)
    assert int(jitted.nfe) == int(eager.nfe)


def test_second_call_does_not_retrace():
    traces = []

    def fn(x, t):
        traces.append(1)  # runs only while tracing
        return GMM.predictions(SCHEDULE, x, t)[1]

    den = jd.Denoiser(fn, SCHEDULE, "eps")
    run = jax.jit(lambda x, grid: jd.sample(DPMSolverPP(order=2), den, x, grid).x)
    grid = jd.grids.logsnr_uniform(SCHEDULE, 10)
    run(_x_T(seed=0), grid)
    n_traces = len(traces)
    run(_x_T(seed=1), grid)
    run(_x_T(seed=2), jd.grids.time_uniform(SCHEDULE, 10))  # same shapes, new times
    assert len(traces) == n_traces
    assert n_traces <= 2  # the scan body traces the model once (twice at most for init)


def test_vmap_over_samples_equals_batch():
    den, grid, x_T = GMM.denoiser(SCHEDULE), jd.grids.logsnr_uniform(SCHEDULE, 6), _x_T()
    batch = jd.sample(DPMSolverPP(order=2), den, x_T, grid).x
    one = jax.vmap(lambda x: jd.sample(DPMSolverPP(order=2), den, x[None], grid).x[0])(x_T)
    np.testing.assert_allclose(one, batch, atol=1e-6)


def test_gradient_through_sampler_and_grid(x64):
    """Gradients w.r.t. the start point and the grid times match finite differences."""
    den, x_T = GMM.denoiser(SCHEDULE), _x_T(3, dtype=jnp.float64)
    grid = jd.grids.logsnr_uniform(SCHEDULE, 5)

    def loss(x, inner):
        g = jnp.concatenate([grid[:1], inner, grid[-1:]])
        return jnp.sum(jd.sample(DPMSolverPP(order=2), den, x, g, remat=True).x ** 2)

    check_grads(loss, (x_T, grid[1:-1]), order=1, modes=["rev"], eps=1e-6, atol=1e-6,
                              rtol=1e-6)


def test_remat_gives_the_same_gradient(x64):
    den, x_T = GMM.denoiser(SCHEDULE), _x_T(3, dtype=jnp.float64)
    grid = jd.grids.logsnr_uniform(SCHEDULE, 6)

    def loss(x, remat):
        return jnp.sum(jd.sample(DPMSolverPP(order=3), den, x, grid, remat=remat).x)

    np.testing.assert_allclose(jax.grad(loss)(x_T, True), jax.grad(loss)(x_T, False), rtol=1e-12)


def test_trajectory_and_nfe():
    den, grid, x_T = GMM.denoiser(SCHEDULE), jd.grids.logsnr_uniform(SCHEDULE, 7), _x_T()
    res = jd.sample(DPMSolver(order=2), den, x_T, grid, save_trajectory=True)
    assert res.trajectory.shape == (8,) + x_T.shape
    np.testing.assert_array_equal(res.trajectory[0], x_T)
    np.testing.assert_array_equal(res.trajectory[-1], res.x)
    assert int(res.nfe) == 14 and bool(res.all_finite)


def test_conditioning_reaches_the_model():
    means = jnp.array([[2.0, 2.0], [-2.0, -2.0]])

    def fn(x, t, label):
        return jax.vmap(lambda xi, m: jd.testing.GaussianMixture([1.0], [m], [[0.1, 0.1]])
                        .predictions(SCHEDULE, xi, t)[0])(x, means[label])

    den = jd.Denoiser(fn, SCHEDULE, "x0")
    grid = jd.grids.logsnr_uniform(SCHEDULE, 20)
    label = jnp.array([0, 1, 0, 1, 0, 1])
    x = jd.sample(DPMSolverPP(order=2), den, _x_T(), grid, cond={"label": label}).x
    np.testing.assert_allclose(x.mean(-1), jnp.where(label == 0, 2.0, -2.0), atol=1.5)


def test_low_precision_model_keeps_float32_state():
    def fn(x, t):
        return GMM.predictions(SCHEDULE, x, t)[1].astype(jnp.bfloat16)

    den = jd.Denoiser(fn, SCHEDULE, "eps")
    res = jd.sample(DPMSolverPP(order=2), den, _x_T(), jd.grids.logsnr_uniform(SCHEDULE, 8))
    assert res.x.dtype == jnp.float32


def test_input_errors_name_the_argument():
    den, x_T = GMM.denoiser(SCHEDULE), _x_T()
    good = jd.grids.logsnr_uniform(SCHEDULE, 4)
    with pytest.raises(ValueError, match="grid must be strictly decreasing"):
        jd.sample(DDIM(), den, x_T, good[::-1])
    with pytest.raises(ValueError, match="grid contains non-finite"):
        jd.sample(DDIM(), den, x_T, good.at[2].set(jnp.nan))
    with pytest.raises(ValueError, match="outside"):
        jd.sample(DDIM(), den, x_T, jnp.array([1.5, 0.5, 0.1]))
    with pytest.raises(ValueError, match="1-D array"):
        jd.sample(DDIM(), den, x_T, good[None])
    with pytest.raises(TypeError, match="solver must be a jaxdist solver"):
        jd.sample("ddim", den, x_T, good)
    with pytest.raises(TypeError, match="denoiser must be"):
        jd.sample(DDIM(), lambda x, t: x, x_T, good)
    with pytest.raises(TypeError, match="x_T must be a floating-point"):
        jd.sample(DDIM(), den, jnp.zeros((2, 2), jnp.int32), good)
    with pytest.raises(ValueError, match="prediction='noise' is not a known"):
        jd.Denoiser(lambda x, t: x, SCHEDULE, prediction="noise")
    bad_shape = jd.Denoiser(lambda x, t: x[:, :1], SCHEDULE, "eps")
    with pytest.raises(ValueError, match="returned shape"):
        jd.sample(DDIM(), bad_shape, x_T, good)
