"""The solver table in docs/solvers.md is generated from the solvers (experiments/solver_table.py):
its static columns (settings, order, nfe(n), stochastic) must match the registry."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_docs_table_matches_the_registry():
    spec = importlib.util.spec_from_file_location("solver_table",
                                                  ROOT / "experiments" / "solver_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    text = (ROOT / "docs" / "solvers.md").read_text()
    body = text.split(table.BEGIN)[1].split(table.END)[0].strip().splitlines()
    want = [table.static_part(r) for r in table.rows()]
    got = [table.static_part(r) for r in body]
    assert got == want, "docs/solvers.md is stale: run python experiments/solver_table.py --measure"
