"""``jd.sample``: grad, remat, retracing, trajectories, conditioning, unrolling, checked sampling
and input validation (jit, vmap and precision for every solver: tests/solvers/test_contract.py)."""

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


def test_unroll_gives_the_same_sample():
    den, grid, x_T = GMM.denoiser(SCHEDULE), jd.grids.logsnr_uniform(SCHEDULE, 7), _x_T()
    a = jd.sample(DPMSolverPP(order=2), den, x_T, grid).x
    b = jd.sample(DPMSolverPP(order=2), den, x_T, grid, unroll=3).x
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_checks_name_the_bad_time_of_a_traced_grid():
    """Under jit with the grid as an argument, checks=True reports what the eager checks would
    (increasing, NaN, out-of-range grid) and a non-finite model output, naming time and step."""
    from jax.experimental import checkify

    den, x_T = GMM.denoiser(SCHEDULE), _x_T()
    good = jd.grids.logsnr_uniform(SCHEDULE, 4)
    run = checkify.checkify(jax.jit(lambda g: jd.sample(DDIM(), den, x_T, g, checks=True).x))
    err, x = run(good)
    err.throw()  # no error on a good grid
    np.testing.assert_allclose(x, jd.sample(DDIM(), den, x_T, good).x, rtol=1e-6, atol=1e-6)
    for grid, match in [(good[::-1], "strictly decreasing"), (good.at[2].set(jnp.nan), "not finite"),
                        (good.at[0].set(1.5), "outside")]:
        err, _ = run(grid)
        with pytest.raises(Exception, match=match):
            err.throw()
    nan_model = jd.Denoiser(lambda x, t: jnp.where(t < 0.5, jnp.nan, 0.0) * x, SCHEDULE, "eps")
    err, _ = checkify.checkify(jax.jit(
        lambda g: jd.sample(DDIM(), nan_model, x_T, g, checks=True).x))(good)
    with pytest.raises(Exception, match="not finite after step"):
        err.throw()


def test_checks_raise_eagerly():
    den, x_T = GMM.denoiser(SCHEDULE), _x_T()
    nan_model = jd.Denoiser(lambda x, t: jnp.nan * x, SCHEDULE, "eps")
    with pytest.raises(Exception, match="not finite after step 0"):
        jd.sample(DDIM(), nan_model, x_T, jd.grids.logsnr_uniform(SCHEDULE, 4), checks=True)
    assert jd.sample(DDIM(), den, x_T, jd.grids.logsnr_uniform(SCHEDULE, 4), checks=True).x.shape \
        == x_T.shape


def test_inputs_checked_at_the_edge():
    den, good = GMM.denoiser(SCHEDULE), jd.grids.logsnr_uniform(SCHEDULE, 4)
    listed = jd.sample(DDIM(), den, [[0.1, 0.2], [0.3, -0.4]], good).x  # a nested list works
    assert listed.shape == (2, 2)
    with pytest.raises(ValueError, match="cond\\['label'\\] has leading dimension 3"):
        jd.sample(DDIM(), den, _x_T(), good, cond={"label": jnp.zeros(3)})
    with pytest.raises(ValueError, match="leading batch axis"):
        jd.sample(DDIM(), den, jnp.float32(1.0), good)
