"""Tuned samplers (jd.tune) against the best fixed-grid samplers on the built-in mixtures.

For each mixture (``jd.testing.builtin_mixture(dim)``: 8 anisotropic Gaussians on a ring, 2-D,
where the tuning settings were chosen, and 16-D, which was not used to choose them) under the
VP-linear schedule, from ``t = 1`` to clean data (``t = 0``), at NFE 4, 5, 6, 8 and 10:

* best fixed grid: the lowest test error over the solvers in ``FIXED_SOLVERS`` and the grids in
  ``GRIDS`` (log-SNR, Karras, time-quadratic, time-uniform; each ending at ``t_min`` or with a
  final step to 0), chosen on the test noise itself (favourable to the baseline);
* AYS / GITS: the published SD 1.5 tables mapped onto the schedule's range (``rescale=True``),
  best solver of ``FIXED_SOLVERS`` on them;
* tuned grid: ``jd.tune.optimise_grid(init="auto", final_zero=False)`` (started from the
  standard spacing with the lowest training error; the last time learned, no step to 0: on
  these mixtures a final step to 0 wastes one of the few evaluations) for each solver in
  ``TUNE_SOLVERS``, 200 Adam steps (learning rate 0.05) on 2048 training starting points;
* tuned solver: ``jd.tune.optimise_solver`` started from that tuned grid (corrections' rate
  0.01);
  for both, the variant with the lowest *validation* error is reported (on the test noise);
* best tuned / best fixed: the better of the two tuned columns over the best of the three fixed
  columns.

Error: RMS distance to the exact probability-flow ODE solution of the same test noise (an
adaptive float64 Dopri8 solve, ``gmm.ode_solution``); tuning on separate training noise against
the same kind of reference (the teacher), 20 % of it held out for validation. Everything in
float64. Tuning cost: wall-clock seconds including compilation (the CPU this ran on is noted in
the JSON).

    python experiments/tuned_samplers.py --dims 2 --out experiments/out/tuned_samplers-gmm2
    python experiments/tuned_samplers.py --dims 16 --out experiments/out/tuned_samplers-gmm16
    python experiments/tuned_samplers.py --merge experiments/out/tuned_samplers-gmm{2,16}.json
                                                           # -> tuned_samplers.{json,md,png}
    python experiments/tuned_samplers.py --quick      # fewer tuning steps, 2-D only
    python experiments/tuned_samplers.py --dims 16 --nfes 10 --n-train 512 \
        --out experiments/out/tuned_samplers-n512-gmm16     # the earlier, smaller training set
    python experiments/tuned_samplers.py --seed-solvers --dims 2 16 \
        --out experiments/out/seed_solvers     # DPM-Solver-v3 and DC-Solver rows (below)

Seed-solver rows (``--seed-solvers``, a separate small run): DPM-Solver-v3 with EMS computed
from 512 data samples on a 200-point log-SNR grid (``jd.solvers.compute_ems``; orders 2 and 3,
without and with the corrector (``-c``), and the reference's CIFAR-10 recipe for the step count,
``v3_recipe``) and DC-Solver (UniPC-2 bh2, ratios fitted on 16 training points to a fine reference trajectory,
40 Adam steps, rate 0.1), against DPM-Solver++ 2M and UniPC-2 on the same log-SNR grid from
``t = 1`` to ``t_min`` (DPM-Solver-v3 has no step to ``t = 0``); error: RMS distance to the exact
PF-ODE solution at ``t_min`` on held-out noise.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxdist as jd
from jaxdist.cli.nfe import steps_for_nfe
from jaxdist.solvers import registry

jax.config.update("jax_enable_x64", True)

OUT = Path(__file__).resolve().parent / "out"
NFES = (4, 5, 6, 8, 10)
FIXED_SOLVERS = ("ddim", "dpm++2m", "dpm++3m", "unipc", "unipc-3", "deis", "ipndm", "ipndm-v",
                 "heun", "dpm++2s")
TUNE_SOLVERS = ("dpm++2m", "unipc", "ipndm")
SCHEDULE = jd.schedules.VPLinear()
GRIDS = {
    "logsnr": lambda n, fz: jd.grids.logsnr_uniform(SCHEDULE, n, final_zero=fz),
    "karras": lambda n, fz: jd.grids.karras(SCHEDULE, n, final_zero=fz),
    "time-quadratic": lambda n, fz: jd.grids.time_quadratic(SCHEDULE, n, final_zero=fz),
    "time-uniform": lambda n, fz: jd.grids.time_uniform(SCHEDULE, n, final_zero=fz),
}
PUBLISHED = {
    "ays": lambda n: jd.grids.ays(SCHEDULE, n, "sd1", rescale=True),
    "gits": lambda n: jd.grids.gits(SCHEDULE, n, rescale=True),
}


def rms(x, y) -> float:
    return float(jd.tune.rms(jnp.asarray(x), jnp.asarray(y)))


class Runner:
    """One compiled sampler per (solver, number of steps): grids are traced arguments."""

    def __init__(self, den, x):
        self.den, self.x, self.cache = den, x, {}

    def __call__(self, solver, grid):
        key = (solver, int(grid.shape[0]))
        if key not in self.cache:
            self.cache[key] = jax.jit(lambda s, g: jd.sample(s, self.den, self.x, g).x)
        return self.cache[key](solver, jnp.asarray(grid, jnp.float64))


def fixed_grid_rows(runner, reference, nfes=NFES) -> dict:
    """``{nfe: {"best": row, "ays": row, "gits": row}}``, each ``row`` the best solver."""
    out = {}
    for nfe in nfes:
        rows = []
        for name in FIXED_SOLVERS:
            solver = registry.by_name(name)
            n = steps_for_nfe(solver, nfe)
            for grid_name, fn in GRIDS.items():
                for fz in (False, True):
                    if fz and n < 2:
                        continue
                    err = rms(runner(solver, fn(n, fz)), reference)
                    rows.append({"solver": name, "grid": grid_name, "final_zero": fz,
                                 "n_steps": n, "nfe": solver.nfe(n), "error": err})
            for grid_name, fn in PUBLISHED.items():
                if n < 2:
                    continue
                rows.append({"solver": name, "grid": grid_name, "final_zero": True,
                             "n_steps": n, "nfe": solver.nfe(n),
                             "error": rms(runner(solver, fn(n)), reference)})
        fixed = [r for r in rows if r["grid"] in GRIDS]
        out[nfe] = {"best": min(fixed, key=lambda r: r["error"]),
                    **{g: min((r for r in rows if r["grid"] == g), key=lambda r: r["error"])
                       for g in PUBLISHED},
                    "all": rows}
    return out


def pick(variants: list) -> dict:
    """The lowest-validation-error variant of each kind (``grid``, ``solver``) and all of them."""
    return {**{kind: min((v for v in variants if v["kind"] == kind), key=lambda v: v["val_rms"])
               for kind in ("grid", "solver")}, "variants": variants}


def tuned_rows(den, x_train, y_train, runner, reference, steps: int, on_nfe=None,
               nfes=NFES, tune_solvers=TUNE_SOLVERS, soft_radius: float = 0.0) -> dict:
    """``{nfe: {"grid": row, "solver": row, "variants": [...]}}`` (``on_nfe(out)`` after each
    NFE: partial results are written as they come)."""
    out = {}
    for nfe in nfes:
        variants = []
        for name in tune_solvers:
            solver = registry.by_name(name)
            common = dict(teacher=y_train, steps=steps, learning_rate=0.05, validation=0.2,
                          final_zero=False, key=jax.random.key(nfe), progress=False,
                          soft_radius=soft_radius)
            by_grid = jd.tune.optimise_grid(solver, den, x_train, nfe, init="auto", **common)
            by_solver = jd.tune.optimise_solver(solver, den, x_train, nfe, init=by_grid.grid,
                                                **common)
            for kind, t, cost in (("grid", by_grid, by_grid.seconds),
                                  ("solver", by_solver, by_grid.seconds + by_solver.seconds)):
                variants.append({
                    "kind": kind, "solver": name, "nfe": solver.nfe(nfe),
                    "val_rms_initial": t.history[0]["val_rms"],
                    "val_rms": min(h["val_rms"] for h in t.history),
                    "error": rms(runner(t.solver, t.grid), reference),
                    "seconds": cost, "grid": np.asarray(t.grid).tolist()})
        out[nfe] = pick(variants)
        if on_nfe is not None:
            on_nfe(out)
    return out


def table(report: dict) -> str:
    lines = []
    for mix, res in report["mixtures"].items():
        lines += [f"**{mix}** ({res['problem']})", "",
                  "| NFE | best fixed grid | AYS | GITS | tuned grid | tuned solver | "
                  "best tuned / best fixed | tuning cost (s) |",
                  "|---:|---|---:|---:|---|---|---:|---:|"]
        for nfe in res.get("nfes_done", NFES):
            f, t = res["fixed"][str(nfe)], res["tuned"][str(nfe)]
            best = f["best"]
            tuned_best = min(t["grid"]["error"], t["solver"]["error"])
            fixed_best = min(best["error"], f["ays"]["error"], f["gits"]["error"])
            fz = ", to 0" if best["final_zero"] else ""
            lines.append(
                f"| {nfe} | {best['error']:.4f} ({best['solver']}, {best['grid']}{fz}) | "
                f"{f['ays']['error']:.4f} | {f['gits']['error']:.4f} | "
                f"{t['grid']['error']:.4f} ({t['grid']['solver']}) | "
                f"{t['solver']['error']:.4f} ({t['solver']['solver']}) | "
                f"{tuned_best / fixed_best:.2f}x | {t['solver']['seconds']:.0f} |")
        lines.append("")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mixes = list(report["mixtures"])
    fig, axes = plt.subplots(1, len(mixes), figsize=(5.5 * len(mixes), 4), squeeze=False)
    for ax, mix in zip(axes[0], mixes):
        res = report["mixtures"][mix]
        nfes = [int(n) for n in res.get("nfes_done", NFES)]
        curves = {"best fixed grid": [res["fixed"][str(n)]["best"]["error"] for n in nfes],
                  "AYS (rescaled)": [res["fixed"][str(n)]["ays"]["error"] for n in nfes],
                  "GITS (rescaled)": [res["fixed"][str(n)]["gits"]["error"] for n in nfes],
                  "tuned grid": [res["tuned"][str(n)]["grid"]["error"] for n in nfes],
                  "tuned solver": [res["tuned"][str(n)]["solver"]["error"] for n in nfes]}
        for label, ys in curves.items():
            ax.semilogy(nfes, ys, "o-", label=label)
        ax.set(title=mix, xlabel="NFE",
               ylabel=report.get("ylabel", "RMS error to the exact ODE solution"))
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write(report: dict, out: Path) -> None:
    """``out``.json, .md (the table) and .png."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    out.with_suffix(".md").write_text(table(report))
    plot(report, out.with_suffix(".png"))


