"""``jaxdist demo``: train flow matching for about a minute, sample with three solvers, print
the quality table and write plots (implementation: :func:`jaxdist.cli.runs.run_demo`)."""

from __future__ import annotations

import argparse

from . import settings
from .options import nonnegative_int, positive_int

NAME = "demo"
HELP = "train flow matching for ~1 minute, sample with 3 solvers, report quality"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME, help=HELP,
        description="Trains a flow-matching MLP on a 2-D data set with checkpoints (resuming "
                    "if --out holds them), samples it with DDIM, DPM-Solver++(2M) and (3M) at "
                    "5, 10 and 20 NFE, prints sliced-Wasserstein and MMD against held-out data "
                    "next to the data's floor, and writes demo.json, quality.md, samples.png "
                    "and loss.png to --out.")
    p.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    p.add_argument("--data", choices=settings.DEMO_DATA, default="checkerboard",
                   help="data set (default: checkerboard)")
    p.add_argument("--steps", type=positive_int, default=3000,
                   help="training steps (default: 3000)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="random seed (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    from .runs import run_demo

    run_demo(args.out, data=args.data, steps=args.steps, seed=args.seed, progress=not args.quiet)
    return 0
