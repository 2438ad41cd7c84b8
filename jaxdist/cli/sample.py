"""``jaxdist sample``: sample a trained checkpoint with any solver and grid, write ``.npz`` and
``.png`` and print the quality (implementation: :func:`jaxdist.cli.runs.sample_checkpoint`)."""

from __future__ import annotations

import argparse

from .options import nonnegative_int, positive_int
from .time_grids import GRIDS

NAME = "sample"
HELP = "sample a trained checkpoint with any solver"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME, help=HELP,
        description="Restores a run (its newest checkpoint, EMA parameters) and samples it; "
                    "writes FILE.npz and FILE.png (scatter for 2-D data, image grid for digits) "
                    "and prints sliced W2 and MMD^2 against held-out data next to the data's "
                    "floor. Example, DPM++ 2M Karras: --solver dpm++2m --grid karras.",
        epilog="grids: " + "; ".join(f"{k}: {v}" for k, v in GRIDS.items()))
    p.add_argument("--checkpoint-dir", required=True, help="folder of a `jaxdist train` run")
    p.add_argument("--solver", default="dpm++2m",
                   help="a name from `jaxdist solvers`, or 'consistency' for ict runs "
                        "(default: dpm++2m)")
    p.add_argument("--grid", choices=list(GRIDS), default="default",
                   help="time grid (default: the schedule's usual one; see below)")
    p.add_argument("--nfe", type=positive_int, default=10,
                   help="model evaluations at most (default: 10)")
    p.add_argument("--num", type=positive_int, default=1000,
                   help="number of samples (default: 1000)")
    p.add_argument("--step", type=nonnegative_int, default=None,
                   help="the checkpoint step to sample (default: the newest)")
    p.add_argument("--out", default="samples.npz", help="output .npz (PNG written beside it)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="random seed (default: 0)")
    p.add_argument("--no-ema", action="store_true", help="use the raw, not the EMA, parameters")
    return p


def run(args: argparse.Namespace) -> int:
    from .plots import save_samples
    from .quality import quality
    from .options import solver_by_name
    from .runs import restore_run, sample_run

    if args.solver != "consistency":
        solver_by_name(args.solver)  # a mistyped name fails before the checkpoint is read
    run_ = restore_run(args.checkpoint_dir, args.step)
    x, info = sample_run(run_, solver=args.solver, nfe=args.nfe, num=args.num, seed=args.seed,
                         use_ema=not args.no_ema, grid=args.grid)
    dataset = run_.dataset
    grid = "" if args.grid == "default" or args.solver == "consistency" else f", {args.grid} grid"
    npz, png = save_samples(x, args.out, dataset, info,
                            title=f"{info['config']['objective']} on {dataset.name}, step "
                                  f"{info['step']}: {args.solver}{grid}, NFE {info['nfe']}")
    head = (f"{len(x)} samples from step {info['step']} with {args.solver}{grid} "
            f"(NFE {info['nfe']})")
    if len(x) < 2:
        print(f"{head} (quality metrics need at least 2 samples)")
    else:
        q = quality(x, dataset, seed=args.seed)
        print(f"{head}: sliced W2 {q['model']['swd']:.4f} (data floor {q['floor']['swd']:.4f}), "
              f"MMD^2 {q['model']['mmd']:.2e} (floor {q['floor']['mmd']:.2e})")
    print(f"wrote {npz} and {png}")
    return 0