def run_mixture(dim: int, steps: int, n_train: int, n_test: int, out: Path, nfes=NFES,
                tune_solvers=TUNE_SOLVERS, soft_radius: float = 0.0) -> dict:
    """Fixed grids and tuning on ``builtin_mixture(dim)``; writes ``out`` as results come."""
    report = {"schedule": repr(SCHEDULE), "t_start": 1.0, "t_end": 0.0, "nfes": list(nfes),
              "tune_solvers": list(tune_solvers),
              "tuning_steps": steps, "n_train": n_train, "n_test": n_test,
              "soft_radius": soft_radius,
              "metric": "RMS distance to the exact PF-ODE solution (float64 Dopri8) at t = 0",
              "cpu_count": os.cpu_count(), "mixtures": {}}
    gmm = jd.testing.builtin_mixture(dim)
    den = gmm.denoiser(SCHEDULE)
    k_train, k_test = jax.random.split(jax.random.key(dim))
    x_train = jax.random.normal(k_train, (n_train, dim), jnp.float64)
    x_test = jax.random.normal(k_test, (n_test, dim), jnp.float64)
    tic = time.perf_counter()
    y_train = gmm.ode_solution(SCHEDULE, x_train, 1.0, 0.0)
    y_test = gmm.ode_solution(SCHEDULE, x_test, 1.0, 0.0)
    print(f"{dim}-D: references in {time.perf_counter() - tic:.1f} s", flush=True)
    runner = Runner(den, x_test)
    fixed = {str(k): v for k, v in fixed_grid_rows(runner, y_test, nfes).items()}
    print(f"{dim}-D: fixed grids done", flush=True)
    name = f"gmm{dim}"
    problem = f"jd.testing.builtin_mixture({dim})" + (
        ", tuning settings chosen here" if dim == 2 else ", not used to choose settings")

    def save(tuned):
        done = [str(k) for k in tuned]
        report["mixtures"][name] = {"problem": problem, "nfes_done": done,
                                    "fixed": {k: fixed[k] for k in done},
                                    "tuned": {str(k): v for k, v in tuned.items()}}
        write(report, out)
        print(table(report), flush=True)

    tuned_rows(den, x_train, y_train, runner, y_test, steps, on_nfe=save, nfes=nfes,
               tune_solvers=tune_solvers, soft_radius=soft_radius)
    return report


