"""The multi-network distillation state: bitwise resume through the Checkpointer on the data
mesh, and the run entry points (``distill_run``, ``train_fewstep_run``, ``sample_student``)
end to end on a tiny teacher, with their errors for bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxdist as jd
from fewstep_helpers import gaussian, gaussian_fake, linear_generator
from jaxdist.checkpoint import Checkpointer, CheckpointError
from jaxdist.cli.distill_runs import (distill_run, sample_student,
                                      train_fewstep_run)
from jaxdist.train import NonFiniteError
from jaxdist.distill import DistillState, init_distill_state, make_distill_step
from jaxdist.objectives import dmd

SCH = jd.schedules.EDM(sigma_data=1.0)
GRID = jnp.array([80.0, 1.0, 0.002])  # a two-step generator


def tiny_problem(with_disc: bool):
    n = 64
    generator = dmd.Generator(linear_generator(SCH, GRID), GRID)
    fake_apply, fake_den = gaussian_fake(SCH)
    logit_fn = dmd.feature_discriminator(lambda p, x, t: jnp.concatenate([x, x**2], 1),
                                         lambda p, f: f @ p["w"] + p["b"]) if with_disc else None
    gen_loss = dmd.make_generator_loss(generator, gaussian().denoiser(SCH), fake_den,
                                       sample_shape=(2,), batch_size=n, logit_fn=logit_fn,
                                       gan_weight=0.01 if with_disc else 0.0)
    critic_loss = dmd.make_critic_loss(generator, fake_apply, schedule=SCH, prediction="x0",
                                       sample_shape=(2,), batch_size=n, logit_fn=logit_fn)
    txs = {"gen_tx": optax.adam(1e-2), "fake_tx": optax.adam(1e-2),
           "disc_tx": optax.adam(1e-2) if with_disc else None}
    disc = {"w": jnp.zeros(4), "b": jnp.zeros(())} if with_disc else None
    state = init_distill_state({"mu": jnp.zeros(2), "L": jnp.eye(2)},
                               {"m": jnp.zeros(2), "A": jnp.eye(2)}, jax.random.key(0),
                               disc_params=disc, **txs)
    step = make_distill_step(gen_loss, critic_loss, n_critic=2, jit=False, **txs)

    def batch(i):
        return {"x": np.asarray(gaussian().sample(jax.random.key(1000 + i), n), np.float32)}

    return state, step, batch


def test_distill_state_resumes_bitwise(tmp_path):
    """Generator, fake score, discriminator and the three optimiser states of a two-step
    generator (backward simulation): 3 steps, an Orbax save, a restore into a fresh state and 3
    more steps equal 6 straight steps bit for bit. A state without a discriminator (empty
    placeholders) saves and restores too. (``test_distill_run_trains_and_samples`` runs the
    same step sharded on the 8-device data mesh.)"""
    fresh, step, batch = tiny_problem(True)
    run = jax.jit(step)

    def advance(state, start, stop):
        for i in range(start, stop):
            state, metrics = run(state, batch(i))
        assert np.isfinite(float(metrics["loss"])) and np.isfinite(float(metrics["critic_loss"]))
        return state

    straight = advance(fresh, 0, 6)
    half = advance(fresh, 0, 3)
    with Checkpointer(tmp_path / "ckpt", save_every=1) as ckpt:
        ckpt.save(3, half, config={"n_critic": 2}, force=True)
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        restored, config = ckpt.restore(tiny_problem(True)[0])
    assert config == {"n_critic": 2} and isinstance(restored, DistillState)
    resumed = advance(restored, 3, 6)
    assert int(resumed.step) == 6
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    plain = tiny_problem(False)[0]
    assert plain.disc_params == {} and plain.disc_opt_state == {}
    with Checkpointer(tmp_path / "plain") as ckpt:
        ckpt.save(0, plain, force=True)
    with Checkpointer(tmp_path / "plain") as ckpt:
        back, _ = ckpt.restore(tiny_problem(False)[0])
    assert jax.tree.structure(back) == jax.tree.structure(plain)
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(back)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    from jaxdist.cli.runs import train_run

    path = tmp_path_factory.mktemp("distill") / "teacher"
    train_run(path, data="two-moons", objective="fm", steps=2, hidden=16, depth=1,
              batch_size=64, progress=False)
    return path


def test_distill_run_trains_and_samples(tmp_path, teacher):
    """DMD2 (generator, fake score and a discriminator head on the fake score's MLP features,
    all initialised from the teacher): 2 checkpointed steps; the student samples [num, 2] at 1
    NFE; the saved config holds the teacher's; other settings in the same folder are refused."""
    out = tmp_path / "dmd2"
    settings = {"n_critic": 1, "batch_size": 64, "progress": False, "save_every": 1,
                "log_every": 1}
    state, history = distill_run(out, teacher_dir=teacher, method="dmd2", steps=2, **settings)
    assert int(state.step) == 2 and np.isfinite(history[-1]["critic_disc_loss"])
    assert jax.tree.leaves(state.disc_params)
    x, info = sample_student(out, num=50)
    assert x.shape == (50, 2) and np.all(np.isfinite(x)) and info["nfe"] == 1
    with Checkpointer(out) as ckpt:
        saved = ckpt.restore_config()
        assert ckpt.all_steps() == [1, 2]
    assert saved["method"] == "dmd2" and saved["teacher_config"]["objective"] == "fm"
    with pytest.raises(CheckpointError, match="different configuration"):
        distill_run(out, teacher_dir=teacher, method="dmd2", steps=4,
                    **{**settings, "n_critic": 2})


