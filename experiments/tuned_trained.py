"""Tuned samplers on a trained model: the benchmark of ``tuned_samplers.py`` on a network.

Trains (or reuses) a ``jaxdist train`` run (default: ``dsm`` v-prediction MLP on the 64-D
digits, VP-linear schedule), then, for NFE 4, 5, 6, 8 and 10, compares on held-out noise the
best fixed-grid sampler (solvers and grids of ``tuned_samplers.py``, chosen on the test noise
itself), AYS and GITS (rescaled SD 1.5 tables), and the tuned grid and tuned solver
(``jd.tune.optimise_grid`` / ``optimise_solver``, 200 Adam steps on 2048 training noises).
There is no exact solution for a network: the error is the RMS distance to the model's own
fine solve of the same noise (``jd.tune.reference_solve``: third-order DPM-Solver++ on 512
log-SNR steps), which is also the tuning teacher. Float64 throughout (float32 parameters).

    python experiments/tuned_trained.py --out experiments/out/tuned_trained
    python experiments/tuned_trained.py --quick       # 500 training steps, 60 tuning steps
    python experiments/tuned_trained.py --seed-solvers --out experiments/out/seed_solvers_trained

``--seed-solvers``: DPM-Solver-v3 (EMS from 512 training examples) and DC-Solver (ratios on 16
noises) against DPM-Solver++ 2M and UniPC, as ``tuned_samplers.py --seed-solvers``, to ``t_min``
(the reference: the model's fine solve to ``t_min``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tuned_samplers as ts  # noqa: E402  (sets jax_enable_x64)

import jaxdist as jd  # noqa: E402
from jaxdist.cli.runs import restore_run, train_run  # noqa: E402

OUT = ts.OUT / "tuned_trained"


def trained_denoiser(checkpoint_dir: Path, data: str, objective: str, steps: int):
    """The EMA denoiser of the run in ``checkpoint_dir`` (trained first if it is not complete)."""
    train_run(checkpoint_dir, data=data, objective=objective, steps=steps, progress=True)
    run = restore_run(checkpoint_dir)
    den = run.objective.denoiser(run.apply_fn, run.state.ema_params)
    if run.objective.schedule != ts.SCHEDULE:
        raise SystemExit(f"{objective} trains on {run.objective.schedule!r}; the grids of "
                         f"tuned_samplers.py are for {ts.SCHEDULE!r}: use --objective dsm")
    return den, run.dataset.dim


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--objective", default="dsm")
    parser.add_argument("--train-steps", type=int, default=4000)
    parser.add_argument("--checkpoint-dir", type=Path, default=None,
                        help="the run's folder (default: OUT-run)")
    parser.add_argument("--steps", type=int, default=200, help="Adam steps per tuning")
    parser.add_argument("--nfes", type=int, nargs="+", default=list(ts.NFES))
    parser.add_argument("--tune-solvers", nargs="+", default=list(ts.TUNE_SOLVERS))
    parser.add_argument("--n-train", type=int, default=2048)
    parser.add_argument("--n-test", type=int, default=1024)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seed-solvers", action="store_true",
                        help="only the DPM-Solver-v3 / DC-Solver rows (docstring)")
    args = parser.parse_args()
    if args.quick:
        args.train_steps, args.steps = 500, 60
    ckpt = args.checkpoint_dir or args.out.with_name(args.out.name + "-run")
    den, dim = trained_denoiser(ckpt.resolve(), args.data, args.objective, args.train_steps)
    if args.seed_solvers:
        return seed_solvers(den, dim, ckpt.resolve(), tuple(args.nfes), args.n_test, args.out)
    k_train, k_test = jax.random.split(jax.random.key(dim))
    x_train = jax.random.normal(k_train, (args.n_train, dim), jnp.float64)
    x_test = jax.random.normal(k_test, (args.n_test, dim), jnp.float64)
    tic = time.perf_counter()
    y_train = jd.tune.reference_solve(den, x_train, n_steps=512)
    y_test = jd.tune.reference_solve(den, x_test, n_steps=512)
    print(f"references in {time.perf_counter() - tic:.1f} s", flush=True)
    runner = ts.Runner(den, x_test)
    nfes = tuple(args.nfes)
    fixed = {str(k): v for k, v in ts.fixed_grid_rows(runner, y_test, nfes).items()}
    name = f"{args.data}-{args.objective}"
    report = {"schedule": repr(ts.SCHEDULE), "t_start": 1.0, "t_end": 0.0, "nfes": list(nfes),
              "tune_solvers": list(args.tune_solvers), "tuning_steps": args.steps,
              "n_train": args.n_train, "n_test": args.n_test, "train_steps": args.train_steps,
              "metric": "RMS distance to the model's own fine solve (dpm++3m-o3, 512 steps)",
              "ylabel": "RMS distance to the model's 512-step solve",
              "cpu_count": os.cpu_count(), "mixtures": {}}
    problem = (f"`jaxdist train --data {args.data} --objective {args.objective} --steps "
               f"{args.train_steps}` (MLP), not used to choose settings")

    def save(tuned):
        done = [str(k) for k in tuned]
        report["mixtures"][name] = {"problem": problem, "nfes_done": done,
                                    "fixed": {k: fixed[k] for k in done},
                                    "tuned": {str(k): v for k, v in tuned.items()}}
        ts.write(report, args.out)
        print(ts.table(report), flush=True)

    ts.tuned_rows(den, x_train, y_train, runner, y_test, args.steps, on_nfe=save, nfes=nfes,
                  tune_solvers=tuple(args.tune_solvers))
    print(f"wrote {args.out}.json, .md and .png")


def seed_solvers(den, dim: int, checkpoint_dir: Path, nfes, n_test: int, out: Path) -> None:
    """The seed-solver rows on the trained model (module docstring)."""
    import json

    k_train, k_test, k_data, k_ems = jax.random.split(jax.random.key(200 + dim), 4)
    x0 = restore_run(checkpoint_dir).dataset.sample(k_data, 512)
    x_test = jax.random.normal(k_test, (n_test, dim), jnp.float64)
    y_test = jd.tune.reference_solve(den, x_test, final_zero=False, n_steps=512)
    report = {"trained": ts.seed_rows(den, x0, jax.random.normal(k_train, (16, dim)), x_test,
                                      y_test, nfes, k_ems)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    out.with_suffix(".md").write_text(ts.seed_table(report))
    print(ts.seed_table(report))


if __name__ == "__main__":
    main()
