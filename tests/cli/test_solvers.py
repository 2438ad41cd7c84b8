"""`jaxdist solvers` (jaxdist.cli.solvers)."""

from jaxdist.solvers.registry import SOLVERS

from .helpers import run_cli


def test_solvers_lists_every_registered_name(capsys):
    code, out, _ = run_cli(capsys, "solvers")
    assert code == 0
    listed = {line.split()[0] for line in out.splitlines()}
    assert listed == set(SOLVERS)
