"""`jaxdist tune` (jaxdist.cli.tune): a tuned grid for a trained checkpoint, as JSON and a plot."""

import json

import numpy as np

from jaxdist.cli.runs import restore_run
from jaxdist.tune import Tuned

from .helpers import run_cli


def test_tune_writes_a_loadable_grid_and_a_plot(tiny_run, tmp_path, capsys):
    dest = tmp_path / "t.json"
    code, out, err = run_cli(capsys, "tune", "--checkpoint-dir", tiny_run, "--solver", "dpm++2m",
                             "--nfe", "4", "--steps", "5", "--num", "20", "--teacher-steps",
                             "32", "--out", dest)
    assert code == 0, err
    schedule = restore_run(tiny_run).objective.schedule
    tuned = Tuned.load(dest, schedule)
    g = np.asarray(tuned.grid)
    assert g.shape == (5,) and np.all(np.diff(g) < 0) and g[-1] >= schedule.t_min
    assert len(json.loads(dest.read_text())["history"]) == 6
    assert dest.with_suffix(".png").stat().st_size > 1000
    assert "held-out RMS error" in out and "wrote" in out


def test_tune_refuses_a_stochastic_solver_before_reading_the_checkpoint(tmp_path, capsys):
    code, _, err = run_cli(capsys, "tune", "--checkpoint-dir", tmp_path / "none", "--solver",
                           "ddpm")
    assert code != 0 and "deterministic fixed-grid solver" in err
    assert not (tmp_path / "none").exists()
