"""`jaxdist distill`, `jaxdist train --objective meanflow` and `jaxdist sample` of their
students, end to end on the tiny teacher run (a few steps: the wiring, not the quality, which
tests/test_distill_runs.py and experiments/distill.py measure)."""

import numpy as np

from jaxdist.cli import distill as distill_cli
from jaxdist.cli.distill_runs import DISTILL_METHODS

from .helpers import TINY, run_cli


def test_methods_listed_without_jax_match_the_runs():
    assert distill_cli.METHODS == DISTILL_METHODS


def test_distill_then_sample_the_student(tiny_run, tmp_path, capsys):
    out_dir = tmp_path / "dmd"
    code, out, err = run_cli(capsys, "distill", "--teacher", tiny_run, "--method", "dmd",
                             "--steps", "2", "--save-every", "2", "--n-critic", "1",
                             "--batch-size", "64", "--checkpoint-dir", out_dir, "--quiet")
    assert code == 0, err
    assert "step 2: loss" in out and "critic_loss" in out
    code, out, err = run_cli(capsys, "sample", "--checkpoint-dir", out_dir, "--num", "32",
                             "--out", tmp_path / "s.npz")
    assert code == 0, err
    assert "32 samples from step 2 with dmd (NFE 1)" in out
    x = np.load(tmp_path / "s.npz")["samples"]
    assert x.shape == (32, 2) and np.all(np.isfinite(x))
    # a student samples with its own sampler: --solver is an error, in one line
    code, _, err = run_cli(capsys, "sample", "--checkpoint-dir", out_dir, "--solver", "ddim")
    assert code == 2 and err.startswith("error: ") and "own sampler" in err
    # the same command again: complete, nothing trained
    code, out, _ = run_cli(capsys, "distill", "--teacher", tiny_run, "--method", "dmd",
                           "--steps", "2", "--n-critic", "1", "--batch-size", "64",
                           "--checkpoint-dir", out_dir, "--quiet")
    assert code == 0 and "is complete: step 2 of --steps 2" in out


def test_train_fewstep_objective_then_sample(tmp_path, capsys):
    run_dir = tmp_path / "mf"
    code, out, err = run_cli(capsys, "train", "--objective", "meanflow", "--steps", "2",
                             "--save-every", "2", "--checkpoint-dir", run_dir, *TINY)
    assert code == 0, err
    assert "step 2: loss" in out
    code, out, err = run_cli(capsys, "sample", "--checkpoint-dir", run_dir, "--num", "16",
                             "--nfe", "2", "--out", tmp_path / "m.npz")
    assert code == 0, err
    assert "with meanflow (NFE 2)" in out
    code, _, err = run_cli(capsys, "train", "--objective", "scm", "--prediction", "v",
                           "--checkpoint-dir", tmp_path / "x", *TINY)
    assert code == 2 and "--prediction does not apply" in err
