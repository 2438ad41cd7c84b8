"""``jaxdist bench``: every solver against NFE on the built-in Gaussian mixture.

* :func:`run_bench` (ODE solvers): the sample from the same noise is compared with the reference
  solution of the probability-flow ODE (an adaptive float64 solve); the RMS error is reported.
* :func:`run_stochastic_bench` (stochastic samplers, which do not follow the ODE path): the
  distribution of the samples is scored, with the Frechet distance
  (:func:`jaxdist.metrics.gaussian_frechet`) of the Gaussian fitted to them against the true
  mixture's mean and covariance, and the total variation of the component weights
  (:func:`weight_error`); the row ``exact samples`` is the Monte Carlo floor.

Both write a Markdown table, a JSON report and a plot, and run the solvers in float32 with the
reference and the metrics in float64. The problem is :func:`jaxdist.testing.builtin_mixture`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .. import schedules
from ..metrics import fit_gaussian, gaussian_frechet
from ..sample import sample
from ..testing import GaussianMixture, builtin_mixture
from . import settings
from .nfe import run_within_budget
from .plots import plot_bench, plot_stochastic
from .options import solver_by_name
from .tables import bench_table, stochastic_table
from .time_grids import build_grid, default_grid, time_range

__all__ = ["SCHEDULES", "run_bench", "run_stochastic_bench", "timed_runs", "weight_error",
           "ode_names", "stochastic_names", "family"]

PROBLEM = "8-component 2-D Gaussian mixture (jaxdist.testing.builtin_mixture)"


#: ``--schedule`` name (:data:`settings.BENCH_SCHEDULES`) -> schedule; the grids and time
#: ranges are :mod:`jaxdist.cli.time_grids`'
SCHEDULES = {"vp": schedules.VPLinear(), "edm": schedules.EDM(), "rf": schedules.RectifiedFlow()}


def family(solver) -> str:
    """A solver's family: the module of ``jaxdist.solvers`` that defines it (``bench.png`` has
    one panel per family)."""
    return type(solver).__module__.rsplit(".", 1)[-1]


def ode_names() -> list[str]:
    """Registered solver names whose solver is deterministic."""
    from ..solvers.registry import SOLVERS

    return [n for n in SOLVERS if not solver_by_name(n).stochastic]


def stochastic_names() -> list[str]:
    """Registered solver names whose solver is stochastic."""
    from ..solvers.registry import SOLVERS

    return [n for n in SOLVERS if solver_by_name(n).stochastic]


def timed_runs(names: Sequence[str], nfes: Sequence[int], den, x_T: jax.Array, grid: str, *,
               key: jax.Array | None = None, desc: str = "bench",
               progress: bool = True) -> Iterator[tuple[str, object, np.ndarray, int, float]]:
    """Samples ``x_T`` with every solver in ``names`` at every budget in ``nfes`` on ``grid``
    (a ``--grid`` name), with a progress bar over the jobs; yields ``(name, solver,
    x float64 [N, D], nfe_used, seconds)``, the time including compilation."""
    from tqdm.auto import tqdm

    solvers = {name: solver_by_name(name) for name in names}  # unknown names fail first
    build_grid(grid, den.schedule, 1)  # and grids that do not fit the schedule
    bar = tqdm([(name, nfe) for name in names for nfe in nfes], desc=desc, disable=not progress,
               leave=False)
    for name, nfe in bar:
        bar.set_postfix_str(f"{name} @ NFE {nfe}")
        solver = solvers[name]

        def run(n_steps: int, solver=solver) -> tuple[tuple[np.ndarray, float], int]:
            times = build_grid(grid, den.schedule, n_steps).astype(jnp.float32)
            tic = time.perf_counter()
            x, used = jax.jit(lambda x, k: sample(solver, den, x, times, key=k)[:2])(x_T, key)
            x = np.asarray(jax.block_until_ready(x), dtype=np.float64)
            return (x, time.perf_counter() - tic), int(used)

        (x, seconds), used = run_within_budget(solver, nfe, run)
        yield name, solver, x, used, seconds


def _problem(schedule: str, grid: str | None, n_samples: int, key: jax.Array):
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; use one of {tuple(SCHEDULES)}.")
    if n_samples < 2:
        raise ValueError(f"n_samples={n_samples} must be at least 2.")
    sched = SCHEDULES[schedule]
    gmm = builtin_mixture()
    t0, t1 = time_range(sched)
    x_T = (jax.random.normal(key, (n_samples, gmm.dim)) * sched.sigma(t0)).astype(jnp.float32)
    return sched, grid or default_grid(sched), gmm, x_T, (t0, t1)


def _write(out: Path, name: str, report: dict, table: str, plot, plot_it: bool) -> None:
    (out / f"{name}.json").write_text(json.dumps(report, indent=2))
    print(table)
    if plot_it:
        plot(report, out / f"{name}.png")
        print(f"wrote {out / f'{name}.json'} and {out / f'{name}.png'}")
    else:
        print(f"wrote {out / f'{name}.json'}")


def run_bench(out_dir: str | Path = "out/bench", *, nfes: Sequence[int] = settings.BENCH_NFES,
              solver_names: Sequence[str] | None = None, schedule: str = "vp",
              grid: str | None = None, n_samples: int = 512, seed: int = 0, plot: bool = True,
              progress: bool = True) -> dict:
    """Runs the ODE benchmark, prints the table and writes ``bench.json`` and ``bench.png``.

    ``grid``: a ``--grid`` name (default: the schedule's usual grid).
    """
    with jax.enable_x64(True):
        out = Path(out_dir)
        sched, grid, gmm, x_T, (t0, t1) = _problem(schedule, grid, n_samples, jax.random.key(seed))
        names = list(solver_names or ode_names())
        runs = timed_runs(names, nfes, gmm.denoiser(sched), x_T, grid, desc="bench",
                          progress=progress)
        first = next(runs, None)  # bad names and grids fail before the reference solve
        out.mkdir(parents=True, exist_ok=True)
        reference = np.asarray(gmm.ode_solution(sched, x_T.astype(jnp.float64), t0, t1))
        results: dict[str, dict] = {}
        for name, solver, x, used, seconds in ([first] if first else []) + list(runs):
            err = float(np.sqrt(np.mean(np.sum((x - reference) ** 2, axis=-1))))
            row = results.setdefault(name, {"family": family(solver), "nfe": [], "error": [],
                                            "seconds": []})
            row["nfe"].append(int(used))
            row["error"].append(err)
            row["seconds"].append(seconds)
        report = {"schedule": schedule, "grid": grid, "t_start": t0, "t_end": t1,
                  "problem": PROBLEM, "n_samples": n_samples,
                  "metric": "RMS distance to the reference ODE solution",
                  "nfe_budget": list(nfes), "results": results}
        _write(out, "bench", report, bench_table(report), plot_bench, plot)
    return report


def weight_error(x: np.ndarray, mixture: GaussianMixture) -> tuple[float, np.ndarray]:
    """``(total variation, fractions [K])`` of the component weights, ``1/2 sum_k |f_k - pi_k|``,
    each sample assigned to ``argmax_k pi_k N(x; mu_k, diag(s_k^2))``."""
    mu, var, w = (np.asarray(a, np.float64) for a in (mixture.means, mixture.variances,
                                                     mixture.weights))
    logp = (np.log(w) - 0.5 * np.sum((x[:, None] - mu) ** 2 / var + np.log(var), -1))
    frac = np.bincount(np.argmax(logp, -1), minlength=w.shape[0]) / x.shape[0]
    return float(0.5 * np.abs(frac - w).sum()), frac


def run_stochastic_bench(out_dir: str | Path = "out/bench", *,
                         nfes: Sequence[int] = settings.STOCHASTIC_NFES,
                         solver_names: Sequence[str] | None = None, schedule: str = "vp",
                         grid: str | None = None, n_samples: int = 20000, seed: int = 0,
                         plot: bool = True, progress: bool = True) -> dict:
    """Runs the stochastic benchmark, prints the table and writes ``bench_stochastic.json`` and
    ``bench_stochastic.png`` in ``out_dir``."""
    with jax.enable_x64(True):
        out = Path(out_dir)
        k_noise, k_sampler, k_data = jax.random.split(jax.random.key(seed), 3)
        sched, grid, gmm, x_T, (t0, t1) = _problem(schedule, grid, n_samples, k_noise)
        mean, cov = np.asarray(gmm.mean), np.asarray(gmm.covariance)
        names = list(solver_names or stochastic_names())
        exact = np.asarray(gmm.sample(k_data, n_samples), np.float64)
        results: dict[str, dict] = {}
        for name, solver, x, used, seconds in timed_runs(names, nfes, gmm.denoiser(sched), x_T,
                                                         grid, key=k_sampler,
                                                         desc="bench --stochastic",
                                                         progress=progress):
            row = results.setdefault(name, {"family": family(solver), "nfe": [], "frechet": [],
                                            "weight_tv": [], "seconds": [], "finite": []})
            finite = bool(np.all(np.isfinite(x)))
            row["nfe"].append(int(used))
            row["frechet"].append(gaussian_frechet(*fit_gaussian(x), mean, cov)
                                  if finite else float("nan"))
            row["weight_tv"].append(weight_error(x, gmm)[0] if finite else float("nan"))
            row["seconds"].append(seconds)
            row["finite"].append(finite)
        out.mkdir(parents=True, exist_ok=True)
        report = {"schedule": schedule, "grid": grid, "t_start": t0, "t_end": t1,
                  "problem": PROBLEM, "n_samples": n_samples, "nfe_budget": list(nfes),
                  "metrics": {"frechet": "Frechet distance of fitted Gaussians to the true "
                                         "mixture",
                              "weight_tv": "total variation of component weights (nearest "
                                           "component)"},
                  "exact_samples": {"frechet": gaussian_frechet(*fit_gaussian(exact), mean, cov),
                                    "weight_tv": weight_error(exact, gmm)[0]},
                  "results": results}
        _write(out, "bench_stochastic", report, stochastic_table(report), plot_stochastic, plot)
    return report