def v3_recipe(ems, n_steps: int):
    """DPM-Solver-v3 as its authors run it on CIFAR-10 for ``n_steps`` (their sample.sh):
    order 3; up to 5 steps pseudo-order predictor, corrector, no lower-order final steps; 6-8
    steps the corrector; more steps neither."""
    if n_steps <= 5:
        return jd.solvers.DPMSolverV3(ems, 3, lower_order_final=False, predictor_pseudo=True,
                                      corrector=True)
    return jd.solvers.DPMSolverV3(ems, 3, corrector=n_steps <= 8)


def seed_solver_rows(dim: int, nfes, n_test: int = 256) -> dict:
    """``{nfe: {name: error}}`` of DPM-Solver-v3, DC-Solver and their baselines on the
    ``dim``-D mixture (docstring)."""
    gmm = jd.testing.builtin_mixture(dim)
    den = gmm.denoiser(SCHEDULE)
    k_train, k_test, k_data, k_ems = jax.random.split(jax.random.key(100 + dim), 4)
    x_test = jax.random.normal(k_test, (n_test, dim), jnp.float64)
    return seed_rows(den, gmm.sample(k_data, 512), jax.random.normal(k_train, (16, dim)),
                     x_test, gmm.ode_solution(SCHEDULE, x_test, 1.0, SCHEDULE.t_min), nfes,
                     k_ems)


