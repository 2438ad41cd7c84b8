"""``jaxdist bench --stochastic``: distribution error of every stochastic sampler against NFE.

Stochastic samplers do not follow the probability-flow ODE path, so they are scored on the
distribution of their samples on the built-in 2-D Gaussian mixture
(:func:`jaxdist.bench.builtin_mixture`):

* Frechet distance between the Gaussians fitted to the samples and to the true mixture,
  ``||m_1 - m_2||^2 + tr(C_1 + C_2 - 2 (C_1^{1/2} C_2 C_1^{1/2})^{1/2})``;
* total variation of the component weights, ``1/2 sum_k |f_k - pi_k|``, with each sample
  assigned to its most likely component.

The row ``exact samples`` is the Monte Carlo floor (draws from the mixture itself). Writes a
Markdown table, ``bench_stochastic.json`` and ``bench_stochastic.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import grids as grids_lib
from .bench import SCHEDULES, builtin_mixture, timed_runs
from .solvers.registry import SOLVERS, by_name
from .testing import GaussianMixture

__all__ = ["run_stochastic_bench", "frechet_distance", "weight_error", "stochastic_names",
           "format_stochastic_table"]


def _sqrtm_psd(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((c + c.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> float:
    """Frechet distance between ``N(mean(x), cov(x))`` of samples ``x [n, D]`` and ``N(mean, cov)``."""
    m1, c1 = x.mean(0), np.cov(x, rowvar=False)
    s1 = _sqrtm_psd(c1)
    cross = _sqrtm_psd(s1 @ cov @ s1)
    return float(np.sum((m1 - mean) ** 2) + np.trace(c1 + cov - 2 * cross))


def weight_error(x: np.ndarray, mixture: GaussianMixture) -> tuple[float, np.ndarray]:
    """``(total variation, fractions [K])`` of the component weights, each sample assigned to
    ``argmax_k pi_k N(x; mu_k, diag(s_k^2))``."""
    mu, var, w = (np.asarray(a, np.float64) for a in (mixture.means, mixture.variances,
                                                     mixture.weights))
    logp = (np.log(w) - 0.5 * np.sum((x[:, None] - mu) ** 2 / var + np.log(var), -1))
    frac = np.bincount(np.argmax(logp, -1), minlength=w.shape[0]) / x.shape[0]
    return float(0.5 * np.abs(frac - w).sum()), frac


def stochastic_names() -> list[str]:
    """Registered solver names whose solver is stochastic."""
    return [n for n in SOLVERS if getattr(by_name(n), "stochastic", False)]


def run_stochastic_bench(out_dir: str | Path = "out/bench", *,
                         nfes: Sequence[int] = (10, 20, 50, 100),
                         solver_names: Sequence[str] | None = None, schedule: str = "vp",
                         n_samples: int = 20000, seed: int = 0, plot: bool = True,
                         progress: bool = True) -> dict:
    """Runs the benchmark, prints the table and writes the JSON and PNG files in ``out_dir``.

    The samplers run in float32; the metrics use float64 (only inside this call).
    """
    with jax.enable_x64(True):
        return _run(out_dir, nfes, solver_names, schedule, n_samples, seed, plot, progress)


def _run(out_dir, nfes, solver_names, schedule, n_samples, seed, plot, progress) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sched, grid_name, t0, t1 = SCHEDULES[schedule]
    gmm = builtin_mixture()
    den = gmm.denoiser(sched)
    mean, cov = np.asarray(gmm.mean), np.asarray(gmm.covariance)
    key = jax.random.key(seed)
    k_noise, k_sampler, k_data = jax.random.split(key, 3)
    x_T = (jax.random.normal(k_noise, (n_samples, gmm.dim)) * sched.sigma(t0)).astype(jnp.float32)
    grid_fn = getattr(grids_lib, grid_name)
    names = list(solver_names or stochastic_names())
    exact = np.asarray(gmm.sample(k_data, n_samples), np.float64)
    floor_tv, _ = weight_error(exact, gmm)
    results: dict[str, dict[str, list]] = {}
    for name, x, used, seconds in timed_runs(names, nfes, den, x_T, (grid_fn, t0, t1),
                                             key=k_sampler, desc="bench --stochastic",
                                             progress=progress):
        row = results.setdefault(name, {"nfe": [], "frechet": [], "weight_tv": [], "seconds": [],
                                        "finite": []})
        finite = bool(np.all(np.isfinite(x)))
        row["nfe"].append(int(used))
        row["frechet"].append(frechet_distance(x, mean, cov) if finite else float("nan"))
        row["weight_tv"].append(weight_error(x, gmm)[0] if finite else float("nan"))
        row["seconds"].append(seconds)
        row["finite"].append(finite)
    report = {"schedule": schedule, "grid": grid_name, "t_start": t0, "t_end": t1,
              "problem": "8-component 2-D Gaussian mixture (jaxdist.bench.builtin_mixture)",
              "n_samples": n_samples, "nfe_budget": list(nfes),
              "metrics": {"frechet": "Frechet distance of fitted Gaussians to the true mixture",
                          "weight_tv": "total variation of component weights (nearest component)"},
              "exact_samples": {"frechet": frechet_distance(exact, mean, cov), "weight_tv": floor_tv},
              "results": results}
    (out / "bench_stochastic.json").write_text(json.dumps(report, indent=2))
    print(format_stochastic_table(report))
    if plot:
        plot_stochastic_report(report, out / "bench_stochastic.png")
        print(f"wrote {out / 'bench_stochastic.json'} and {out / 'bench_stochastic.png'}")
    return report


def format_stochastic_table(report: dict) -> str:
    """Markdown table: ``Frechet / weight TV`` per solver (rows) and NFE budget (columns)."""
    nfes = report["nfe_budget"]
    floor = report["exact_samples"]
    lines = [f"Distribution error of stochastic samplers: Frechet distance / component-weight TV "
             f"({report['schedule']}, {report['grid']} grid, {report['n_samples']} samples)", "",
             "| sampler | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
             "|---|" + "---:|" * len(nfes)]
    for name, row in report["results"].items():
        cells = [f"{f:.2e} / {w:.3f}" + ("" if u == n else f" ({u})")
                 for n, u, f, w in zip(nfes, row["nfe"], row["frechet"], row["weight_tv"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(f"| exact samples (MC floor) | {floor['frechet']:.2e} / {floor['weight_tv']:.3f}"
                 + " |" * len(nfes))
    return "\n".join(lines)


def plot_stochastic_report(report: dict, path: Path) -> None:
    """Frechet distance and weight TV against NFE (log-log), one line per sampler."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for key, ax, label in (("frechet", axes[0], "Frechet distance"),
                           ("weight_tv", axes[1], "component-weight TV")):
        for name, row in report["results"].items():
            ax.loglog(row["nfe"], np.maximum(row[key], 1e-6), marker="o", label=name)
        ax.axhline(max(report["exact_samples"][key], 1e-6), color="k", ls="--", lw=1,
                   label="exact samples")
        ax.set_xlabel("model evaluations (NFE)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"jaxdist stochastic samplers on a Gaussian mixture ({report['schedule']})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
