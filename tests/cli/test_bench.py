"""`jaxdist bench` (jaxdist.cli.bench and jaxdist.cli.benchmarks): tables, plots, NFE."""

import json

import jax
import numpy as np
import pytest

from jaxdist.cli.benchmarks import family, run_bench, weight_error
from jaxdist.cli.nfe import run_within_budget, steps_for_nfe
from jaxdist.cli.options import CLIError
from jaxdist.cli.tables import bench_table, identical_rows
from jaxdist.solvers.registry import by_name
from jaxdist.testing import GaussianMixture

from .helpers import run_cli


def test_bench_writes_table_json_and_family_panels(tmp_path, capsys):
    report = run_bench(tmp_path, nfes=(4, 8), solver_names=["ddim", "dpm++2m", "euler"],
                       n_samples=64, progress=False)
    data = json.loads((tmp_path / "bench.json").read_text())
    assert (tmp_path / "bench.png").stat().st_size > 5000
    results = data["results"]
    assert results["dpm++2m"]["error"][1] < results["dpm++2m"]["error"][0]  # more NFE, less error
    # DPM-Solver++(2M) beats DDIM at equal NFE on the mixture.
    assert results["dpm++2m"]["error"][1] < results["ddim"]["error"][1]
    assert {r["family"] for r in results.values()} == {"ddim", "dpm_solver", "edm"}
    table = bench_table(report)
    assert "| dpm++2m |" in table and "(n): the model evaluations actually used" in table
    assert "ddim and euler give the same numbers (to float32 round-off): Euler's method" in table
    assert "| ddim |" in capsys.readouterr().out


def test_identical_rows_are_grouped():
    results = {"a": {"e": [1.0, 2.0]}, "b": {"e": [1.0, 2.5]}, "c": {"e": [1.0, 2.0 + 1e-7]}}
    assert identical_rows(results, "e") == [["a", "c"]]


class _Costs:
    """A stand-in solver whose n steps cost ``nfe(n) = a n + b`` evaluations."""

    def __init__(self, a, b):
        self.a, self.b, self.runs = a, b, []

    def nfe(self, n):
        return self.a * n + self.b

    cost = nfe

    def run(self, n):
        self.runs.append(n)
        return f"ran {n}", self.cost(n)


@pytest.mark.parametrize("a,b", [(1, 0), (2, -1), (3, 0), (4, 0), (0, 62)])
def test_run_within_budget_spends_at_most_the_budget(a, b):
    """One run at the largest step count whose ``solver.nfe`` fits the budget."""
    for budget in (3, 5, 8, 20, 50):
        solver = _Costs(a, b)
        out, used = run_within_budget(solver, budget, solver.run)
        n = solver.runs[-1]
        assert out == f"ran {n}" and used == solver.cost(n)
        if a:
            assert used <= budget or n == 1
        assert solver.runs == [steps_for_nfe(solver, budget)]
        assert n == 1 or solver.cost(n + 1) > budget
    with pytest.raises(ValueError, match="nfe=0 must be a positive"):
        run_within_budget(_Costs(1, 0), 0, None)
    with pytest.raises(CLIError, match="chooses its own steps"):  # adaptive: no NFE budget
        run_within_budget(by_name("dpm-adaptive"), 10, None)


def test_family_is_the_solver_module():
    assert family(by_name("unipc")) == "unipc" and family(by_name("rk3")) == "runge_kutta"


def test_bench_stochastic_cli(tmp_path, capsys):
    code, out, err = run_cli(capsys, "bench", "--stochastic", "--out", tmp_path, "--nfe", "10",
                             "--solvers", "ddpm,edm-sde", "--samples", "2000")
    assert code == 0, err
    report = json.loads((tmp_path / "bench_stochastic.json").read_text())
    assert set(report["results"]) == {"ddpm", "edm-sde"}
    assert (tmp_path / "bench_stochastic.png").exists()
    assert report["results"]["edm-sde"]["nfe"] == [9]  # 5 Heun steps, the last one Euler
    assert all(np.isfinite(report["results"]["ddpm"]["frechet"]))
    assert "exact samples (floor)" in out


def test_weight_error_of_exact_samples_is_monte_carlo_small():
    mix = GaussianMixture([0.3, 0.7], [[-1.0, 0.0], [1.0, 0.0]], [[0.05, 0.05], [0.05, 0.05]])
    tv, frac = weight_error(np.asarray(mix.sample(jax.random.key(0), 20000), np.float64), mix)
    assert tv < 4 * np.sqrt(0.21 / 20000) and abs(frac.sum() - 1) < 1e-12


def test_unknown_solver_is_a_clear_error_before_any_work(tmp_path, capsys):
    code, _, err = run_cli(capsys, "bench", "--out", tmp_path / "b", "--nfe", "4", "--solvers",
                           "dpm++9m")
    assert code == 2 and "unknown solver 'dpm++9m'" in err and "did you mean" in err
    assert not (tmp_path / "b").exists()