def test_bad_input_is_refused_before_anything_is_written(tmp_path, teacher):
    out = tmp_path / "never"
    with pytest.raises(ValueError, match="data dimension 2"):
        distill_run(out, teacher_dir=teacher, method="dmd2", data="digits", steps=2)
    with pytest.raises(ValueError, match="n_critic"):
        distill_run(out, teacher_dir=teacher, method="dmd2", n_critic=0, steps=2)
    with pytest.raises(ValueError, match="unknown method"):
        distill_run(out, teacher_dir=teacher, method="gan", steps=2)
    with pytest.raises(ValueError, match="divergence"):
        distill_run(out, teacher_dir=teacher, method="f-distill", divergence="tv", steps=2)
    with pytest.raises(CheckpointError, match="not a folder"):
        distill_run(out, teacher_dir=tmp_path / "missing", method="dmd2", steps=2)
    assert not out.exists()


def test_fewstep_run_resumes_samples_and_stops_on_non_finite_loss(tmp_path):
    """MeanFlow from scratch: 2 steps, resumed to 4, samples at 1 and 2 NFE; a shortcut run
    whose loss overflows stops with NonFiniteError and saves no checkpoint."""
    out = tmp_path / "meanflow"
    common = {"data": "two-moons", "hidden": 16, "depth": 1, "batch_size": 64,
              "progress": False}
    train_fewstep_run(out, method="meanflow", steps=2, **common)
    state, history = train_fewstep_run(out, method="meanflow", steps=4, **common)
    assert int(state.step) == 4 and [h["step"] for h in history] == [3, 4]
    for nfe in (1, 2):
        x, _ = sample_student(out, nfe=nfe, num=40)
        assert x.shape == (40, 2) and np.all(np.isfinite(x))
    with pytest.raises(CheckpointError, match="not a teacher"):
        distill_run(tmp_path / "x", teacher_dir=out, method="dmd2", steps=2)
    bad = tmp_path / "diverges"
    with pytest.raises(NonFiniteError, match="not finite|non-finite"):
        train_fewstep_run(bad, method="shortcut", steps=8, lr=1e30, grad_clip=None,
                          save_every=4, log_every=1, **common)
    with Checkpointer(bad) as ckpt:
        assert ckpt.all_steps() == []
