"""Data parallelism with jax.sharding: 1 vs 8 CPU devices give the same training and sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxdist as jd
from jaxdist.testing import builtin_mixture
from jaxdist import parallel
from jaxdist.train import init_train_state

from train_helpers import tiny_batch, tiny_loss, tiny_params

needs8 = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices (tests/conftest.py)")


def _train(n_devices: int, steps: int = 20):
    mesh = parallel.data_mesh(jax.devices()[:n_devices])
    tx = optax.adam(1e-2)
    state = parallel.replicate(init_train_state(tiny_params(), tx, jax.random.key(0)), mesh)
    step = parallel.sharded_train_step(tiny_loss, tx, mesh, ema_decay=0.9)
    losses, types = [], []
    for i in range(steps):
        batch = parallel.shard_batch(tiny_batch(i), mesh)
        if i == 0:
            assert batch["x"].sharding.spec == jax.P("data")
        types.append(jax.typeof(state.params["w1"]))
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    assert step.jitted._cache_size() == 1, "the sharded step recompiled"
    assert jax.typeof(state.params["w1"]) == types[0], "the state changed sharding"
    assert state.params["w1"].sharding.is_fully_replicated
    return np.array(losses), state


@needs8
def test_same_losses_on_1_and_8_devices():
    """20 steps, batch 64 split 8 ways: losses and parameters equal the 1-device run to 1e-5."""
    l1, s1 = _train(1)
    l8, s8 = _train(8)
    np.testing.assert_allclose(l8, l1, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s8.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert l1[-1] < l1[0]


@needs8
def test_sharded_sampling_equals_unsharded():
    gmm = builtin_mixture()
    sched = jd.schedules.VPLinear()
    den = gmm.denoiser(sched)
    grid = jd.grids.logsnr_uniform(sched, 8)
    x_T = jax.random.normal(jax.random.key(1), (64, 2))

    def run(x):
        return jd.sample(jd.solvers.DPMSolverPP(order=2), den, x, grid).x

    ref = jax.jit(run)(x_T)
    mesh = parallel.data_mesh()
    out = parallel.sharded_sample(run, x_T, mesh)
    assert out.sharding.spec[0] == "data" and not out.sharding.is_fully_replicated
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=1e-5, atol=1e-6)


@needs8
def test_shard_batch_errors_and_replicate():
    mesh = parallel.data_mesh()
    with pytest.raises(ValueError, match="not divisible by the 8 devices"):
        parallel.shard_batch({"x": np.zeros((12, 2), np.float32)}, mesh)
    rep = parallel.replicate({"a": jnp.arange(3.0)}, mesh)
    assert rep["a"].sharding.is_fully_replicated and len(rep["a"].sharding.device_set) == 8
    assert parallel.process_rows(64) == slice(0, 64)
    with pytest.raises(ValueError, match="devices is empty"):
        parallel.data_mesh([])
