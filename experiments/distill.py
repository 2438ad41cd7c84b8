"""Few-step students against their teachers, measured: sliced W2 to held-out data at 1, 2, 4 NFE.

Teachers are ``jaxdist train`` runs of the ``fm`` and ``edm`` objectives (``train_run``; a
small MLP, the same settings for both). Students:

* distilled with ``distill_run``: ``dmd`` (1 step), ``dmd2`` (1- and 4-step generators),
  ``f-distill`` (Jensen-Shannon, 1 step) from the ``fm`` teacher; ``scm``, ``cd`` from the
  ``edm`` teacher; ``meanflow`` and ``shortcut`` from the ``fm`` teacher;
* trained from data with ``train_fewstep_run``: ``scm``, ``meanflow``, ``shortcut``.

Each student is sampled with its own sampler (``sample_student``) at 1, 2 and 4 NFE where it
can (a ``K``-step generator only at ``K``); the teachers with DPM-Solver++(2M) at 10 and 20 NFE;
the floor is a fresh training draw against the same held-out set. Training cost (steps and
seconds on this machine) is reported beside each row. Runs are kept in
``experiments/out/distill-runs/`` and reused (delete a folder to retrain it); results go to
``experiments/out/distill[-DATA].json``, a plot to ``distill[-DATA].png``, the table to stdout.

    .venv/bin/python experiments/distill.py --data two-moons checkerboard gmm digits
    .venv/bin/python experiments/distill.py --data gmm --methods dmd2-1 meanflow-fm
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

from jaxdist.checkpoint import Checkpointer
from jaxdist.cli.quality import quality
from jaxdist.cli.runs import sample_checkpoint, train_run
from jaxdist.data import get_dataset
from jaxdist.cli.distill_runs import distill_run, sample_student, train_fewstep_run

OUT = Path(__file__).parent / "out"
RUNS = OUT / "distill-runs"
NUM = 2000

#: teacher settings (both objectives), by data set
TEACHER = {"2d": {"steps": 3000, "hidden": 128, "depth": 3, "lr": 2e-3, "batch_size": 256,
                  "ema_decay": 0.995},
           "digits": {"steps": 4000, "hidden": 256, "depth": 3, "lr": 1e-3, "batch_size": 256,
                      "ema_decay": 0.995}}

#: student name -> (entry, teacher objective or None, method, student_steps, settings)
STUDENTS = {
    "dmd-1": ("distill", "fm", "dmd", 1, {"steps": 600}),
    "dmd2-1": ("distill", "fm", "dmd2", 1, {}),
    "dmd2-4": ("distill", "fm", "dmd2", 4, {"steps": 600}),
    "f-distill-js-1": ("distill", "fm", "f-distill", 1, {}),
    "scm-edm": ("distill", "edm", "scm", 1, {}),
    "cd-edm": ("distill", "edm", "cd", 1, {}),
    "meanflow-fm": ("distill", "fm", "meanflow", 1, {}),
    "shortcut-fm": ("distill", "fm", "shortcut", 1, {}),
    "scm-scratch": ("fewstep", None, "scm", 1, {}),
    "meanflow-scratch": ("fewstep", None, "meanflow", 1, {}),
    "shortcut-scratch": ("fewstep", None, "shortcut", 1, {}),
}
#: which students each data set gets (the budget is about an hour on 2 shared cores)
PLAN = {
    "two-moons": list(STUDENTS),
    "checkerboard": ["dmd2-1", "scm-edm", "meanflow-fm", "shortcut-fm"],
    "gmm": ["dmd2-1", "scm-edm", "meanflow-fm", "shortcut-fm"],
    "digits": ["dmd2-1", "scm-edm", "shortcut-fm"],
}
#: student training settings, by data set kind (a student's own settings override them)
STUDENT = {"2d": {"steps": 1000, "batch_size": 256, "hidden": 128, "depth": 3},
           "digits": {"steps": 1000, "batch_size": 256, "hidden": 256, "depth": 3}}
DIGITS_DMD_STEPS = 500


def kind(data: str) -> str:
    return "digits" if data == "digits" else "2d"


def teacher_dir(data: str, objective: str) -> Path:
    return RUNS / f"{data}-teacher-{objective}"


def train_teacher(data: str, objective: str) -> dict:
    cfg = dict(TEACHER[kind(data)])
    steps = cfg.pop("steps")
    tic = time.perf_counter()
    _, history = train_run(teacher_dir(data, objective), data=data, objective=objective,
                           steps=steps, save_every=steps, progress=False, seed=0, **cfg)
    return {"steps": steps, "seconds": time.perf_counter() - tic if history else None}


def train_student(data: str, name: str) -> dict:
    entry, objective, method, k, settings = STUDENTS[name]
    cfg = {**STUDENT[kind(data)], **settings}
    if data == "digits" and method.startswith("dmd"):
        cfg["steps"] = DIGITS_DMD_STEPS
    steps = cfg.pop("steps")
    out = RUNS / f"{data}-{name}"
    if out.is_dir():
        with Checkpointer(out) as ckpt:
            if ckpt.latest_step() == steps:  # a finished run is reused as it is
                return {"steps": steps, "seconds": None}
    tic = time.perf_counter()
    if entry == "distill":
        _, history = distill_run(out, teacher_dir=teacher_dir(data, objective), method=method,
                                 student_steps=k, steps=steps, save_every=steps,
                                 progress=False, **cfg)
    else:
        _, history = train_fewstep_run(out, data=data, method=method, student_steps=k,
                                       steps=steps, save_every=steps, progress=False, **cfg)
    return {"steps": steps, "seconds": time.perf_counter() - tic if history else None}


def swd(x: np.ndarray, dataset, seed: int) -> float:
    n = min(NUM, dataset.held_out_size or NUM)
    return quality(x[:n], dataset, n_ref=n, seed=seed, floor=False)["model"]["swd"]


def evaluate(data: str, names: list[str], costs: dict, seed: int = 0) -> dict:
    dataset = get_dataset(data)
    n = min(NUM, dataset.held_out_size or NUM)
    floor = swd(np.asarray(dataset.sample(jax.random.key(seed + 1), n)), dataset, seed)
    rows = []
    for objective in ("fm", "edm"):
        for nfe in (10, 20):
            x, info = sample_checkpoint(teacher_dir(data, objective), solver="dpm++2m", nfe=nfe,
                                        num=n, seed=seed)
            rows.append({"name": f"teacher-{objective}", "nfe": info["nfe"],
                         "swd": swd(x, dataset, seed), **costs.get(f"teacher-{objective}", {})})
    for name in names:
        _, _, method, k, _ = STUDENTS[name]
        nfes = [k] if method in ("dmd", "dmd2", "f-distill", "vsd") else [1, 2, 4]
        for nfe in nfes:
            x, info = sample_student(RUNS / f"{data}-{name}", nfe=nfe, num=n, seed=seed)
            value = swd(x, dataset, seed) if np.all(np.isfinite(x)) else float("nan")
            rows.append({"name": name, "nfe": nfe, "swd": value, **costs.get(name, {})})
    return {"data": data, "floor_swd": floor, "rows": rows}


def table(report: dict) -> str:
    lines = [f"**{report['data']}** (data floor {report['floor_swd']:.4f})", "",
             "| model | NFE | sliced W2 | train steps | train s |", "|---|---:|---:|---:|---:|"]
    for r in report["rows"]:
        secs = "" if r.get("seconds") is None else f"{r['seconds']:.0f}"
        lines.append(f"| {r['name']} | {r['nfe']} | {r['swd']:.4f} | {r.get('steps', '')} | "
                     f"{secs} |")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    by_name: dict[str, list] = {}
    for r in report["rows"]:
        by_name.setdefault(r["name"].rsplit("-", 1)[0] if r["name"].startswith("dmd2-") and
                           r["name"][-1].isdigit() and "edm" not in r["name"] else r["name"],
                           []).append((r["nfe"], r["swd"]))
    colors = plt.get_cmap("tab20").colors
    for i, (name, pts) in enumerate(by_name.items()):
        pts.sort()
        style = "--s" if name.startswith("teacher") else "-o"
        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=name, ms=4,
                color=colors[i % len(colors)])
    ax.axhline(report["floor_swd"], color="k", lw=0.8, ls=":", label="data floor")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("NFE")
    ax.set_ylabel("sliced W2 to held-out data")
    ax.set_title(f"few-step students on {report['data']}")
    ax.legend(fontsize=6, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["two-moons", "checkerboard", "gmm"])
    parser.add_argument("--methods", nargs="+", default=None, choices=list(STUDENTS),
                        help="students to train (default: the data set's PLAN)")
    parser.add_argument("--stage", choices=["teachers", "all", "replot"], default="all",
                        help="replot: redraw the plots and tables from the saved JSON")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.stage == "replot":
        for data in args.data:
            suffix = "" if data == "two-moons" else f"-{data}"
            report = json.loads((OUT / f"distill{suffix}.json").read_text())
            plot(report, OUT / f"distill{suffix}.png")
            print(table(report) + "\n")
        return
    for data in args.data:
        costs_path = OUT / f"distill-costs-{data}.json"
        costs = json.loads(costs_path.read_text()) if costs_path.exists() else {}
        for objective in ("fm", "edm"):
            key = f"teacher-{objective}"
            result = train_teacher(data, objective)
            if result["seconds"] is not None or key not in costs:
                costs[key] = result
            costs_path.write_text(json.dumps(costs, indent=2))
            print(f"{data}: teacher {objective} {costs[key]}", flush=True)
        if args.stage == "teachers":
            continue
        names = args.methods or PLAN[data]
        for name in names:
            result = train_student(data, name)
            if result["seconds"] is not None or name not in costs:
                costs[name] = result
            costs_path.write_text(json.dumps(costs, indent=2))
            print(f"{data}: {name} {costs[name]}", flush=True)
        report = evaluate(data, names, costs)
        suffix = "" if data == "two-moons" else f"-{data}"
        (OUT / f"distill{suffix}.json").write_text(json.dumps(report, indent=2))
        plot(report, OUT / f"distill{suffix}.png")
        print(table(report), flush=True)


if __name__ == "__main__":
    main()
