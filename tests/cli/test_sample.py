"""`jaxdist sample` (jaxdist.cli.sample and jaxdist.cli.runs.sample_run)."""

import json
import shutil

import jax
import numpy as np
import pytest

from jaxdist.checkpoint import Checkpointer
from jaxdist.cli.runs import restore_run
from jaxdist.cli.time_grids import GRIDS, build_grid

from .helpers import run_cli


def test_sample_writes_npz_png_and_quality(tiny_run, tmp_path, capsys):
    dest = tmp_path / "s.npz"
    code, out, err = run_cli(capsys, "sample", "--checkpoint-dir", tiny_run, "--solver", "ddim",
                             "--nfe", "4", "--num", "64", "--out", dest)
    assert code == 0, err
    data = np.load(dest)
    assert data["samples"].shape == (64, 2) and np.all(np.isfinite(data["samples"]))
    info = json.loads(str(data["info"]))
    assert info["step"] == 20 and info["nfe"] == 4 and info["solver"] == "ddim"
    assert dest.with_suffix(".png").stat().st_size > 1000
    assert "sliced W2" in out and "data floor" in out


def test_dpmpp_2m_karras_is_one_command(tiny_run, tmp_path, capsys):
    """--grid karras samples on the Karras grid (another grid than the default one)."""
    dest = tmp_path / "k.npz"
    code, out, err = run_cli(capsys, "sample", "--checkpoint-dir", tiny_run, "--solver",
                             "dpm++2m", "--grid", "karras", "--nfe", "5", "--num", "16",
                             "--step", "10", "--out", dest)
    assert code == 0, err
    assert "karras grid" in out and "from step 10" in out
    info = json.loads(str(np.load(dest)["info"]))
    assert info["grid"] == "karras" and info["nfe"] == 5 and info["step"] == 10
    schedule = restore_run(tiny_run).objective.schedule
    assert not np.allclose(build_grid("karras", schedule, 5), build_grid("default", schedule, 5))


@pytest.mark.parametrize("name", [g for g in GRIDS if g != "default"])
def test_every_grid_is_a_valid_decreasing_grid(name):
    from jaxdist.grids import validate_grid
    from jaxdist.schedules import RectifiedFlow, VPLinear

    for schedule in (VPLinear(), RectifiedFlow()):
        grid = np.asarray(build_grid(name, schedule, 10))
        assert grid.shape == (11,) and grid[-1] == pytest.approx(schedule.t_min)
        validate_grid(schedule, grid)
    trailing = np.asarray(build_grid("trailing", VPLinear(), 10))
    np.testing.assert_allclose(trailing[:-1], np.arange(1000, 0, -100) / 1000)  # DDPM indices


def test_a_diverged_checkpoint_is_an_error_naming_the_newest_finite_step(tiny_run, tmp_path,
                                                                         capsys):
    """A checkpoint with NaN parameters (what training without the guard, nonfinite='ignore',
    saves) is refused: an error naming the newest finite step, not 'sliced W2 nan', exit 0."""
    ck = tmp_path / "run"
    shutil.copytree(tiny_run, ck)
    run = restore_run(ck)
    poisoned = run.state._replace(step=run.state.step + 10,
                                  params=jax.tree.map(lambda a: a * np.nan, run.state.params))
    with Checkpointer(ck) as writer:
        writer.save(30, poisoned, config=run.config, force=True)
    code, out, err = run_cli(capsys, "sample", "--checkpoint-dir", ck, "--num", "8", "--out",
                             tmp_path / "x.npz")
    assert code == 1 and "nan" not in out.lower() and err.count("\n") == 1
    assert f"step 30 in {ck} holds non-finite parameters (the run diverged); the newest " \
           "finite step is 20: sample it with --step 20" in err
    assert not (tmp_path / "x.npz").exists()


def test_damaged_newest_checkpoint_names_the_previous_good_step(tiny_run, tmp_path, capsys):
    ck = tmp_path / "run"
    shutil.copytree(tiny_run, ck)
    for f in (ck / "20" / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 100:
            f.write_bytes(f.read_bytes()[:10])
    code, _, err = run_cli(capsys, "sample", "--checkpoint-dir", ck, "--num", "8", "--out",
                           tmp_path / "x.npz")
    assert code == 1 and err.count("\n") == 1
    assert "cannot restore step 20" in err and "Step 10 restores" in err
    assert "--step 10" in err and f"move {ck / '20'} out of {ck}" in err
    shutil.move(ck / "20", tmp_path / "damaged-20")  # what the message says: resume from 10
    assert int(restore_run(ck).state.step) == 10  # what `jaxdist train` resumes from


def test_sample_of_a_wrong_path_creates_nothing(tmp_path, capsys):
    code, _, err = run_cli(capsys, "sample", "--checkpoint-dir", tmp_path / "no" / "run",
                           "--out", tmp_path / "x.npz")
    assert code == 1 and f"no checkpoint folder {tmp_path / 'no' / 'run'}" in err
    assert not (tmp_path / "no").exists() and not (tmp_path / "x.npz").exists()


def test_consistency_needs_an_ict_run(tiny_run, capsys):
    code, _, err = run_cli(capsys, "sample", "--checkpoint-dir", tiny_run, "--solver",
                           "consistency")
    assert code == 2 and "needs an ict run" in err
