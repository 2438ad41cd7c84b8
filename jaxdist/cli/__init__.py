"""The ``jaxdist`` command line: ``train``, ``distill``, ``sample``, ``tune``, ``demo``, ``bench``
and ``solvers``.

The library never imports this package. Layout:

* one module per command (:mod:`.train`, :mod:`.distill`, :mod:`.sample`, :mod:`.tune`,
  :mod:`.demo`, :mod:`.bench`, :mod:`.solvers`), each with its ``add_parser(subparsers)`` and
  ``run(args) -> int``; they import only the standard library at module level, so
  ``jaxdist --help`` and mistyped arguments answer without starting JAX;
* the implementations, usable from Python: :mod:`.runs` (train, restore, sample, demo),
  :mod:`.distill_runs` (distil, train few-step models, sample students),
  :mod:`.discrete_runs` (discrete diffusion: train, restore, sample token runs),
  :mod:`.benchmarks`, :mod:`.quality` (metrics against held-out data), :mod:`.tables`
  (Markdown), :mod:`.plots`, :mod:`.nfe` (steps within an NFE budget), :mod:`.time_grids`
  (``--grid``), :mod:`.settings` and :mod:`.options` (argument types, one-line errors).

Every user mistake ends as one line ``error: ...`` on stderr and a non-zero exit status: 2 for
bad arguments, 1 for a run that cannot go on (a locked folder, a damaged checkpoint, training
that diverged).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from . import bench, demo, distill, sample, solvers, train, tune
from .options import CLIError, Parser

__all__ = ["main", "build_parser", "COMMANDS"]

#: command name -> its module (``add_parser``, ``run``), in the order ``--help`` lists them
COMMANDS = {m.NAME: m for m in (train, distill, sample, tune, demo, bench, solvers)}


def _version() -> str:
    from .. import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="jaxdist",
                    description="Samplers and solvers for diffusion and flow models, in JAX.",
                    epilog="Run 'jaxdist COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"jaxdist {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def _is_user_error(err: BaseException) -> bool:
    """Errors that describe a user's mistake or a run's state (reported in one line): bad
    values (``ValueError``), files (``OSError``) and jaxdist's own errors (checkpoints, locks,
    divergence). Anything else is a bug and keeps its traceback."""
    return isinstance(err, (CLIError, ValueError, OSError)) or \
        type(err).__module__.startswith("jaxdist.")


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line on ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or a usage error already printed
        return int(done.code or 0) if not isinstance(done.code, str) else 2
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command].run(args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if not _is_user_error(err):
            raise
        sys.stdout.flush()
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2 if isinstance(err, CLIError) else 1
