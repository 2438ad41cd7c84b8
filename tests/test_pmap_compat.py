"""Legacy ``jax.pmap`` code still runs jaxdist samplers and train steps (JAX 0.10, 8 CPU devices).

``pmap`` is in maintenance mode (implemented as ``jit(shard_map)``); jaxdist itself uses
``jax.sharding`` (``jaxdist.parallel``), which is the recommended path. These tests keep
TPU-style scripts that map over a leading device axis working.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxdist as jd
from jaxdist.testing import builtin_mixture
from jaxdist.train import init_train_state, make_train_step, step_key

from train_helpers import tiny_apply, tiny_batch, tiny_loss, tiny_params

N = 8
pytestmark = pytest.mark.skipif(jax.local_device_count() < N, reason="needs 8 local devices")


def test_pmap_of_a_sampler_equals_the_batched_sampler():
    sched = jd.schedules.VPLinear()
    den = builtin_mixture().denoiser(sched)
    grid = jd.grids.logsnr_uniform(sched, 6)
    x_T = jax.random.normal(jax.random.key(3), (N * 4, 2))

    def run(x):
        return jd.sample(jd.solvers.DPMSolverPP(order=2), den, x, grid).x

    out = jax.pmap(run)(x_T.reshape(N, 4, 2)).reshape(N * 4, 2)
    np.testing.assert_allclose(np.asarray(out), np.asarray(jax.jit(run)(x_T)), rtol=1e-5, atol=1e-6)


def test_pmap_train_step_with_pmean_equals_single_device_step():
    """Legacy data parallelism: replicated state (stacked), per-device batch shards and
    ``lax.pmean`` of the gradients; per-example noise is drawn for the global batch so the
    result must equal the single-device step."""
    tx = optax.sgd(0.1)
    state = init_train_state(tiny_params(), tx, jax.random.key(0))
    batch = tiny_batch(0)["x"]  # [64, 2]

    def loss_on_shard(params, key, x_shard):
        # draw the noise of the global batch (same draws as one device), keep this device's rows
        n, idx = x_shard.shape[0], jax.lax.axis_index("batch")
        eps_key, t_key = jax.random.split(key)
        eps = jax.lax.dynamic_slice_in_dim(jax.random.normal(eps_key, (N * n, 2)), idx * n, n)
        t = jax.lax.dynamic_slice_in_dim(jax.random.uniform(t_key, (N * n,)), idx * n, n)
        xt = (1 - t[:, None]) * x_shard + t[:, None] * eps
        return jnp.mean(jnp.sum((tiny_apply(params, xt, t) - (eps - x_shard)) ** 2, -1))

    def pmapped_step(state, x_shard):
        loss, grads = jax.value_and_grad(loss_on_shard)(state.params, step_key(state), x_shard)
        grads, loss = jax.lax.pmean((grads, loss), "batch")
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        return state._replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                              opt_state=opt_state), loss

    stacked = jax.tree.map(lambda x: jnp.broadcast_to(x, (N,) + x.shape), state)
    new_stacked, losses = jax.pmap(pmapped_step, axis_name="batch")(stacked, batch.reshape(N, -1, 2))

    single = make_train_step(tiny_loss, tx, ema_decay=0.0, grad_clip=None, donate=False)
    new, metrics = single(state, {"x": batch})
    np.testing.assert_allclose(np.asarray(losses), float(metrics["loss"]), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(new_stacked.params)):
        for dev in range(N):  # every replica holds the same parameters
            np.testing.assert_allclose(np.asarray(b[dev]), np.asarray(a), rtol=1e-5, atol=1e-6)
