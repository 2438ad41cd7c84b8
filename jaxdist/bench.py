"""``jaxdist bench``: accuracy of every solver against NFE on a built-in Gaussian mixture.

For each solver and NFE budget the sample from the same noise is compared with the reference
solution of the probability-flow ODE (an adaptive float64 solve), and the root-mean-square
error is reported as a table, a JSON file and a log-log plot.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import grids as grids_lib
from . import schedules
from .sample import sample
from .solvers.registry import SOLVERS, by_name
from .testing import GaussianMixture

__all__ = ["builtin_mixture", "SCHEDULES", "run_bench", "steps_for_nfe"]

SCHEDULES = {
    "vp": (schedules.VPLinear(), "logsnr_uniform", 1.0, 1e-3),
    "edm": (schedules.EDM(), "karras", 80.0, 0.002),
    # t_start < 1: noise-prediction solvers cannot start where alpha = 0.
    "rf": (schedules.RectifiedFlow(), "time_uniform", 0.999, 1e-3),
}


def builtin_mixture(dim: int = 2) -> GaussianMixture:
    """Eight well-separated, anisotropic Gaussians on a ring (in the first two coordinates)."""
    k = 8
    angles = 2 * np.pi * np.arange(k) / k
    means = np.zeros((k, dim))
    means[:, 0], means[:, 1] = 2.0 * np.cos(angles), 2.0 * np.sin(angles)
    variances = np.full((k, dim), 0.04)
    variances[::2, 0] = 0.12
    weights = np.linspace(1.0, 2.0, k)
    return GaussianMixture(weights, means, variances)


def steps_for_nfe(solver, nfe: int) -> int:
    """Steps that use at most ``nfe`` evaluations (singlestep solvers spend ``order`` per step)."""
    per_step = int(getattr(solver, "nfe_per_step", 1))
    return max(1, nfe // per_step)


def run_bench(out_dir: str | Path = "out/bench", *, nfes: Sequence[int] = (5, 8, 10, 20, 50),
              solver_names: Sequence[str] | None = None, schedule: str = "vp",
              n_samples: int = 512, seed: int = 0, plot: bool = True,
              progress: bool = True) -> dict:
    """Runs the benchmark, prints the table and writes ``bench.json`` and ``bench.png``.

    The solvers run in float32; the reference solve and the errors use float64.
    """
    with jax.enable_x64(True):
        return _run_bench(out_dir, nfes, solver_names, schedule, n_samples, seed, plot, progress)


def timed_runs(names: Sequence[str], nfes: Sequence[int], den, x_T: jax.Array, grid_spec: tuple,
               *, key: jax.Array | None = None, desc: str = "bench", progress: bool = True):
    """Samples ``x_T`` with every solver in ``names`` at every budget in ``nfes`` (a progress
    bar over the jobs); yields ``(name, x float64 [N, D], nfe_used, seconds)``, the time
    including compilation. ``grid_spec = (grid_fn, t_start, t_end)``."""
    from tqdm.auto import tqdm

    grid_fn, t0, t1 = grid_spec
    bar = tqdm([(name, nfe) for name in names for nfe in nfes], desc=desc, disable=not progress,
               leave=False)
    for name, nfe in bar:
        bar.set_postfix_str(f"{name} @ NFE {nfe}")
        solver = by_name(name)
        grid = grid_fn(den.schedule, steps_for_nfe(solver, nfe), t0, t1).astype(jnp.float32)
        run = jax.jit(lambda x, k, solver=solver, grid=grid: sample(solver, den, x, grid,
                                                                    key=k)[:2])
        tic = time.perf_counter()
        x, used = run(x_T, key)
        x = np.asarray(jax.block_until_ready(x), dtype=np.float64)
        yield name, x, int(used), time.perf_counter() - tic


def _run_bench(out_dir, nfes, solver_names, schedule, n_samples, seed, plot, progress) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sched, grid_name, t0, t1 = SCHEDULES[schedule]
    gmm = builtin_mixture()
    den = gmm.denoiser(sched)
    key = jax.random.key(seed)
    x_T = (jax.random.normal(key, (n_samples, gmm.dim)) * sched.sigma(t0)).astype(jnp.float32)
    reference = np.asarray(gmm.ode_solution(sched, x_T.astype(jnp.float64), t0, t1))
    grid_fn = getattr(grids_lib, grid_name)
    names = list(solver_names or [n for n in SOLVERS if not by_name(n).stochastic])
    results: dict[str, dict[str, list]] = {}
    for name, x, used, seconds in timed_runs(names, nfes, den, x_T, (grid_fn, t0, t1),
                                             desc="bench", progress=progress):
        err = float(np.sqrt(np.mean(np.sum((x - reference) ** 2, axis=-1))))
        row = results.setdefault(name, {"nfe": [], "error": [], "seconds": []})
        row["nfe"].append(int(used))
        row["error"].append(err)
        row["seconds"].append(seconds)
    report = {"schedule": schedule, "grid": grid_name, "t_start": t0, "t_end": t1,
              "problem": "8-component 2-D Gaussian mixture (jaxdist.bench.builtin_mixture)",
              "n_samples": n_samples, "metric": "RMS distance to the reference ODE solution",
              "nfe_budget": list(nfes), "results": results}
    (out / "bench.json").write_text(json.dumps(report, indent=2))
    print(format_table(report))
    if plot:
        plot_report(report, out / "bench.png")
        print(f"wrote {out / 'bench.json'} and {out / 'bench.png'}")
    return report


def format_table(report: dict) -> str:
    """The benchmark as a Markdown table: solvers by rows, NFE budgets by columns."""
    nfes = report["nfe_budget"]
    lines = [f"RMS error to the reference PF-ODE solution ({report['schedule']}, "
             f"{report['grid']} grid, {report['n_samples']} samples)", "",
             "| solver | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
             "|---|" + "---:|" * len(nfes)]
    for name, row in report["results"].items():
        cells = [f"{e:.2e}" + ("" if u == n else f" ({u})")
                 for n, u, e in zip(nfes, row["nfe"], row["error"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_report(report: dict, path: Path) -> None:
    """Error against NFE on log-log axes, one line per solver."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import ScalarFormatter

    fig, ax = plt.subplots(figsize=(8, 5.5))
    colors = plt.get_cmap("tab10").colors
    for i, (name, row) in enumerate(report["results"].items()):
        # 10 colours x 3 line/marker styles keep up to 30 solvers distinguishable.
        ax.loglog(row["nfe"], row["error"], color=colors[i % 10], label=name,
                  linestyle=("-", "--", ":")[i // 10 % 3], marker="os^"[i // 10 % 3])
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(ScalarFormatter())
    ax.set_xlabel("model evaluations (NFE)")
    ax.set_ylabel("RMS error to reference ODE solution")
    ax.set_title(f"jaxdist solvers on a Gaussian mixture ({report['schedule']})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