def seed_rows(den, x0_samples, x_train, x_test, y_test, nfes, key) -> dict:
    """DPM-Solver-v3 (EMS from ``x0_samples``), DC-Solver (ratios fitted on ``x_train``) and
    their baselines on log-SNR grids from ``t = 1`` to ``t_min``, scored against ``y_test``
    (the solutions at ``t_min`` of ``x_test``)."""
    from jaxdist.solvers.primitives import half_log_snr

    t_end = SCHEDULE.t_min
    lo, hi = (float(half_log_snr(SCHEDULE, jnp.asarray(t))) for t in (1.0, t_end))
    tic = time.perf_counter()
    ems = jd.solvers.compute_ems(den, SCHEDULE, jnp.asarray(x0_samples, jnp.float64),
                                 jnp.linspace(lo - 0.1, hi + 0.1, 200), key)
    out = {"ems_seconds": time.perf_counter() - tic}
    x_train = jnp.asarray(x_train, jnp.float64)
    for nfe in nfes:
        grid = jd.grids.logsnr_uniform(SCHEDULE, nfe, 1.0, t_end)
        row = {}
        for name, solver in (("dpm++2m", jd.solvers.DPMSolverPP(order=2)),
                             ("unipc", jd.solvers.UniPC(order=2)),
                             ("dpm-solver-v3-2", jd.solvers.DPMSolverV3(ems, order=2)),
                             ("dpm-solver-v3-3", jd.solvers.DPMSolverV3(ems, order=3)),
                             ("dpm-solver-v3-2c", jd.solvers.DPMSolverV3(ems, 2, corrector=True)),
                             ("dpm-solver-v3-3c", jd.solvers.DPMSolverV3(ems, 3, corrector=True)),
                             ("dpm-solver-v3-recipe", v3_recipe(ems, nfe))):
            row[name] = rms(jd.sample(solver, den, x_test, grid).x, y_test)
        tic = time.perf_counter()
        ref = jd.tune.reference_trajectory(den, x_train, grid)
        dc, _ = jd.tune.fit_dc_ratios(jd.solvers.UniPC(order=2), den, x_train, grid, ref)
        row["dc-solver"] = rms(jd.sample(dc, den, x_test, grid).x, y_test)
        row["dc_fit_seconds"] = time.perf_counter() - tic
        out[str(nfe)] = row
        print(f"NFE {nfe}: {row}", flush=True)
    return out


