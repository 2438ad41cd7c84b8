"""jaxdist against diffusers: the same schedulers on the same problem.

Needs the optional extra: ``pip install -e '.[bench]'`` (torch, diffusers; CPU is enough).
Run ``python benchmarks/vs_diffusers.py`` (about 2-5 minutes on 2 CPU cores). It prints two
tables and writes ``benchmarks/results/vs_diffusers.json`` and ``vs_diffusers.png``:

(a) accuracy: a 2-D Gaussian mixture (``jaxdist.testing.builtin_mixture``) whose exact noise
    prediction is the model, the DDPM linear-beta schedule (1000 steps, ``trailing`` spacing, last
    step to clean data) and the same timesteps in both frameworks (jaxdist's grid and solver come
    from ``from_diffusers_scheduler`` of the diffusers config). Reported: RMS distance of each
    sampler's output to the reference probability-flow ODE solution (diffrax Dopri8, float64),
    for DPM-Solver++ 2M/3M, UniPC, DEIS, DDIM and Euler.
(b) speed: one small MLP (2 -> 256 -> 256 -> 2, SiLU, time as an extra input) with identical
    weights in both frameworks, 10 steps of DPM-Solver++ 2M (NFE 10) at batch 1, 64 and 1024:
    median wall time of a full sampling run after warm-up (``jax.jit`` in jaxdist;
    ``torch.no_grad`` and ``torch.set_num_threads(2)`` in diffusers), and jaxdist's time over
    its bare compiled model calls (a jitted ``lax.scan`` of 10 MLP calls).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxdist as jd
from jaxdist.testing import builtin_mixture
from jaxdist.solvers import from_diffusers_scheduler

from common import jax_mlp, median_times, mlp_weights

BASE = {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02,
        "beta_schedule": "linear", "timestep_spacing": "trailing", "prediction_type": "epsilon"}
SAMPLERS = {  # label -> diffusers scheduler class and options
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"solver_order": 2}),
    "DPM++ 3M": ("DPMSolverMultistepScheduler", {"solver_order": 3}),
    "UniPC (bh2, order 2)": ("UniPCMultistepScheduler", {"solver_order": 2}),
    "DEIS (order 3)": ("DEISMultistepScheduler", {"solver_order": 3}),
    "DDIM": ("DDIMScheduler", {"clip_sample": False, "set_alpha_to_one": True}),
    "Euler": ("EulerDiscreteScheduler", {}),
}
OUT = Path(__file__).resolve().parent / "results"


def config_of(label: str) -> dict:
    cls, opts = SAMPLERS[label]
    return {"_class_name": cls, **BASE, **opts}


def diffusers_scheduler(config: dict):
    import diffusers

    kwargs = {k: v for k, v in config.items() if k != "_class_name"}
    return getattr(diffusers, config["_class_name"])(**kwargs)


def run_diffusers(sched, eps_fn, x_T, n_steps: int):
    """The plain diffusers loop: ``set_timesteps``, then scale, predict, step."""
    import torch

    sched.set_timesteps(n_steps)
    x = x_T * sched.init_noise_sigma
    with torch.no_grad():
        for t in sched.timesteps:
            eps = eps_fn(sched.scale_model_input(x, t), t)
            x = sched.step(eps, t, x).prev_sample
    return x


# ------------------------------------------------------------------------------------------
# (a) accuracy with exact predictions
def accuracy(steps=(10, 20), n_samples=256, progress=True) -> dict:
    import torch
    from tqdm.auto import tqdm

    jax.config.update("jax_enable_x64", True)
    gmm = builtin_mixture()
    schedule = jd.schedules.VPDiscrete.from_diffusers_config(BASE)
    n_train = BASE["num_train_timesteps"]
    x_T = np.asarray(jax.random.normal(jax.random.key(0), (n_samples, 2)), np.float32)
    # every sampler starts at timestep 999 (t = 1) and ends at clean data (t = 0)
    reference = np.asarray(gmm.ode_solution(schedule, jnp.asarray(x_T, jnp.float64), 1.0, 0.0,
                                            rtol=1e-9, atol=1e-9))

    def torch_eps(x, timestep):  # exact noise prediction at diffusers' integer timestep
        t = (float(timestep) + 1.0) / n_train
        _, eps = gmm.predictions(schedule, jnp.asarray(x.double().numpy()), t)
        return torch.from_numpy(np.asarray(eps)).to(x.dtype)

    # jd.Denoiser passes the model time (the index N t - 1); the oracle reads it as such
    den = jd.Denoiser(lambda x, m: gmm.predictions(schedule, x, m, time="model")[1],
                      schedule, prediction="eps")
    rows = {}
    jobs = [(label, n) for label in SAMPLERS for n in steps]
    for label, n in tqdm(jobs, desc="(a) accuracy", disable=not progress):
        config = config_of(label)
        x_d = run_diffusers(diffusers_scheduler(config), torch_eps, torch.from_numpy(x_T), n)
        err_d = float(np.sqrt(np.mean(np.sum((x_d.double().numpy() - reference) ** 2, -1))))
        try:
            solver, sched_j, grid = from_diffusers_scheduler(config, n)
            res = jax.jit(lambda x: jd.sample(solver, den, x, grid)[:2])(jnp.asarray(x_T))
            x_j, nfe_j = np.asarray(res[0], np.float64), int(res[1])
            err_j = float(np.sqrt(np.mean(np.sum((x_j - reference) ** 2, -1))))
            name_j = repr(solver)
        except ValueError as exc:  # a solver of another module missing in this install
            err_j, nfe_j, name_j = None, None, f"n/a ({exc})"
        rows.setdefault(label, []).append({"steps": n, "diffusers_error": err_d,
                                           "jaxdist_error": err_j, "jaxdist_nfe": nfe_j,
                                           "jaxdist_solver": name_j})
    jax.config.update("jax_enable_x64", False)
    return {"problem": "8-component 2-D Gaussian mixture (jaxdist.testing.builtin_mixture), exact "
                       "eps predictions", "config": BASE, "n_samples": n_samples,
            "metric": "RMS distance to the reference PF-ODE solution (diffrax Dopri8, rtol 1e-9)",
            "steps": list(steps), "results": rows}


# ------------------------------------------------------------------------------------------
# (b) speed with the same MLP
def torch_mlp(weights):
    import torch

    layers = []
    for i, (w, b) in enumerate(weights):
        lin = torch.nn.Linear(*w.shape)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w.T))
            lin.bias.copy_(torch.from_numpy(b))
        layers.append(lin)
        if i < len(weights) - 1:
            layers.append(torch.nn.SiLU())
    net = torch.nn.Sequential(*layers).eval()

    def fn(x, t):
        tt = torch.full((x.shape[0], 1), float(t) / 1000.0, dtype=x.dtype)
        return net(torch.cat([x, tt], -1))

    return fn


def speed(batches=(1, 64, 1024), n_steps=10, reps=30, progress=True) -> dict:
    import torch
    from tqdm.auto import tqdm

    torch.set_num_threads(2)
    jax.config.update("jax_enable_x64", False)
    weights = mlp_weights()
    f_jax, f_torch = jax_mlp(weights), torch_mlp(weights)
    config = config_of("DPM++ 2M")
    solver, schedule, grid = from_diffusers_scheduler(config, n_steps)
    grid = grid.astype(jnp.float32)
    den = jd.Denoiser(f_jax, schedule, prediction="eps")
    sample = jax.jit(lambda x: jd.sample(solver, den, x, grid).x)
    model_times = schedule.model_time(grid[:-1])

    @jax.jit
    def bare(x):  # the same 10 model calls, chained, nothing else
        return jax.lax.scan(lambda h, t: (f_jax(h, t), None), x, model_times)[0]

    # the two frameworks compute the same thing: check it once
    x_check = np.asarray(jax.random.normal(jax.random.key(1), (8, 2)), np.float32)
    diff = float(np.max(np.abs(np.asarray(sample(jnp.asarray(x_check)))
                               - run_diffusers(diffusers_scheduler(config), f_torch,
                                               torch.from_numpy(x_check), n_steps).numpy())))
    rows = []
    for batch in tqdm(batches, desc="(b) speed", disable=not progress):
        x_np = np.asarray(jax.random.normal(jax.random.key(2), (batch, 2)), np.float32)
        x_j, x_t = jnp.asarray(x_np), torch.from_numpy(x_np)
        sched = diffusers_scheduler(config)

        def torch_bare():
            with torch.no_grad():
                h = x_t
                for t in sched.timesteps:
                    h = f_torch(h, t)
            return h

        # Each framework's pair is interleaved; the frameworks are timed apart (torch's
        # spinning OpenMP threads would otherwise slow down the XLA call that follows them).
        t = median_times({"jax": lambda: sample(x_j).block_until_ready(),
                           "bare": lambda: bare(x_j).block_until_ready()}, reps)
        t.update(median_times({"torch": lambda: run_diffusers(sched, f_torch, x_t, n_steps),
                                "torch_bare": torch_bare}, reps))
        t_jax, t_bare, t_torch, t_torch_bare = t["jax"], t["bare"], t["torch"], t["torch_bare"]
        rows.append({"batch": batch, "jaxdist_s": t_jax, "jaxdist_bare_model_s": t_bare,
                     "jaxdist_overhead": t_jax / t_bare - 1.0, "diffusers_s": t_torch,
                     "torch_bare_model_s": t_torch_bare, "speedup_vs_diffusers": t_torch / t_jax,
                     "jaxdist_min_s": t["jax_min"], "jaxdist_bare_model_min_s": t["bare_min"],
                     "jaxdist_overhead_of_min": t["jax_min"] / t["bare_min"] - 1.0,
                     "overhead_target_met": t_jax / t_bare - 1.0 <= 0.10,
                     "speedup_target_met": t_torch / t_jax >= 3.0})
    return {"model": "MLP 2->256->256->2 (SiLU), time/1000 as an extra input, float32",
            "sampler": "DPM-Solver++ 2M (DPMSolverMultistepScheduler defaults), NFE 10",
            "repetitions": reps,
            "statistic": ("median wall time after one warm-up run, the jaxdist run and its bare "
                          "model calls interleaved, then the diffusers loop and its bare torch calls"),
            "torch_threads": 2, "max_abs_difference_of_outputs": diff,
            "devices": [str(d) for d in jax.devices()], "results": rows}


# ------------------------------------------------------------------------------------------
def format_tables(report: dict) -> str:
    acc, spd = report["accuracy"], report["speed"]
    lines = ["(a) RMS error to the reference ODE solution (same schedule, same timesteps)", "",
             "| sampler | steps | diffusers | jaxdist |", "|---|---:|---:|---:|"]
    for label, rows in acc["results"].items():
        for r in rows:
            j = "n/a" if r["jaxdist_error"] is None else f"{r['jaxdist_error']:.3e}"
            lines.append(f"| {label} | {r['steps']} | {r['diffusers_error']:.3e} | {j} |")
    lines += ["", f"(b) wall time of one sampling run, {spd['sampler']}; {spd['model']}", "",
              "| batch | jaxdist (ms) | bare model calls (ms) | overhead (median) | overhead (min) "
              "| diffusers (ms) | torch bare model (ms) | speed-up |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in spd["results"]:
        lines.append(f"| {r['batch']} | {1e3 * r['jaxdist_s']:.3f} | "
                     f"{1e3 * r['jaxdist_bare_model_s']:.3f} | {100 * r['jaxdist_overhead']:+.1f}% | "
                     f"{100 * r['jaxdist_overhead_of_min']:+.1f}% | "
                     f"{1e3 * r['diffusers_s']:.2f} | {1e3 * r['torch_bare_model_s']:.2f} | "
                     f"{r['speedup_vs_diffusers']:.1f}x |")
    lines.append(f"\nmax |jaxdist - diffusers| on the MLP outputs: "
                 f"{spd['max_abs_difference_of_outputs']:.2e}")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    acc = report["accuracy"]
    labels = list(acc["results"])
    n0 = acc["steps"][0]
    pos = np.arange(len(labels))
    for off, key, name in ((-0.2, "diffusers_error", "diffusers"), (0.2, "jaxdist_error", "jaxdist")):
        vals = [next(r[key] for r in acc["results"][lab] if r["steps"] == n0) or np.nan
                for lab in labels]
        ax1.bar(pos + off, vals, 0.4, label=name)
    ax1.set_yscale("log")
    ax1.set_xticks(pos, labels, rotation=30, ha="right", fontsize=8)
    ax1.set_ylabel(f"RMS error to ODE solution ({n0} steps)")
    ax1.legend()
    rows = report["speed"]["results"]
    b = [r["batch"] for r in rows]
    for key, name in (("diffusers_s", "diffusers loop"), ("jaxdist_s", "jaxdist (jit)"),
                      ("jaxdist_bare_model_s", "jax bare model calls")):
        ax2.loglog(b, [1e3 * r[key] for r in rows], marker="o", label=name)
    ax2.set_xlabel("batch")
    ax2.set_ylabel("wall time of a 10-NFE run (ms)")
    ax2.legend()
    ax2.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tic = time.perf_counter()
    report = {"accuracy": accuracy(progress=not args.no_progress),
              "speed": speed(reps=args.reps, progress=not args.no_progress)}
    report["seconds"] = time.perf_counter() - tic
    (out / "vs_diffusers.json").write_text(json.dumps(report, indent=2))
    plot(report, out / "vs_diffusers.png")
    print(format_tables(report))
    print(f"wrote {out / 'vs_diffusers.json'} and {out / 'vs_diffusers.png'} "
          f"({report['seconds']:.0f} s)")
    return report


if __name__ == "__main__":
    main()
