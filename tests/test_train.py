"""Train state, jitted step (EMA, clipping, donation, per-step keys), fit loop and exact resume."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdist.checkpoint import Checkpointer
from jaxdist.train import (NonFiniteError, TrainState, ema_update, fit, init_train_state,
                           make_train_step, step_key)

from train_helpers import tiny_batch, tiny_loss, tiny_params


def _state(seed=0, tx=None):
    return init_train_state(tiny_params(seed), tx or optax.adam(1e-2), jax.random.key(seed))


def test_state_is_arrays_only_and_key_is_raw_data():
    state = _state()
    assert isinstance(state, TrainState)
    for leaf in jax.tree.leaves(state):
        assert isinstance(leaf, jax.Array) and not jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)
    assert state.key.dtype == jnp.uint32 and int(state.step) == 0
    # per-step keys: deterministic, different per step
    k0, k1 = step_key(state), step_key(state._replace(step=state.step + 1))
    assert np.array_equal(jax.random.key_data(k0), jax.random.key_data(step_key(_state())))
    assert not np.array_equal(jax.random.key_data(k0), jax.random.key_data(k1))


def test_no_retracing_across_steps_and_donation():
    traces = []

    def counted(params, key, batch):
        traces.append(1)
        return tiny_loss(params, key, batch)

    step = make_train_step(counted, optax.adam(1e-2))
    state = _state()
    old = state
    for i in range(6):
        state, metrics = step(state, tiny_batch(i))
    assert len(traces) == 1, f"loss traced {len(traces)} times over 6 steps"
    assert step._cache_size() == 1
    assert int(state.step) == 6 and set(metrics) >= {"loss", "grad_norm", "t_mean"}
    assert "per_example" not in metrics  # only scalar aux entries become metrics
    assert old.params["w1"].is_deleted(), "the input state should be donated"


def test_ema_and_gradient_clipping_exact():
    """SGD with lr 1: params move by exactly the clipped gradient; EMA is the closed-form mix."""
    clip, decay = 1e-3, 0.9
    state = _state(tx=optax.sgd(1.0))
    p0 = jax.tree.map(np.asarray, state.params)
    batch = tiny_batch(0)
    grads = jax.grad(lambda p: tiny_loss(p, step_key(state), dict(batch, step=state.step))[0])(
        state.params)
    g_norm = float(optax.tree.norm(grads))
    assert g_norm > clip
    step = make_train_step(tiny_loss, optax.sgd(1.0), ema_decay=decay, grad_clip=clip)
    new, metrics = step(state, batch)
    np.testing.assert_allclose(float(metrics["grad_norm"]), g_norm, rtol=1e-6)
    delta = jax.tree.map(lambda a, b: np.asarray(a) - b, new.params, p0)
    np.testing.assert_allclose(float(optax.tree.norm(delta)), clip, rtol=1e-4)
    expected_ema = ema_update(p0, new.params, decay)
    for a, b in zip(jax.tree.leaves(new.ema_params), jax.tree.leaves(expected_ema)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


def test_pass_ema_puts_ema_params_in_batch():
    seen = {}

    def loss(params, key, batch):
        seen["keys"] = set(batch)
        return tiny_loss(params, key, batch)

    make_train_step(loss, optax.adam(1e-3), pass_ema=True, jit=False)(_state(), tiny_batch(0))
    assert seen["keys"] == {"x", "step", "ema_params"}


def test_bad_arguments():
    with pytest.raises(ValueError, match="ema_decay"):
        make_train_step(tiny_loss, optax.adam(1e-3), ema_decay=1.0)
    with pytest.raises(ValueError, match="grad_clip"):
        make_train_step(tiny_loss, optax.adam(1e-3), grad_clip=0.0)
    with pytest.raises(TypeError, match="optax"):
        init_train_state(tiny_params(), "adam", jax.random.key(0))
    state = _state()._replace(step=jnp.int32(5))
    with pytest.raises(ValueError, match="num_steps"):
        fit(state, make_train_step(tiny_loss, optax.adam(1e-3)), tiny_batch, 3, progress=False)


def test_fit_learns():
    step = make_train_step(tiny_loss, optax.adam(1e-2), ema_decay=0.99)
    _, history = fit(_state(), step, tiny_batch, 300, log_every=50, progress=False)
    assert [h["step"] for h in history] == [50, 100, 150, 200, 250, 300]
    assert history[-1]["loss"] < 0.8 * history[0]["loss"], history
    assert all(h["steps_per_s"] > 0 for h in history)


def test_resume_is_bitwise_equal_to_uninterrupted(tmp_path):
    """Train 20 steps straight vs 12 steps, checkpoint, new process-like restore, 8 more steps."""
    tx = optax.adam(1e-2)
    straight, _ = fit(_state(), make_train_step(tiny_loss, tx), tiny_batch, 20, progress=False)

    with Checkpointer(tmp_path / "run", save_every=4, max_to_keep=2) as ckpt:
        fit(_state(), make_train_step(tiny_loss, tx), tiny_batch, 12, checkpointer=ckpt,
            config={"lr": 1e-2}, progress=False)
    with Checkpointer(tmp_path / "run", save_every=4, max_to_keep=2) as ckpt:
        assert ckpt.all_steps() == [8, 12]
        restored, config = ckpt.restore(_state(), expected_config={"lr": 1e-2})
        assert int(restored.step) == 12 and config == {"lr": 1e-2}
        resumed, _ = fit(restored, make_train_step(tiny_loss, tx), tiny_batch, 20,
                         checkpointer=ckpt, progress=False)
        assert ckpt.all_steps() == [16, 20]
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
        assert a.dtype == b.dtype and np.array_equal(np.asarray(a), np.asarray(b))


def _flagged(params, key, batch):
    """tiny_loss, times NaN (loss and gradients) where ``batch["bad"]`` is true."""
    value, aux = tiny_loss(params, key, batch)
    return value * jnp.where(batch["bad"], jnp.nan, 1.0), aux


def _batches(bad):
    """Batches whose ``"bad"`` flag is ``bad(step)`` (one compiled step serves every pattern)."""
    return lambda s: {**tiny_batch(s), "bad": np.bool_(bad(s))}


def test_non_finite_loss_stops_at_its_step_and_is_never_applied_or_saved(tmp_path):
    """The step of the first NaN is named, the parameters are those of the last finite step,
    and no checkpoint is written from that step on (the finite ones stay)."""
    step = make_train_step(_flagged, optax.adam(1e-2), donate=False)
    with Checkpointer(tmp_path / "run", save_every=2) as ckpt:
        with pytest.raises(NonFiniteError, match=r"training stopped at step 8 of 20: the loss is "
                                                 r"nan.*newest checkpoint is step 6") as info:
            fit(_state(), step, _batches(lambda s: s >= 7), 20, checkpointer=ckpt, log_every=5,
                progress=False)
        assert info.value.step == 8
        assert ckpt.all_steps() == [2, 4, 6]
        saved, _ = ckpt.restore(_state())
    clean, _ = fit(_state(), step, _batches(lambda s: False), 6, progress=False)
    for a, b in zip(jax.tree.leaves(clean), jax.tree.leaves(saved)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_nan_learning_rate_is_caught_by_the_update_check():
    """A finite loss with a NaN update (optax.adam(nan)) is not applied, and fit stops."""
    step = make_train_step(tiny_loss, optax.adam(float("nan")), donate=False)
    state, metrics = step(_state(), tiny_batch(0))
    assert float(metrics["finite"]) == 0 and int(state.step) == 1
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(_state().params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # not applied
    with pytest.raises(NonFiniteError, match="step 1 of 3: the gradient or update is not finite"):
        fit(_state(), step, tiny_batch, 3, progress=False)


def test_skip_mode_skips_and_counts_and_stops_after_max_skips():
    step = make_train_step(_flagged, optax.adam(1e-2), nonfinite="skip", donate=False)
    state, history = fit(_state(), step, _batches(lambda s: s % 3 == 1), 12, log_every=6,
                         progress=False)
    assert int(state.step) == 12 and [h["skipped"] for h in history] == [2, 4]
    with pytest.raises(NonFiniteError, match="5 updates in a row were not finite, up to "
                                             "training step 7"):
        fit(_state(), step, _batches(lambda s: s >= 2), 20, log_every=4, progress=False,
            max_skips=5)
    with pytest.raises(ValueError, match="nonfinite='sometimes' must be one of"):
        make_train_step(tiny_loss, optax.adam(1e-2), nonfinite="sometimes")


def test_ignore_mode_applies_everything():
    step = make_train_step(_flagged, optax.adam(1e-2), nonfinite="ignore")
    state, history = fit(_state(), step, _batches(lambda s: True), 2, progress=False)
    assert "finite" not in history[-1] and not np.isfinite(history[-1]["loss"])
    assert not np.all(np.isfinite(np.asarray(state.params["w1"])))