def seed_table(report: dict) -> str:
    names = ("dpm++2m", "unipc", "dpm-solver-v3-2", "dpm-solver-v3-3", "dpm-solver-v3-2c",
             "dpm-solver-v3-3c", "dpm-solver-v3-recipe", "dc-solver")
    lines = ["| mixture | NFE | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
    for mix, res in report.items():
        for nfe, row in res.items():
            if nfe.isdigit():
                lines.append(f"| {mix} | {nfe} | " + " | ".join(f"{row[n]:.4f}" for n in names)
                             + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="60 tuning steps, 2-D mixture only")
    parser.add_argument("--steps", type=int, default=200, help="Adam steps per tuning")
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 16],
                        help="mixture dimensions (default: 2 16)")
    parser.add_argument("--nfes", type=int, nargs="+", default=list(NFES))
    parser.add_argument("--tune-solvers", nargs="+", default=list(TUNE_SOLVERS))
    parser.add_argument("--n-train", type=int, default=2048)
    parser.add_argument("--soft-radius", type=float, default=0.0,
                        help="LD3 soft teacher forcing radius (jd.tune, default 0: off)")
    parser.add_argument("--n-test", type=int, default=8192)
    parser.add_argument("--out", type=Path, default=OUT / "tuned_samplers")
    parser.add_argument("--merge", type=Path, nargs="+", default=None,
                        help="only merge these JSON reports into --out")
    parser.add_argument("--seed-solvers", action="store_true",
                        help="only the DPM-Solver-v3 / DC-Solver rows (module docstring)")
    args = parser.parse_args()
    if args.seed_solvers:
        report = {f"gmm{d}": seed_solver_rows(d, tuple(args.nfes)) for d in args.dims}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(report, indent=1))
        args.out.with_suffix(".md").write_text(seed_table(report))
        print(seed_table(report))
        return
    if args.merge:  # later reports add tuned variants (same noise, same fixed grids)
        reports = [json.loads(p.read_text()) for p in args.merge]
        merged = {**reports[0], "mixtures": {}}
        for r in reports:
            for name, res in r["mixtures"].items():
                if name not in merged["mixtures"]:
                    merged["mixtures"][name] = res
                    continue
                have = merged["mixtures"][name]
                for nfe, tuned in res["tuned"].items():
                    if nfe in have["tuned"]:
                        have["tuned"][nfe] = pick(have["tuned"][nfe]["variants"]
                                                  + tuned["variants"])
                have.setdefault("tune_solvers", []).extend(r.get("tune_solvers", []))
        write(merged, args.out)
        print(table(merged))
        return
    steps = 60 if args.quick else args.steps
    dims = [2] if args.quick else args.dims
    for dim in dims:
        out = args.out if len(dims) == 1 else args.out.with_name(f"{args.out.name}-gmm{dim}")
        run_mixture(dim, steps, args.n_train, args.n_test, out, tuple(args.nfes),
                    tuple(args.tune_solvers), args.soft_radius)
    print(f"wrote {args.out}*.json, .md and .png")


if __name__ == "__main__":
    main()
