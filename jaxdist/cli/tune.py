"""``jaxdist tune``: learn the time grid of a solver for a trained checkpoint (``jd.tune``).

Restores the run (EMA parameters), draws ``--num`` starting points, solves them finely for the
teacher (``jd.tune.reference_solve``) and runs ``jd.tune.optimise_grid`` (``init="auto"``) with
a progress bar; writes the tuned grid as JSON (``jd.tune.Tuned.load`` reads it), and a plot of
the learned grid against the standard ones beside it, and prints the validation error.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import nonnegative_int, positive_int

NAME = "tune"
HELP = "learn the time grid of a solver for a trained checkpoint"

#: the standard grids the plot shows next to the learned one (``--grid`` names)
COMPARED = ("karras", "logsnr", "time-uniform", "time-quadratic")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME, help=HELP,
        description="Learns the time grid of SOLVER at NFE model evaluations for a trained run "
                    "by gradient through the sampler (LD3-style, jd.tune.optimise_grid) against "
                    "a fine solve of the same noise; 20%% of the noise is held out and its RMS "
                    "error reported. Writes OUT (JSON: jd.tune.Tuned.load) and OUT.png.")
    p.add_argument("--checkpoint-dir", required=True, help="folder of a `jaxdist train` run")
    p.add_argument("--solver", default="dpm++2m", help="a deterministic solver name from "
                   "`jaxdist solvers` (default: dpm++2m)")
    p.add_argument("--nfe", type=positive_int, default=5,
                   help="model evaluations at most (default: 5)")
    p.add_argument("--steps", type=positive_int, default=200,
                   help="optimiser steps (default: 200)")
    p.add_argument("--num", type=positive_int, default=512,
                   help="starting points, 20%% held out (default: 512)")
    p.add_argument("--final-zero", action="store_true",
                   help="end with a step to t = 0 (default: end at the learned last time)")
    p.add_argument("--teacher-steps", type=positive_int, default=256,
                   help="steps of the teacher's fine solve (default: 256)")
    p.add_argument("--step", type=nonnegative_int, default=None,
                   help="the checkpoint step (default: the newest)")
    p.add_argument("--out", default="tuned.json", help="output JSON (PNG written beside it)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="random seed (default: 0)")
    p.add_argument("--no-ema", action="store_true", help="use the raw, not the EMA, parameters")
    return p


def plot_grid(tuned, schedule, path: Path, title: str) -> None:
    """The learned grid's noise levels ``sigma / alpha`` against the standard grids'."""
    import numpy as np

    from .plots import _pyplot
    from .time_grids import build_grid

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    n = tuned.n_steps
    for name in COMPARED:
        try:
            g = np.asarray(build_grid(name, schedule, n))
        except Exception:  # a grid that does not fit this schedule
            continue
        ax.semilogy(np.arange(n + 1), np.asarray(schedule.sigma_over_alpha(g)), ".--",
                    label=name, alpha=0.7)
    g = np.asarray(tuned.grid)
    positive = g[g > 0]
    ax.semilogy(np.arange(positive.size), np.asarray(schedule.sigma_over_alpha(positive)), "o-",
                color="k", label="tuned")
    ax.set(xlabel="step", ylabel="noise level sigma / alpha", title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    import jax

    from ..tune import optimise_grid
    from .nfe import steps_for_nfe
    from .options import CLIError, solver_by_name
    from .runs import restore_run
    from .time_grids import time_range

    solver = solver_by_name(args.solver)  # a mistyped name fails before the checkpoint is read
    if not hasattr(solver, "nfe") or solver.stochastic:
        raise CLIError(f"--solver {args.solver}: tuning needs a deterministic fixed-grid solver "
                       "(e.g. dpm++2m, unipc, deis)")
    run_ = restore_run(args.checkpoint_dir, args.step)
    params = run_.state.params if args.no_ema else run_.state.ema_params
    den = run_.objective.denoiser(run_.apply_fn, params)
    schedule = run_.objective.schedule
    t0, _ = time_range(schedule)
    n_steps = steps_for_nfe(solver, args.nfe)
    x_T = jax.random.normal(jax.random.key(args.seed), (args.num, run_.dataset.dim))
    x_T = x_T * schedule.sigma(t0)
    tuned = optimise_grid(solver, den, x_T, n_steps, t_start=t0, final_zero=args.final_zero,
                          init="auto", steps=args.steps, teacher_steps=args.teacher_steps,
                          key=jax.random.key(args.seed + 1))
    out = Path(args.out)
    tuned.save(out)
    png = out.with_suffix(".png")
    plot_grid(tuned, schedule, png, f"{args.solver}, NFE {solver.nfe(n_steps)}")
    first = tuned.history[0]["val_rms"]
    best = min(h["val_rms"] for h in tuned.history)
    print(f"{args.solver} at NFE {solver.nfe(n_steps)}: held-out RMS error to the fine solve "
          f"{first:.4g} (best standard grid) -> {best:.4g} (tuned) in {tuned.seconds:.0f} s")
    print("grid: " + ", ".join(f"{t:.4g}" for t in tuned.grid.tolist()))
    print(f"wrote {out} and {png}")
    return 0
