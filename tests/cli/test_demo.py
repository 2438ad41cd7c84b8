"""`jaxdist demo` (jaxdist.cli.demo; jaxdist.cli.runs.run_demo): its parser, table and plots.

A whole demo run (a minute of training) is what `make demo` runs; here are its pieces."""

import numpy as np

from jaxdist.cli.plots import plot_loss, samples_figure, smooth
from jaxdist.cli.tables import quality_table
from jaxdist.data import get_dataset

from .helpers import run_cli


def test_demo_rejects_bad_values_before_any_work(capsys):
    code, _, err = run_cli(capsys, "demo", "--steps", "0")
    assert code == 2 and "argument --steps: must be a positive integer" in err
    code, _, err = run_cli(capsys, "demo", "--data", "checker")
    assert code == 2 and "did you mean 'checkerboard'?" in err


def test_quality_table_explains_the_floor():
    table = quality_table([{"label": "ddim", "nfe": 5, "swd": 0.1, "mmd": 1e-3,
                            "floor_swd": 0.03, "floor_mmd": 1e-4}])
    assert "| ddim | 5 | 0.1000 | 1.00e-03 | 0.0300 | 1.00e-04 |" in table
    assert "floor: the same metrics for as many fresh draws of the training data" in table


def test_loss_and_sample_plots(tmp_path):
    history = [{"step": 50 * (i + 1), "loss": 1.0 / (i + 1) + 0.1 * (i % 2)} for i in range(40)]
    plot_loss(history, tmp_path / "loss.png", "flow-matching loss on checkerboard (2000 steps)")
    x = np.random.default_rng(0).standard_normal((100, 2))
    samples_figure([("held-out data", x), ("ddim, NFE 5", x)], get_dataset("two-moons"),
                   tmp_path / "samples.png", "flow matching (fm) on two-moons, 2000 training steps")
    for png in ("loss.png", "samples.png"):
        assert (tmp_path / png).stat().st_size > 5000


def test_smooth_is_a_moving_average():
    assert smooth([1.0, 3.0, 5.0, 7.0], 2).tolist() == [1.0, 2.0, 4.0, 6.0]
