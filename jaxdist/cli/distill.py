"""``jaxdist distill``: distil a ``jaxdist train`` run into a few-step student
(implementation: :func:`jaxdist.cli.distill_runs.distill_run`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import nonnegative_int, positive_float, positive_int, unit_interval

NAME = "distill"
HELP = "distil a trained run into a few-step student (dmd, dmd2, f-distill, scm, ...)"

#: the methods, as in :data:`jaxdist.cli.distill_runs.DISTILL_METHODS` (kept here so that
#: ``--help`` answers without importing JAX; a test checks that the two agree)
METHODS = ("dmd", "dmd2", "f-distill", "vsd", "scm", "meanflow", "shortcut", "cd")
DIVERGENCES = ("reverse-kl", "forward-kl", "js", "squared-hellinger")

#: numeric settings that override the run's defaults: (option, type, help)
_SETTINGS = (("batch_size", positive_int, "examples per step (default: 256)"),
             ("lr", positive_float, "student learning rate (default: 1e-3)"),
             ("fake_lr", positive_float, "fake-score learning rate, dmd family (default: 1e-3)"),
             ("n_critic", positive_int, "fake-score updates per generator update (default: 5)"),
             ("ema_decay", unit_interval, "EMA decay of the student (default: 0.99)"),
             ("hidden", positive_int, "student width for scm, meanflow, shortcut and cd (the dmd "
                                      "family copies the teacher's network; default: 256)"),
             ("depth", positive_int, "student depth, as --hidden (default: 3)"),
             ("seed", nonnegative_int, "random seed (default: 0)"))


#: the metrics a finished run prints (those the run logs, in this order)
_SHOWN = ("loss", "critic_loss", "regression_loss")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME, help=HELP,
        description="Distils the teacher run in --teacher (any `jaxdist train` checkpoint) "
                    "into a student that samples in --student-steps network evaluations, with "
                    "a progress bar and Orbax checkpoints of every network and optimiser state; "
                    "a folder that holds a run resumes bitwise. dmd, dmd2, f-distill and vsd "
                    "train a generator against a fake score (dmd2 and f-distill add a "
                    "discriminator); scm, meanflow and shortcut regress on the teacher's "
                    "velocity; cd is consistency distillation. Sample the student with "
                    "`jaxdist sample --checkpoint-dir OUT`.",
        epilog="example: jaxdist train --checkpoint-dir runs/fm && jaxdist distill --teacher "
               "runs/fm --method dmd --checkpoint-dir runs/dmd")
    p.add_argument("--teacher", required=True, help="folder of the teacher's `jaxdist train` run")
    p.add_argument("--method", choices=METHODS, required=True, help="distillation method")
    p.add_argument("--checkpoint-dir", required=True, help="folder of the student's run")
    p.add_argument("--student-steps", type=positive_int, default=1,
                   help="the student's network evaluations per sample (default: 1)")
    p.add_argument("--steps", type=positive_int, default=2000,
                   help="total training steps (generator updates for the dmd family; "
                        "default: 2000)")
    p.add_argument("--divergence", choices=DIVERGENCES, default=None,
                   help="f-distill's divergence (default: the method's own)")
    for name, kind, text in _SETTINGS:
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, default=None,
                       help=text)
    p.add_argument("--save-every", type=positive_int, default=None,
                   help="steps between checkpoints (default: steps / 4)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def report(state, history: list, steps: int, checkpoint_dir) -> int:
    """Prints the last logged metrics of a student run (or that it is complete)."""
    where = Path(checkpoint_dir).resolve()
    if not history:
        print(f"the run in {where} is complete: step {int(state.step)} of --steps {steps}; "
              "pass a larger --steps to train longer.")
        return 0
    last = history[-1]
    shown = ", ".join(f"{k} {last[k]:.4f}" for k in _SHOWN if k in last)
    print(f"step {last['step']}: {shown} ({last['steps_per_s']:.0f} steps/s); checkpoints in "
          f"{where}")
    return 0


def run(args: argparse.Namespace) -> int:
    from .distill_runs import distill_run

    overrides = {name: getattr(args, name) for name, _, _ in _SETTINGS
                 if getattr(args, name) is not None}
    if args.divergence is not None:
        overrides["divergence"] = args.divergence
    state, history = distill_run(args.checkpoint_dir, teacher_dir=args.teacher,
                                 method=args.method, student_steps=args.student_steps,
                                 steps=args.steps, save_every=args.save_every,
                                 progress=not args.quiet, **overrides)
    return report(state, history, args.steps, args.checkpoint_dir)
