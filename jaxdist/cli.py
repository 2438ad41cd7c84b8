"""The ``jaxdist`` command line: ``bench``, ``solvers``, and ``train``, ``sample``, ``demo``
(implemented in :mod:`jaxdist.commands`)."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

__all__ = ["main", "build_parser"]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def _names(text: str) -> list[str]:
    return [v for v in text.split(",") if v]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxdist",
        description="Samplers and solvers for diffusion and flow models, in JAX.",
        epilog="Run 'jaxdist COMMAND --help' for the options of a command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    bench = sub.add_parser(
        "bench", help="accuracy of every solver against NFE on a built-in Gaussian mixture",
        description="Samples a built-in 2-D Gaussian mixture with every solver at several NFE "
                    "budgets and reports the RMS error to the reference probability-flow ODE "
                    "solution: a table on stdout, bench.json and bench.png in --out.")
    bench.add_argument("--out", default="out/bench", help="output folder (default: out/bench)")
    bench.add_argument("--nfe", type=_ints, default=[5, 8, 10, 20, 50],
                       help="comma-separated NFE budgets (default: 5,8,10,20,50)")
    bench.add_argument("--solvers", type=_names, default=None,
                       help="comma-separated solver names (default: all; see 'jaxdist solvers')")
    bench.add_argument("--schedule", choices=["vp", "edm", "rf"], default="vp",
                       help="noise schedule: VP linear, EDM or rectified flow (default: vp)")
    bench.add_argument("--samples", type=int, default=None,
                       help="samples per run (default: 512; 20000 with --stochastic)")
    bench.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    bench.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    bench.add_argument("--stochastic", action="store_true",
                       help="benchmark the stochastic samplers instead: Frechet distance and "
                            "component weights against the true mixture, per NFE "
                            "(bench_stochastic.json / .png)")

    sub.add_parser("solvers", help="list the solver names known to the CLI",
                   description="Lists the names accepted by --solvers and --solver.")
    from .commands import add_parsers  # train, sample, demo

    add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "solvers":
        from .solvers.registry import SOLVERS, by_name

        for name in sorted(SOLVERS):
            print(f"{name:18s} {by_name(name)!r}")
        return 0
    if args.command == "bench" and args.stochastic:
        from .bench_stochastic import run_stochastic_bench

        run_stochastic_bench(args.out, nfes=args.nfe, solver_names=args.solvers,
                             schedule=args.schedule, n_samples=args.samples or 20000,
                             seed=args.seed, plot=not args.no_plot)
        return 0
    if args.command == "bench":
        from .bench import run_bench

        run_bench(args.out, nfes=args.nfe, solver_names=args.solvers, schedule=args.schedule,
                  n_samples=args.samples or 512, seed=args.seed, plot=not args.no_plot)
        return 0
    from .commands import COMMANDS

    if args.command in COMMANDS:
        return COMMANDS[args.command](args)
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
