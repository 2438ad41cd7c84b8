"""Models: shapes, time broadcasting, NNX split/merge round trip, Linen and apply adapters."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

import jaxdist as jd


def jitted(module):
    """The module as a jitted function of (x, t) (eager flax calls are slow on CPU)."""
    apply_fn, params = jd.models.as_apply_fn(module)
    fn = jax.jit(apply_fn)
    return lambda x, t: fn(params, x, t)


def test_mlp_shapes_and_time_broadcasting():
    module = jd.models.MLP(3, hidden=32, depth=2, rngs=nnx.Rngs(0))
    m = jitted(module)
    x = jax.random.normal(jax.random.key(0), (5, 3))
    out = m(x, 0.3)
    assert out.shape == (5, 3) and out.dtype == x.dtype
    np.testing.assert_allclose(out, m(x, jnp.full(5, 0.3)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out, m(x, jnp.array([0.3])), rtol=1e-5, atol=1e-5)
    t = jnp.array([0.0, 0.5, 1.0, 250.0, -1.3])  # every schedule's model time range
    batched = m(x, t)
    for i in range(5):  # per-example time: row i only depends on (x_i, t_i)
        np.testing.assert_allclose(batched[i], m(x[i:i + 1], t[i])[0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(m(x, 0.1), m(x, 0.2))  # the time is used
    with pytest.raises(ValueError, match="shape"):
        module(x, jnp.ones(4))
    with pytest.raises(ValueError, match="MLP"):
        module(jnp.ones((5, 4)), 0.1)
    with pytest.raises(ValueError, match="time_max_freq"):
        jd.models.MLP(3, time_max_freq=0.0, rngs=nnx.Rngs(0))


def test_time_max_freq_sets_how_fast_the_embedding_turns():
    """``|d e / du| = 2 pi sqrt(sum_k f_k^2)`` (each sin/cos pair turns at ``2 pi f_k``), so
    ``time_max_freq`` bounds how far apart adjacent noise levels are embedded."""
    from jaxdist.models.mlp import time_embedding

    u = jnp.linspace(-1.5, 1.1, 4001)  # log(sigma) / 4 over EDM's noise levels
    for f_max in (1.0, 64.0):
        e = np.asarray(time_embedding(jnp.sinh(u), 64, max_freq=f_max), np.float64)
        speed = np.linalg.norm(np.diff(e, axis=0), axis=1) / float(u[1] - u[0])
        exact = 2 * np.pi * np.sqrt(np.sum(np.geomspace(1 / 16, f_max, 32) ** 2))
        np.testing.assert_allclose(np.median(speed), exact, rtol=2e-2)


@pytest.fixture(scope="module")
def unet():
    """One small U-Net for both sizes (first-time initialisation compiles many small ops)."""
    module = jd.models.UNet(1, base=8, rngs=nnx.Rngs(0))
    return module, jitted(module)


@pytest.mark.parametrize("size", [8, 28])
def test_unet_shapes_and_time_broadcasting(unet, size):
    module, m = unet
    x = jax.random.normal(jax.random.key(0), (2, size, size, 1))
    out = m(x, 0.5)
    assert out.shape == x.shape
    np.testing.assert_allclose(out, m(x, jnp.full(2, 0.5)), rtol=1e-5, atol=1e-6)
    both = m(x, jnp.array([0.1, 0.9]))
    np.testing.assert_allclose(both[1], m(x[1:], 0.9)[0], rtol=1e-4, atol=1e-5)
    assert not np.allclose(both[0], m(x[:1], 0.9)[0])
    with pytest.raises(ValueError, match="NHWC"):
        module(jnp.ones((2, 1, size, size)), 0.5)


def test_as_apply_fn_round_trip_jit_grad():
    m = jd.models.MLP(2, hidden=16, depth=2, rngs=nnx.Rngs(1))
    apply_fn, params = jd.models.as_apply_fn(m)
    leaves = jax.tree.leaves(params)
    assert all(isinstance(a, jax.Array) for a in leaves)
    assert all(isinstance(k, str) for k in params["layers"])  # checkpoint-friendly keys
    x = jax.random.normal(jax.random.key(0), (4, 2))
    np.testing.assert_allclose(jax.jit(apply_fn)(params, x, 0.2), m(x, 0.2), rtol=1e-5, atol=1e-6)
    # Changing params changes the output; the module itself is untouched.
    params2 = jax.tree.map(lambda a: a + 0.1, params)
    assert not np.allclose(apply_fn(params2, x, 0.2), m(x, 0.2))
    np.testing.assert_array_equal(apply_fn(params, x, 0.2), m(x, 0.2))
    grads = jax.jit(jax.grad(lambda p: jnp.sum(apply_fn(p, x, 0.2) ** 2)))(params)
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    with pytest.raises(TypeError, match="nnx.Module"):
        jd.models.as_apply_fn(lambda x: x)


class LinenMLP(nn.Module):
    @nn.compact
    def __call__(self, x, t):
        h = jnp.concatenate([x, jnp.broadcast_to(jnp.asarray(t), x.shape[:1])[:, None]], -1)
        return nn.Dense(x.shape[-1])(nn.silu(nn.Dense(16)(h)))


def test_linen_adapter_and_denoiser():
    module = LinenMLP()
    x = jax.random.normal(jax.random.key(0), (4, 2))
    variables = module.init(jax.random.key(1), x, jnp.zeros(4))
    apply_fn, params = jd.models.from_linen(module, variables)
    np.testing.assert_array_equal(apply_fn(params, x, 0.3), module.apply(variables, x, 0.3))
    schedule = jd.schedules.VPLinear()
    den = jd.models.denoiser_from_apply(apply_fn, params, schedule, "v")
    assert isinstance(den, jd.Denoiser) and den.prediction == "v"
    t = jnp.full(4, 0.4)
    x0, eps = den(x, t)
    want = jd.predictions.to_x0_eps(module.apply(variables, x, t), x, t, schedule, "v")
    np.testing.assert_allclose(x0, want[0], rtol=1e-5, atol=1e-5)
    res = jd.sample(jd.solvers.DDIM(), den, x, jd.grids.logsnr_uniform(schedule, 4))
    assert res.x.shape == x.shape and bool(res.all_finite)
    edm = jd.models.denoiser_from_apply(apply_fn, params, jd.schedules.EDM(), "edm")
    assert isinstance(edm, jd.EDMPreconditioned)
    with pytest.raises(TypeError, match="linen"):
        jd.models.from_linen(object(), variables)


def test_import_jaxdist_does_not_import_flax():
    import subprocess
    import sys

    code = "import sys, jaxdist; print('flax' in sys.modules, 'optax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == "False", out.stdout
