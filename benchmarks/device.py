"""One short accelerator check (under 5 minutes): sampling overhead and training throughput.

Run it on a machine with a GPU (or TPU); it prints

1. the overhead table of ``benchmarks/overhead.py`` (compiled DPM-Solver++ 2M / UniPC at 10 NFE
   against their bare model calls, batch 1, 64, 1024, 4096, interleaved in one process);
2. training steps per second of the built-in MLP (256 x 3, flow matching, optax Adam, EMA) at
   batch 256, 1024 and 4096, on the default device.

    python benchmarks/device.py            # writes benchmarks/results/device.json

Measured output is recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, str(Path(__file__).parent))
import overhead  # noqa: E402

import jaxdist as jd  # noqa: E402
from jaxdist.train import init_train_state, make_train_step  # noqa: E402


def train_throughput(batches=(256, 1024, 4096), steps=50, progress=True) -> list[dict]:
    from flax import nnx
    from tqdm.auto import tqdm

    from jaxdist.models import MLP, as_apply_fn
    from jaxdist.objectives.flow_matching import make_fm_loss

    apply_fn, params = as_apply_fn(MLP(2, hidden=256, depth=3, rngs=nnx.Rngs(0)))
    loss = make_fm_loss(apply_fn, schedule=jd.schedules.RectifiedFlow())
    tx = optax.adam(1e-3)
    rows = []
    for batch in tqdm(batches, desc="training", disable=not progress):
        step = make_train_step(loss, tx)  # jitted, state donated
        state = init_train_state(params, tx, jax.random.key(0))
        data = {"x": jax.random.normal(jax.random.key(1), (batch, 2))}
        state, _ = step(state, data)  # compile
        jax.block_until_ready(state)
        times = []
        for _ in range(steps):
            tic = time.perf_counter()
            state, _ = step(state, data)
            jax.block_until_ready(state)
            times.append(time.perf_counter() - tic)
        med = statistics.median(times)
        rows.append({"batch": batch, "step_s": med, "steps_per_s": 1.0 / med,
                     "examples_per_s": batch / med})
    return rows


def main() -> dict:
    tic = time.time()
    report = {"devices": [str(d) for d in jax.devices()],
              "overhead": overhead.measure(reps=30),
              "training": train_throughput()}
    report["seconds"] = time.time() - tic
    print(overhead.format_table(report["overhead"]))
    print("\n| batch | step (ms) | steps/s | examples/s |\n|---:|---:|---:|---:|")
    for r in report["training"]:
        print(f"| {r['batch']} | {1e3 * r['step_s']:.3f} | {r['steps_per_s']:.1f} | "
              f"{r['examples_per_s']:.0f} |")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "device.json").write_text(json.dumps(report, indent=1))
    print(f"devices: {report['devices']}; {report['seconds']:.0f} s")
    return report


if __name__ == "__main__":
    jnp.zeros(())  # start the backend before timing anything
    main()
