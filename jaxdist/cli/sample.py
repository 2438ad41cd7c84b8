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
        description="Restores a run (its newest checkpoint, EMA parameters) and samples it "
                    "(a distilled or few-step student with its own sampler in --nfe steps); "
                    "writes FILE.npz and FILE.png (scatter for 2-D data, image grid for digits) "
                    "and prints sliced W2 and MMD^2 against held-out data next to the data's "
                    "floor. Example, DPM++ 2M Karras: --solver dpm++2m --grid karras.",
        epilog="grids: " + "; ".join(f"{k}: {v}" for k, v in GRIDS.items()))
    p.add_argument("--checkpoint-dir", required=True,
                   help="folder of a `jaxdist train` or `jaxdist distill` run")
    p.add_argument("--solver", default=None,
                   help="a name from `jaxdist solvers`, or 'consistency' for ict runs "
                        "(default: dpm++2m; few-step students always use their own sampler)")
    p.add_argument("--grid", choices=list(GRIDS), default="default",
                   help="time grid (default: the schedule's usual one; see below)")
    p.add_argument("--nfe", type=positive_int, default=None,
                   help="model evaluations at most (default: 10; a student's own step count)")
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

    if args.solver not in (None, "consistency"):
        solver_by_name(args.solver)  # a mistyped name fails before the checkpoint is read
    if _is_student(args.checkpoint_dir):
        x, info, dataset, solver, grid = _sample_student(args)
        what = f"{info['config']['method']} student"
    else:
        solver = args.solver or "dpm++2m"
        run_ = restore_run(args.checkpoint_dir, args.step)
        x, info = sample_run(run_, solver=solver, nfe=args.nfe or 10, num=args.num, seed=args.seed,
                             use_ema=not args.no_ema, grid=args.grid)
        dataset, what = run_.dataset, info["config"]["objective"]
        grid = "" if args.grid == "default" or solver == "consistency" else f", {args.grid} grid"
    npz, png = save_samples(x, args.out, dataset, info,
                            title=f"{what} on {dataset.name}, step {info['step']}: "
                                  f"{solver}{grid}, NFE {info['nfe']}")
    head = f"{len(x)} samples from step {info['step']} with {solver}{grid} (NFE {info['nfe']})"
    if len(x) < 2:
        print(f"{head} (quality metrics need at least 2 samples)")
    else:
        q = quality(x, dataset, seed=args.seed)
        print(f"{head}: sliced W2 {q['model']['swd']:.4f} (data floor {q['floor']['swd']:.4f}), "
              f"MMD^2 {q['model']['mmd']:.2e} (floor {q['floor']['mmd']:.2e})")
    print(f"wrote {npz} and {png}")
    return 0


def _is_student(checkpoint_dir: str) -> bool:
    """Whether the folder holds a ``jaxdist distill`` or few-step ``jaxdist train`` run."""
    from ..checkpoint import Checkpointer

    with Checkpointer(checkpoint_dir, read_only=True) as ckpt:
        return ckpt.restore_config().get("kind") in ("distill", "fewstep")


def _sample_student(args: argparse.Namespace):
    """Samples a student with its own sampler; ``--solver``/``--grid`` do not apply."""
    from ..data import get_dataset
    from .distill_runs import sample_student
    from .options import CLIError

    for flag, given in (("--solver", args.solver is not None), ("--grid", args.grid != "default")):
        if given:
            raise CLIError(f"{flag} does not apply to {args.checkpoint_dir}: a few-step student "
                           "samples with its own sampler; drop it and set the steps with --nfe.")
    x, info = sample_student(args.checkpoint_dir, nfe=args.nfe, num=args.num, seed=args.seed,
                             use_ema=not args.no_ema, step=args.step)
    return x, info, get_dataset(info["config"]["data"]), info["config"]["method"], ""
