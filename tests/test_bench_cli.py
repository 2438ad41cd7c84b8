"""`jaxdist bench` and the CLI front door."""

import json

import pytest

from jaxdist import cli
from jaxdist.bench import format_table, run_bench


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "bench" in out and "solvers" in out


def test_bench_writes_table_json_and_plot(tmp_path, capsys):
    report = run_bench(tmp_path, nfes=(4, 8), solver_names=["ddim", "dpm++2m"], n_samples=64,
                       progress=False)
    data = json.loads((tmp_path / "bench.json").read_text())
    assert (tmp_path / "bench.png").stat().st_size > 1000
    errors = data["results"]["dpm++2m"]["error"]
    assert errors[1] < errors[0]  # more steps, less error
    # DPM-Solver++(2M) beats DDIM at equal NFE on the mixture.
    assert data["results"]["dpm++2m"]["error"][1] < data["results"]["ddim"]["error"][1]
    assert "| dpm++2m |" in format_table(report)
    assert "| ddim |" in capsys.readouterr().out


def test_cli_lists_solvers(capsys):
    assert cli.main(["solvers"]) == 0
    assert "dpm++2m" in capsys.readouterr().out


def test_unknown_solver_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown solver 'dpm\\+\\+9m'"):
        run_bench(tmp_path, nfes=(4,), solver_names=["dpm++9m"], progress=False, plot=False)
