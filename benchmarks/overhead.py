"""Sampling overhead: a compiled ``jd.sample`` run against its bare model calls.

The model is the benchmark MLP (2 -> 256 -> 256 -> 2, SiLU, float32); the samplers are
DPM-Solver++ 2M and UniPC (bh2) at NFE 10 on the DDPM discrete schedule (``trailing`` spacing, as
``from_diffusers_scheduler`` maps a diffusers config); the bare run is a jitted ``lax.scan`` of
the same 10 model calls at the same model times. Each sampler run and its bare run are timed in
turn within every repetition (interleaved, one process), so a load change on the machine affects
both alike. Also: ``jd.sample(..., unroll=k)`` for ``k = 2, 5, 10`` against ``unroll=1``.

    python benchmarks/overhead.py                  # batch 1, 64, 1024, 4096; ~2 minutes on CPU
    python benchmarks/overhead.py --batches 1,64 --reps 50

Prints a table and writes ``benchmarks/results/overhead.json``. Target: sampler / bare <= 1.10.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).parent))
import jaxdist as jd  # noqa: E402
from common import jax_mlp, median_times, mlp_weights  # noqa: E402

CONFIG = {"_class_name": "DPMSolverMultistepScheduler", "num_train_timesteps": 1000,
          "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
          "timestep_spacing": "trailing", "prediction_type": "epsilon"}
SOLVERS = {"DPM-Solver++ 2M": jd.solvers.DPMSolverPP(order=2),
           "UniPC-2 (bh2)": jd.solvers.UniPC(order=2)}


def measure(batches=(1, 64, 1024, 4096), n_steps=10, reps=30, unrolls=(2, 5, 10),
            progress=True) -> dict:
    from tqdm.auto import tqdm

    f = jax_mlp(mlp_weights())
    _, schedule, grid = jd.solvers.from_diffusers_scheduler(CONFIG, n_steps)
    grid = grid.astype(jnp.float32)
    den = jd.Denoiser(f, schedule, prediction="eps")
    model_times = schedule.model_time(grid[:-1])

    @jax.jit
    def bare(x):  # the same model calls, chained, nothing else
        return jax.lax.scan(lambda h, t: (f(h, t), None), x, model_times)[0]

    rows = []
    work = [(b, name) for b in batches for name in SOLVERS]
    for batch, name in tqdm(work, desc="overhead", disable=not progress):
        solver = SOLVERS[name]
        x = jax.random.normal(jax.random.key(2), (batch, 2), jnp.float32)
        runs = {"bare": lambda: bare(x).block_until_ready()}
        for k in (1,) + tuple(unrolls):
            run = jax.jit(lambda x, k=k: jd.sample(solver, den, x, grid, unroll=k).x)
            runs[f"unroll={k}"] = lambda run=run: run(x).block_until_ready()
        t = median_times(runs, reps)
        rows.append({"solver": name, "batch": batch, "bare_s": t["bare"],
                     "sampler_s": t["unroll=1"], "ratio": t["unroll=1"] / t["bare"],
                     "ratio_of_min": t["unroll=1_min"] / t["bare_min"],
                     "target_met": t["unroll=1"] / t["bare"] <= 1.10,
                     **{f"unroll{k}_vs_1": t[f"unroll={k}"] / t["unroll=1"] for k in unrolls}})
    return {"model": "MLP 2->256->256->2 (SiLU), float32", "nfe": n_steps, "repetitions": reps,
            "schedule": "VPDiscrete (DDPM linear betas), trailing spacing",
            "statistic": "median wall time after one warm-up run, sampler and bare runs interleaved",
            "devices": [str(d) for d in jax.devices()], "results": rows}


def format_table(report: dict) -> str:
    unrolls = [k for k in report["results"][0] if k.startswith("unroll")]
    head = ("| solver | batch | bare model calls (ms) | jd.sample (ms) | ratio (median) | "
            "ratio (min) | " + " | ".join(u.replace("_vs_1", " / unroll 1").replace("unroll",
                                                                                  "unroll ")
                                          for u in unrolls) + " |")
    lines = [head, "|---|---:|---:|---:|---:|---:|" + "---:|" * len(unrolls)]
    for r in report["results"]:
        lines.append(f"| {r['solver']} | {r['batch']} | {1e3 * r['bare_s']:.3f} | "
                     f"{1e3 * r['sampler_s']:.3f} | {r['ratio']:.3f} | {r['ratio_of_min']:.3f} | "
                     + " | ".join(f"{r[u]:.3f}" for u in unrolls) + " |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,64,1024,4096")
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    report = measure(tuple(int(b) for b in args.batches.split(",")), reps=args.reps)
    print(format_table(report))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "overhead.json").write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
