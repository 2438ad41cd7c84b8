"""Markdown tables of the command line, each followed by the notes that explain its cells.

* :func:`quality_table`: sliced W2 and MMD^2 of a run's samples next to the data's floor;
* :func:`bench_table`: RMS error to the reference ODE solution per solver and NFE budget;
* :func:`stochastic_table`: Frechet distance and component-weight error per sampler.

A cell ``1.23e-02 (9)`` used 9 model evaluations where the budget of its column was not reachable
exactly. Rows with the same numbers at every budget (to float32 round-off) are named together,
with the reason.
"""

from __future__ import annotations

import numpy as np

__all__ = ["quality_table", "bench_table", "stochastic_table", "identical_rows", "SAME_METHOD"]

#: solver pairs that are one method written twice, and why (named under the tables)
SAME_METHOD = {
    frozenset({"ddim", "euler"}): "Euler's method on the probability-flow ODE in the EDM "
                                  "variables (x / alpha against sigma / alpha) is DDIM (eta = 0)",
}

FLOOR_NOTE = ("floor: the same metrics for as many fresh draws of the training data against the "
              "held-out set, what a perfect model scores with this many samples; a model is "
              "as good as the metrics can tell when it is at its floor.")
NFE_NOTE = ("(n): the model evaluations actually used where the budget of the column was not "
            "reachable: a solver spends a whole number of steps, and some steps cost several "
            "evaluations (singlestep DPM-Solver, Heun, Runge-Kutta); adaptive solvers choose "
            "their own number.")


def quality_table(rows: list[dict]) -> str:
    """Rows ``{"label", "nfe", "swd", "mmd", "floor_swd", "floor_mmd"}`` as Markdown + notes."""
    lines = ["| samples | NFE | sliced W2 | MMD^2 | floor sliced W2 | floor MMD^2 |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['nfe']} | {r['swd']:.4f} | {r['mmd']:.2e} | "
                     f"{r['floor_swd']:.4f} | {r['floor_mmd']:.2e} |")
    return _with_notes(lines, [FLOOR_NOTE])


def identical_rows(results: dict[str, dict], key: str, rtol: float = 1e-5) -> list[list[str]]:
    """Groups (two or more names) of ``results`` whose ``key`` lists agree to ``rtol`` (float32
    round-off of two ways to write one method)."""
    groups: list[list[str]] = []
    for name, row in results.items():
        values = np.asarray(row[key], np.float64)
        for group in groups:
            other = np.asarray(results[group[0]][key], np.float64)
            if other.shape == values.shape and np.allclose(other, values, rtol=rtol, atol=0,
                                                           equal_nan=True):
                group.append(name)
                break
        else:
            groups.append([name])
    return [g for g in groups if len(g) > 1]


def _identical_notes(results: dict[str, dict], key: str) -> list[str]:
    notes = []
    for group in identical_rows(results, key):
        why = SAME_METHOD.get(frozenset(group), "the two updates coincide on this problem")
        notes.append(f"{' and '.join(group)} give the same numbers (to float32 round-off): "
                     f"{why}.")
    return notes


def _with_notes(lines: list[str], notes: list[str]) -> str:
    """The table, then each note as its own paragraph."""
    return "\n\n".join(["\n".join(lines)] + notes)


def _cells(nfes, used, values, fmt) -> list[str]:
    return [fmt(*v) + ("" if u == n else f" ({u})") for n, u, v in zip(nfes, used, values)]


def bench_table(report: dict) -> str:
    """``jaxdist bench``: solvers by rows, NFE budgets by columns, then the notes."""
    nfes = report["nfe_budget"]
    lines = [f"RMS error to the reference PF-ODE solution ({report['schedule']} schedule, "
             f"{report['grid']} grid, {report['n_samples']} samples)", "",
             "| solver | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
             "|---|" + "---:|" * len(nfes)]
    for name, row in report["results"].items():
        cells = _cells(nfes, row["nfe"], zip(row["error"]), lambda e: f"{e:.2e}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return _with_notes(lines, [NFE_NOTE] + _identical_notes(report["results"], "error"))


def stochastic_table(report: dict) -> str:
    """``jaxdist bench --stochastic``: ``Frechet / weight TV`` per sampler and NFE budget."""
    nfes = report["nfe_budget"]
    floor = report["exact_samples"]
    lines = [f"Distribution error of stochastic samplers: Frechet distance / component-weight TV "
             f"({report['schedule']} schedule, {report['grid']} grid, {report['n_samples']} "
             "samples)", "",
             "| sampler | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
             "|---|" + "---:|" * len(nfes)]
    for name, row in report["results"].items():
        cells = _cells(nfes, row["nfe"], zip(row["frechet"], row["weight_tv"]),
                       lambda f, w: f"{f:.2e} / {w:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(f"| exact samples (floor) | {floor['frechet']:.2e} / {floor['weight_tv']:.3f}"
                 + " |" * len(nfes))
    notes = [NFE_NOTE, "exact samples (floor): the same metrics for as many draws from the true "
             "mixture, the Monte Carlo error a perfect sampler still shows."]
    return _with_notes(lines, notes + _identical_notes(report["results"], "frechet"))
