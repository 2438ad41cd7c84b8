"""`jaxdist train` (jaxdist.cli.train and jaxdist.cli.runs.train_run): tiny runs end to end."""

import os
import signal
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxdist.checkpoint import Checkpointer
from jaxdist.cli.quality import quality
from jaxdist.cli.runs import restore_run, sample_checkpoint, train_run
from jaxdist.data import get_dataset
from jaxdist.folder_lock import LOCK_NAME

from .helpers import TINY, TINY_SETTINGS, run_cli, train_tiny


def _finite(tree) -> bool:
    return all(bool(np.all(np.isfinite(np.asarray(a)))) for a in jax.tree.leaves(tree))


def test_train_resume_complete_and_settings_mismatch(tmp_path, capsys):
    ck = tmp_path / "run"
    code, out, _ = run_cli(capsys, *train_tiny(ck, 20, 10, "--seed", "3"))
    assert code == 0 and "step 20: loss" in out
    assert Checkpointer(ck, read_only=True).all_steps() == [10, 20]
    code, out, _ = run_cli(capsys, *train_tiny(ck, 30, 10, "--seed", "3"))
    assert code == 0 and "resuming" in out and "from step 20" in out and "step 30: loss" in out
    config = Checkpointer(ck, read_only=True).restore_config()
    assert config["data"] == "two-moons" and config["seed"] == 3 and config["hidden"] == 16

    # the same command again: the run is complete, nothing is written
    before = sorted(p.name for p in ck.iterdir())
    code, out, _ = run_cli(capsys, *train_tiny(ck, 30, 10, "--seed", "3"))
    assert code == 0 and "is complete: step 30 of --steps 30" in out
    # settings that differ from the saved run: a clear error, nothing written
    code, _, err = run_cli(capsys, "train", "--steps", "40", "--checkpoint-dir", ck, "--seed",
                           "3", "--batch-size", "64", "--hidden", "32", "--depth", "1", "--quiet")
    assert code == 1 and err.startswith("error: ") and "hidden: saved 16, requested 32" in err
    assert sorted(p.name for p in ck.iterdir()) == before
    code, _, err = run_cli(capsys, "train", "--objective", "fm", "--prediction", "eps", "--steps",
                           "1", "--checkpoint-dir", tmp_path / "bad", *TINY)
    assert code == 1 and "prediction applies to objective 'dsm' only" in err
    assert not (tmp_path / "bad").exists()


def test_divergence_stops_names_the_step_and_never_saves_non_finite(tmp_path, capsys):
    """lr 1e6: the loss overflows within a few steps. Training stops with the step named and
    every checkpoint before it kept; `--skip-nonfinite` goes on past such updates (the run stays
    finite)."""
    ck = tmp_path / "run"
    code, _, err = run_cli(capsys, *train_tiny(ck, 12, 1, "--lr", "1e6"))
    assert code == 1 and err.count("\n") == 1
    assert "error: training stopped at step" in err and "not applied" in err
    bad = int(err.split("training stopped at step ")[1].split()[0])
    assert Checkpointer(ck, read_only=True).latest_step() == bad - 1  # none at or after it
    code, out, err = run_cli(capsys, *train_tiny(ck, 12, 12, "--lr", "1e6", "--skip-nonfinite"))
    assert code == 0 and "non-finite updates skipped" in out, err
    assert _finite(restore_run(ck).state.params)


_HOLDER = """
import sys, time
from jaxdist.folder_lock import FolderLock
lock = FolderLock(sys.argv[1])
print("LOCKED", flush=True)
time.sleep(120)
"""


def test_second_run_on_a_folder_is_told_who_writes_there(tmp_path, capsys):
    """Two processes: the folder's lock is held by another live process, so `train` stops at
    once naming its pid and host; once that process is killed (a stale lock file stays behind),
    the next run takes the folder over."""
    ck = tmp_path / "run"
    ck.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(ck)], stdout=subprocess.PIPE,
                              text=True, env=dict(os.environ, PYTHONPATH=os.getcwd()))
    try:
        assert holder.stdout.readline().strip() == "LOCKED"
        code, _, err = run_cli(capsys, *train_tiny(ck, 2, 2))
        assert code == 1 and err.count("\n") == 1
        assert f"another run (pid {holder.pid} on host {socket.gethostname()}" in err
        assert not [p for p in ck.iterdir() if p.name != LOCK_NAME]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert (ck / LOCK_NAME).exists()  # the dead process's lock file
    with Checkpointer(ck) as taken_over:  # what the next `jaxdist train` opens
        assert taken_over.latest_step() is None


def test_digits_ict_trains_and_samples_by_consistency_and_ode(tmp_path, capsys):
    """Consistency training on digits; sampled by consistency steps and by an ODE solver."""
    pytest.importorskip("sklearn")
    ck = tmp_path / "digits"
    code, _, err = run_cli(capsys, "train", "--data", "digits", "--objective", "ict", "--steps",
                           "3", "--checkpoint-dir", ck, *TINY)
    assert code == 0, err
    for solver, nfe in [("consistency", 2), ("dpm++2m", 4)]:
        dest = tmp_path / f"{solver}.npz"
        code, _, err = run_cli(capsys, "sample", "--checkpoint-dir", ck, "--solver", solver,
                               "--nfe", nfe, "--num", "16", "--out", dest)
        assert code == 0, err
        x = np.load(dest)["samples"]
        assert x.shape == (16, 64) and np.all(np.isfinite(x))
        assert dest.with_suffix(".png").exists()


def test_ict_run_does_not_collapse(tmp_path):
    """iCT with the CLI's settings (smooth time embedding, sigma_data = data std, lr 5e-4):
    600 steps give one-step samples near two-moons. Measured sliced W2 over seeds 0-3:
    0.115-0.209 (floor, data against data: 0.066); the earlier settings (embedding frequencies
    up to 64, lr 2e-3) scored 0.38, a blob at the centre."""
    train_run(tmp_path, data="two-moons", objective="ict", steps=600, progress=False,
              hidden=64, depth=2, ema_decay=0.99, seed=0)
    x, info = sample_checkpoint(tmp_path, solver="consistency", nfe=1, num=1000)
    q = quality(x, get_dataset("two-moons"), n_ref=1000)
    assert info["nfe"] == 1 and info["config"]["lr"] == 5e-4
    assert q["model"]["swd"] < 0.25, q


@pytest.mark.parametrize("prediction", [None, "eps"])
def test_dsm_prediction_is_saved_and_used(tmp_path, prediction):
    extra = {} if prediction is None else {"prediction": prediction}
    train_run(tmp_path, data="two-moons", objective="dsm", steps=2, progress=False,
              **TINY_SETTINGS, **extra)
    run = restore_run(tmp_path)
    assert run.config["prediction"] == run.objective.prediction == (prediction or "v")
