"""``jaxdist solvers``: the solver names ``--solver`` and ``--solvers`` accept."""

from __future__ import annotations

import argparse

NAME = "solvers"
HELP = "list the solver names known to the CLI"


def add_parser(sub) -> argparse.ArgumentParser:
    return sub.add_parser(NAME, help=HELP,
                          description="Lists the names accepted by --solvers and --solver, with "
                                      "each solver's settings.")


def run(args: argparse.Namespace) -> int:
    from ..solvers.registry import SOLVERS, by_name

    for name in sorted(SOLVERS):
        print(f"{name:18s} {by_name(name)!r}")
    return 0
