"""``jaxdist train``: train an MLP on a built-in data set, or a discrete-diffusion transformer on
a token data set, with checkpoints and resume (implementations:
:func:`jaxdist.cli.runs.train_run`, :func:`jaxdist.cli.discrete_runs.train_discrete_run`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import settings
from .options import positive_float, positive_int, nonnegative_int, unit_interval

NAME = "train"
HELP = "train a model on a built-in data set (resumes from --checkpoint-dir)"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME, help=HELP,
        description="Trains an MLP with an objective on a built-in data set, data-parallel over "
                    "all devices, with a progress bar and Orbax checkpoints. If --checkpoint-dir "
                    "already holds a run, training resumes from its newest checkpoint; a run "
                    "that is complete says so. One run writes to a folder at a time. A "
                    "non-finite loss or update stops training with an error naming the step "
                    "(nothing non-finite is saved) unless --skip-nonfinite. Discrete diffusion: "
                    "--objective mdlm|radd|sedd|sedd-uniform with --data digits-tokens|markov "
                    "trains a small bidirectional transformer (--hidden: its width, --depth: "
                    "its blocks; defaults batch 128, lr 2e-3, width 64, 2 blocks, EMA 0.99).")
    p.add_argument("--data", choices=settings.DATA_NAMES + settings.TOKEN_DATA_NAMES,
                   default=None,
                   help="built-in data set (default: two-moons; markov for discrete objectives)")
    p.add_argument("--objective", choices=settings.TRAIN_OBJECTIVES + settings.FEWSTEP_OBJECTIVES
                   + settings.DISCRETE_OBJECTIVES, default=None,
                   help="training objective (default: fm; radd for token data); scm, meanflow "
                        "and shortcut train few-step models (sample them with `jaxdist sample "
                        "--nfe 1`); mdlm, radd, sedd (masked) and sedd-uniform train discrete "
                        "diffusion on token data")
    p.add_argument("--steps", type=positive_int, default=2000,
                   help="total steps, counted from 0 also when resuming (default: 2000)")
    p.add_argument("--checkpoint-dir", required=True, help="folder of the run's checkpoints")
    p.add_argument("--seed", type=nonnegative_int, default=None, help="random seed (default: 0)")
    p.add_argument("--save-every", type=positive_int, default=None,
                   help="steps between checkpoints (default: steps / 4)")
    for name in ("batch_size", "hidden", "depth"):
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=positive_int, default=None,
                       help=f"default: {settings.DEFAULTS[name]}")
    for name, kind in (("lr", positive_float), ("ema_decay", unit_interval),
                       ("grad_clip", positive_float)):
        special = "".join(f", {v[name]} for {obj}"
                          for obj, v in settings.OBJECTIVE_DEFAULTS.items() if name in v)
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, default=None,
                       help=f"default: {settings.DEFAULTS[name]}{special}")
    p.add_argument("--prediction", choices=settings.DSM_PREDICTIONS, default=None,
                   help="what the network predicts in dsm runs (default: v)")
    p.add_argument("--skip-nonfinite", action="store_true",
                   help="skip updates with a non-finite loss or gradient instead of stopping "
                        "(stops after 100 in a row)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _train_fewstep(args: argparse.Namespace, run_settings: dict) -> int:
    """``--objective scm|meanflow|shortcut``: :func:`~jaxdist.cli.distill_runs.train_fewstep_run`
    with the same options (``--prediction`` and ``--skip-nonfinite`` do not apply)."""
    from .distill import report
    from .distill_runs import train_fewstep_run
    from .options import CLIError

    for flag, given in (("--prediction", args.prediction is not None),
                        ("--skip-nonfinite", args.skip_nonfinite)):
        if given:
            raise CLIError(f"{flag} does not apply to --objective {args.objective}; drop it.")
    state, history = train_fewstep_run(args.checkpoint_dir, data=args.data,
                                       method=args.objective, steps=args.steps,
                                       save_every=args.save_every, progress=not args.quiet,
                                       **run_settings)
    return report(state, history, args.steps, args.checkpoint_dir)


def _train_discrete(args: argparse.Namespace, run_settings: dict):
    """``--objective mdlm|radd|sedd|sedd-uniform`` on token data:
    :func:`~jaxdist.cli.discrete_runs.train_discrete_run` (``--prediction`` does not apply)."""
    from .discrete_runs import train_discrete_run
    from .options import CLIError

    data = args.data or "markov"
    objective = args.objective or "radd"
    if data not in settings.TOKEN_DATA_NAMES or objective not in settings.DISCRETE_OBJECTIVES:
        raise CLIError(f"--objective {objective} and --data {data} do not go together: discrete "
                       f"objectives {settings.DISCRETE_OBJECTIVES} train on token data "
                       f"{settings.TOKEN_DATA_NAMES}, the others on {settings.DATA_NAMES}.")
    if args.prediction is not None:
        raise CLIError(f"--prediction does not apply to --objective {objective}; drop it.")
    return train_discrete_run(args.checkpoint_dir, data=data, objective=objective,
                              steps=args.steps, save_every=args.save_every,
                              progress=not args.quiet,
                              nonfinite="skip" if args.skip_nonfinite else "error",
                              **run_settings)


def run(args: argparse.Namespace) -> int:
    from .runs import train_run

    run_settings = {k: getattr(args, k) for k in settings.DEFAULTS
                    if getattr(args, k, None) is not None}
    if args.objective in settings.DISCRETE_OBJECTIVES or args.data in settings.TOKEN_DATA_NAMES:
        state, history = _train_discrete(args, run_settings)
        return _report(state, history, args)
    args.data, args.objective = args.data or "two-moons", args.objective or "fm"
    if args.objective in settings.FEWSTEP_OBJECTIVES:
        return _train_fewstep(args, run_settings)
    state, history = train_run(args.checkpoint_dir, data=args.data, objective=args.objective,
                               steps=args.steps, save_every=args.save_every,
                               progress=not args.quiet,
                               nonfinite="skip" if args.skip_nonfinite else "error",
                               **run_settings)
    return _report(state, history, args)


def _report(state, history: list, args: argparse.Namespace) -> int:
    where = Path(args.checkpoint_dir).resolve()
    if not history:
        print(f"the run in {where} is complete: step {int(state.step)} of --steps {args.steps}; "
              "pass a larger --steps to train longer.")
        return 0
    last = history[-1]
    skipped = f", {last['skipped']} non-finite updates skipped" if last.get("skipped") else ""
    print(f"step {last['step']}: loss {last['loss']:.4f} ({last['steps_per_s']:.0f} steps/s"
          f"{skipped}); checkpoints in {where}")
    return 0
