"""``jaxdist bench``: accuracy of every solver against NFE on a built-in Gaussian mixture
(implementation: :mod:`jaxdist.cli.benchmarks`)."""

from __future__ import annotations

import argparse

from . import settings
from .options import int_list, name_list, nonnegative_int, positive_int
from .time_grids import GRIDS

NAME = "bench"
HELP = "accuracy of every solver against NFE on a built-in Gaussian mixture"


def _samples(text: str) -> int:
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2, got {text!r}")
    return value


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME, help=HELP,
        description="Samples a built-in 2-D Gaussian mixture with every solver at several NFE "
                    "budgets and reports the RMS error to the reference probability-flow ODE "
                    "solution: a table on stdout, bench.json and bench.png (one panel per solver "
                    "family) in --out.")
    p.add_argument("--out", default="out/bench", help="output folder (default: out/bench)")
    p.add_argument("--nfe", type=int_list, default=None,
                   help="comma-separated NFE budgets (default: "
                        f"{','.join(map(str, settings.BENCH_NFES))}; "
                        f"{','.join(map(str, settings.STOCHASTIC_NFES))} with --stochastic)")
    p.add_argument("--solvers", type=name_list, default=None,
                   help="comma-separated solver names (default: all; see 'jaxdist solvers')")
    p.add_argument("--schedule", choices=list(settings.BENCH_SCHEDULES), default="vp",
                   help="noise schedule: " + ", ".join(f"{k} ({v})" for k, v in
                                                       settings.BENCH_SCHEDULES.items())
                        + " (default: vp)")
    p.add_argument("--grid", choices=list(GRIDS), default="default",
                   help="time grid (default: the schedule's usual one; see 'jaxdist sample "
                        "--help')")
    p.add_argument("--samples", type=_samples, default=None,
                   help="samples per run (default: 512; 20000 with --stochastic)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="random seed (default: 0)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    p.add_argument("--stochastic", action="store_true",
                   help="benchmark the stochastic samplers instead: Frechet distance and "
                        "component weights against the true mixture, per NFE "
                        "(bench_stochastic.json / .png)")
    return p


def run(args: argparse.Namespace) -> int:
    from .benchmarks import run_bench, run_stochastic_bench

    common = {"solver_names": args.solvers, "schedule": args.schedule,
              "grid": None if args.grid == "default" else args.grid, "seed": args.seed,
              "plot": not args.no_plot}
    if args.stochastic:
        run_stochastic_bench(args.out, nfes=args.nfe or settings.STOCHASTIC_NFES,
                             n_samples=args.samples or 20000, **common)
    else:
        run_bench(args.out, nfes=args.nfe or settings.BENCH_NFES, n_samples=args.samples or 512,
                  **common)
    return 0
