"""The table of every registered solver in docs/solvers.md, generated from the solvers themselves.

For each ``jd.solvers.registry.SOLVERS`` entry: the solver, ``order``, ``nfe(n)`` (written as
``a n + b``), whether it is stochastic and its strong / weak orders; with ``--measure``, also the
empirical order of the contract test's protocol (VPLinear, Karras grids from t = 0.6 to 0.05,
64/128/256 steps, the exact Gaussian oracle, float64). The static columns are checked against
the committed docs by tests/solvers/test_docs_table.py; the measured column is written by this
script only.

    python experiments/solver_table.py            # prints the static table
    python experiments/solver_table.py --measure  # and the measured orders; updates the docs
    python experiments/solver_table.py --measure --missing  # only solvers not in the JSON yet
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from pathlib import Path

import jax

import jaxdist as jd
from jaxdist.solvers import registry

DOCS = Path(__file__).resolve().parents[1] / "docs" / "solvers.md"
BEGIN, END = "<!-- solver-table:begin -->", "<!-- solver-table:end -->"
GAUSSIAN = dict(weights=[1.0], means=[[0.5, -1.0, 2.0]], variances=[[0.09, 2.89, 16.0]])
STEPS = (64, 128, 256)


def nfe_formula(solver) -> str:
    """``nfe(n)`` as ``a n + b`` (exact: every solver's NFE is affine in ``n``)."""
    a = solver.nfe(20) - solver.nfe(10)
    a, b = a // 10, solver.nfe(10) - (a // 10) * 10
    assert all(solver.nfe(n) == a * n + b for n in (2, 3, 7, 50)), solver  # n >= 2
    head = "n" if a == 1 else f"{a}n"
    return head if b == 0 else f"{head} {'+' if b > 0 else '-'} {abs(b)}"


def measured_order(solver) -> float:
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    schedule = jd.schedules.VPLinear()
    gmm = jd.testing.GaussianMixture(**GAUSSIAN)
    x_T = jax.random.normal(jax.random.key(0), (8, 3), jnp.float64)
    res = jd.testing.measure_order(
        solver, gmm.denoiser(schedule), x_T, STEPS,
        lambda n: jd.grids.karras(schedule, n, t_start=0.6, t_end=0.05),
        lambda g: gmm.ode_solution(schedule, x_T, g[0], g[-1]))
    return res.order


def short_repr(solver) -> str:
    """The constructor call with only the non-default settings (``order=`` for ``solver_order``)."""
    parts = []
    for f in dataclasses.fields(solver):
        value = getattr(solver, f.name)
        if f.default is not dataclasses.MISSING and value == f.default and f.name != "solver_order":
            continue
        shown = getattr(value, "name", None) or repr(value)
        if dataclasses.is_dataclass(value) and hasattr(value, "predictor") is False and \
                not getattr(value, "name", None):
            shown = short_repr(value)
        parts.append(f"{'order' if f.name == 'solver_order' else f.name}={shown}")
    return f"{type(solver).__name__}({', '.join(parts)})"


def _fmt(v) -> str:
    return "-" if v is None else f"{v:g}"


def rows(measured: dict[str, float] | None = None) -> list[str]:
    out = ["| name | solver | `order` | `nfe(n)` | stochastic (strong / weak) | measured order |",
           "|---|---|---:|---|---|---:|"]
    for name in sorted(registry.SOLVERS):
        s = registry.by_name(name)
        sto = f"yes ({_fmt(s.strong_order)} / {_fmt(s.weak_order)})" if s.stochastic else "no"
        m = "" if measured is None else measured.get(name, "")
        m = f"{m:.2f}" if isinstance(m, float) else ("(SDE tests)" if s.stochastic else m)
        out.append(f"| `{name}` | `{short_repr(s)}` | {s.order} | {nfe_formula(s)} | {sto} | {m} |")
    return out


def static_part(line: str) -> str:
    """A table row without its measured column (what the docs test compares)."""
    return line.rsplit("|", 2)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", action="store_true", help="measure the orders (minutes)")
    parser.add_argument("--missing", action="store_true",
                        help="with --measure: keep the JSON's orders, measure only new solvers")
    args = parser.parse_args()
    measured = None
    out = Path(__file__).parent / "out" / "solver_table.json"
    if args.measure:
        from tqdm.auto import tqdm

        known = json.loads(out.read_text()) if args.missing and out.exists() else {}
        todo = [n for n in sorted(registry.SOLVERS)
                if not registry.by_name(n).stochastic and n not in known]
        measured = {n: known.get(n) for n in sorted(registry.SOLVERS) if n in known}
        measured |= {n: measured_order(registry.by_name(n)) for n in tqdm(todo, desc="orders")}
        measured = dict(sorted(measured.items()))
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(measured, indent=1))
    table = "\n".join(rows(measured))
    print(table)
    if measured is not None:
        text = DOCS.read_text()
        new = re.sub(f"{re.escape(BEGIN)}.*{re.escape(END)}", f"{BEGIN}\n{table}\n{END}", text,
                     flags=re.S)
        DOCS.write_text(new)


if __name__ == "__main__":
    main()
