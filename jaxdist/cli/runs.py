"""Runs of the command line, usable from Python: train, restore, sample, and the demo.

* :func:`train_run` trains an MLP on a built-in data set with an objective, data-parallel over
  all devices, checkpointing with Orbax (the folder is locked while it runs) and resuming when
  the folder already holds a run; a non-finite loss or update stops it (or, with
  ``nonfinite="skip"``, skips that update) and nothing non-finite is ever saved;
* :func:`restore_run` restores a run (read-only: a wrong path creates nothing) and refuses
  checkpoints with non-finite parameters;
* :func:`sample_run` / :func:`sample_checkpoint` sample it with any registered solver and grid;
* :func:`run_demo` trains flow matching, samples with three solvers and writes the report.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import numpy as np
import optax

from .. import parallel
from ..checkpoint import Checkpointer, CheckpointError
from ..data import Dataset, get_dataset
from ..sample import sample
from ..schedules import EDM
from ..train import TrainState, fit, init_train_state
from . import settings
from .nfe import run_within_budget
from .options import CLIError, did_you_mean, solver_by_name
from .time_grids import build_grid

__all__ = ["Run", "build_run", "train_run", "fit_run", "check_values", "restore_finite", "restore_run",
           "sample_run", "sample_checkpoint", "run_demo"]


class Run(NamedTuple):
    """A restored run: its saved ``config``, ``dataset``, ``apply_fn``, ``objective``, ``state``."""

    config: dict
    dataset: Dataset
    apply_fn: Any
    objective: Any
    state: TrainState


def build_run(config: dict) -> tuple[Dataset, Any, Any, Any]:
    """``(dataset, apply_fn, params, objective)`` for a run config."""
    from flax import nnx

    from ..models import MLP, as_apply_fn
    from ..objectives import make_objective

    dataset = get_dataset(config["data"])
    ict = config["objective"] == "ict"
    smooth = {"time_max_freq": settings.ICT_TIME_MAX_FREQ} if ict else {}
    module = MLP(dataset.dim, hidden=config["hidden"], depth=config["depth"], **smooth,
                 rngs=nnx.Rngs(config["seed"]))
    apply_fn, params = as_apply_fn(module)
    options = {"total_steps": int(config["total_steps"])} if ict else {}
    if config["objective"] in ("edm", "ict"):  # EDM preconditioning wants the data's own scale
        options["schedule"] = EDM(sigma_data=dataset.std)
    if config["objective"] == "dsm":
        options["prediction"] = config.get("prediction") or "eps"  # runs saved before: eps
    objective = make_objective(config["objective"], apply_fn, **options)
    return dataset, apply_fn, params, objective


def _mesh_for(batch: int) -> jax.sharding.Mesh:
    mesh = parallel.data_mesh()
    if batch % mesh.size:
        raise ValueError(f"batch_size={batch} must be a multiple of the {mesh.size} devices "
                         "(the batch is split over them); pick e.g. "
                         f"{mesh.size * max(1, batch // mesh.size)}.")
    return mesh


def _check_settings(objective: str, data: str, steps: int, save_every: int | None,
                    settings_: dict) -> None:
    if objective not in settings.TRAIN_OBJECTIVES:
        hint = did_you_mean(objective, settings.TRAIN_OBJECTIVES)
        raise ValueError(f"unknown objective {objective!r}; use one of "
                         f"{settings.TRAIN_OBJECTIVES}{hint}")
    if data not in settings.DATA_NAMES:
        raise ValueError(f"unknown data set {data!r}; use one of {settings.DATA_NAMES}"
                         f"{did_you_mean(data, settings.DATA_NAMES)}")
    check_values(steps, save_every, settings_, settings.DEFAULTS)


def check_values(steps: int, save_every: int | None, settings_: dict, known: dict) -> None:
    """Settings of a run: names among ``known``, positive sizes and rates, an EMA in [0, 1)."""
    unknown = set(settings_) - set(known)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; known: {sorted(known)}.")
    positive = {"steps": steps, "save_every": save_every,
                **{k: settings_.get(k) for k in ("batch_size", "hidden", "depth", "lr")}}
    for name, value in positive.items():
        if value is not None and not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name}={value} must be a positive number.")
    decay = settings_.get("ema_decay")
    if decay is not None and not 0 <= decay < 1:
        raise ValueError(f"ema_decay={decay} must be in [0, 1) (e.g. 0.999).")


def train_run(checkpoint_dir: str | Path, *, data: str = "two-moons", objective: str = "fm",
              steps: int = 2000, save_every: int | None = None, max_to_keep: int = 3,
              progress: bool = True, log_every: int = 50, nonfinite: str = "error",
              **run_settings) -> tuple[TrainState, list]:
    """Trains (or resumes) a run in ``checkpoint_dir``; returns the final state and the history.

    ``run_settings`` override :data:`settings.DEFAULTS` and :data:`settings.OBJECTIVE_DEFAULTS`
    (``batch_size``, ``lr``, ``hidden``, ``depth``, ``ema_decay``, ``grad_clip``, ``seed``, and
    ``prediction`` for ``dsm``: ``"eps"``, ``"x0"`` or ``"v"``). A folder that already holds
    checkpoints resumes from the newest one; its saved settings must match (else
    :class:`CheckpointError`); a run already at ``steps`` returns at once with an empty history.
    ``nonfinite``: ``"error"`` stops at the first non-finite loss or update
    (:class:`jaxdist.train.NonFiniteError` naming the step; nothing after the last finite
    checkpoint is saved), ``"skip"`` drops such updates (``jaxdist train --skip-nonfinite``).
    """
    _check_settings(objective, data, steps, save_every, run_settings)
    config = {**settings.DEFAULTS, **settings.OBJECTIVE_DEFAULTS.get(objective, {}),
              **run_settings, "data": data, "objective": objective, "total_steps": steps}
    if objective == "dsm" and config["prediction"] not in settings.DSM_PREDICTIONS:
        raise ValueError(f"prediction={config['prediction']!r} must be one of "
                         f"{settings.DSM_PREDICTIONS}.")
    if objective != "dsm" and config["prediction"] is not None:
        raise ValueError(f"prediction applies to objective 'dsm' only (got objective "
                         f"{objective!r}); drop --prediction.")

    def build(config: dict):
        dataset, _, params, obj = build_run(config)
        config["dim"] = dataset.dim
        return params, obj.loss, optax.adam(config["lr"]), \
            lambda k: {"x": dataset.sample(k, config["batch_size"])}

    return fit_run(checkpoint_dir, config, build, settings.MODEL_KEYS, steps=steps,
                   save_every=save_every, max_to_keep=max_to_keep, progress=progress,
                   log_every=log_every, nonfinite=nonfinite)


def fit_run(checkpoint_dir: str | Path, config: dict, build: Callable, model_keys: tuple, *,
            steps: int, save_every: int | None = None, max_to_keep: int = 3,
            progress: bool = True, log_every: int = 50, nonfinite: str = "error"
            ) -> tuple[TrainState, list]:
    """The training loop of :func:`train_run` and of discrete runs
    (:func:`jaxdist.cli.discrete_runs.train_discrete_run`): data parallel on
    :func:`jaxdist.parallel.data_mesh`, Orbax checkpoints every ``save_every`` steps in a locked
    folder, resume from the newest one (the saved ``total_steps`` is kept and the ``model_keys``
    of ``config`` must match the saved ones), bitwise (keys and batches are functions of the
    step).

    ``build(config) -> (params, loss, tx, draw)``: the initial parameters, the loss of
    :func:`jaxdist.train.make_train_step`, the optax optimiser and ``draw(key) -> batch`` (a dict
    of ``[batch_size, ...]`` arrays); it may add entries to ``config`` (saved with the run).
    """
    mesh = _mesh_for(config["batch_size"])  # before touching the folder
    save_every = save_every or max(1, steps // 4)
    with Checkpointer(checkpoint_dir, save_every=save_every, max_to_keep=max_to_keep) as ckpt:
        if ckpt.latest_step() is not None:  # resume: keep the saved run's settings
            saved = ckpt.restore_config()
            config["total_steps"] = saved.get("total_steps", steps)
        params, loss, tx, draw_batch = build(config)
        state = parallel.replicate(init_train_state(params, tx, jax.random.key(config["seed"])),
                                   mesh)
        if ckpt.latest_step() is not None:
            state, _ = ckpt.restore(state, expected_config={k: config.get(k) for k in model_keys})
            if int(state.step) >= steps:
                return state, []  # complete: nothing to do
            print(f"resuming {ckpt.directory} from step {int(state.step)}")
        step_fn = parallel.sharded_train_step(loss, tx, mesh, config["ema_decay"],
                                              config["grad_clip"], nonfinite=nonfinite)
        draw = jax.jit(draw_batch)
        data_key = jax.random.fold_in(jax.random.key(config["seed"]), 2**31 - 1)
        rows = parallel.process_rows(config["batch_size"])

        def batch_fn(step: int) -> dict:
            batch = draw(jax.random.fold_in(data_key, step))
            return parallel.shard_batch({k: np.asarray(v)[rows] for k, v in batch.items()}, mesh)

        return fit(state, step_fn, batch_fn, steps, checkpointer=ckpt, config=config,
                   log_every=log_every, progress=progress)


def restore_run(checkpoint_dir: str | Path, step: int | None = None) -> Run:
    """The run saved in ``checkpoint_dir`` at ``step`` (default: the newest), read-only.

    Raises :class:`CheckpointError` for a missing folder (nothing is created), a damaged step
    (naming the newest step that restores) or non-finite parameters (a diverged run).
    """
    with Checkpointer(checkpoint_dir, read_only=True) as ckpt:
        config = ckpt.restore_config(step)
        dataset, apply_fn, params, obj = build_run(config)
        state = restore_finite(ckpt, init_train_state(params, optax.adam(config["lr"]),
                                                      jax.random.key(0)), step)
    return Run(config, dataset, apply_fn, obj, state)


def restore_finite(ckpt: Checkpointer, target: TrainState, step: int | None) -> TrainState:
    """The state at ``step`` (default: the newest) restored into ``target``'s structure; raises
    :class:`CheckpointError` naming the newest finite step if its parameters are not finite."""
    state, _ = ckpt.restore(target, step)
    if not _finite(state):
        older = [s for s in ckpt.all_steps() if s < int(state.step)]
        good = next((s for s in reversed(older) if _finite(ckpt.restore(target, s)[0])), None)
        hint = (f"; the newest finite step is {good}: sample it with --step {good}"
                if good is not None else "; no earlier step is finite either")
        raise CheckpointError(f"step {int(state.step)} in {ckpt.directory} holds non-finite "
                              f"parameters (the run diverged){hint}.")
    return state


def _finite(state: TrainState) -> bool:
    """Whether the parameters and the EMA parameters are all finite."""
    leaves = jax.tree.leaves((state.params, state.ema_params))
    return all(bool(np.all(np.isfinite(np.asarray(a)))) for a in leaves)


def sample_run(run: Run | tuple, *, solver: str, nfe: int, num: int, seed: int = 0,
               use_ema: bool = True, grid: str = "default") -> tuple[np.ndarray, dict]:
    """Samples ``num`` points of a restored run with ``solver`` (a registry name, or
    ``"consistency"`` for ``ict`` runs) in at most ``nfe`` model evaluations on ``grid`` (a
    ``--grid`` name). Returns ``(samples [num, dim], info)``; non-finite samples are an error."""
    config, dataset, apply_fn, obj, state = run
    for name, value in (("nfe", nfe), ("num", num)):
        if int(value) < 1:
            raise ValueError(f"{name}={value} must be a positive integer.")
    params = state.ema_params if use_ema else state.params
    key = jax.random.key(seed)
    tic = time.perf_counter()
    if solver == "consistency":
        if obj.sampler is None:
            raise CLIError(f"solver 'consistency' needs an ict run; this run trained "
                           f"{config['objective']!r}: pick an ODE solver (jaxdist solvers).")
        x = obj.sampler(apply_fn, params, key, (num, dataset.dim), nfe)
        used = nfe
    else:
        algo = solver_by_name(solver)
        den = obj.denoiser(apply_fn, params)
        mesh = parallel.data_mesh()
        if not hasattr(algo, "nfe"):  # adaptive: it picks its own steps, within its tolerances
            from ..sample import sample_adaptive
            from .time_grids import time_range

            t0, t1 = time_range(obj.schedule)
            x_T = jax.random.normal(key, (num, dataset.dim)) * obj.schedule.sigma(t0)
            res, _ = sample_adaptive(algo, den, x_T, t0, t1)
            x, used = np.asarray(res.x, np.float32), int(res.nfe)

        def run(n_steps: int) -> tuple[np.ndarray, int]:
            times = build_grid(grid, obj.schedule, n_steps)
            x_T = jax.random.normal(key, (num, dataset.dim)) * obj.schedule.sigma(times[0])

            def draw(x):
                return sample(algo, den, x, times, key=jax.random.fold_in(key, 1))[:2]

            if num % mesh.size == 0 and mesh.size > 1:
                x, used = parallel.sharded_sample(draw, x_T, mesh)
            else:
                x, used = jax.jit(draw)(x_T)
            return np.asarray(jax.block_until_ready(x), np.float32), int(used)

        if hasattr(algo, "nfe"):
            x, used = run_within_budget(algo, nfe, run)
    x = np.asarray(jax.block_until_ready(x), np.float32)
    bad = int(np.sum(~np.all(np.isfinite(x), axis=1)))
    if bad:
        raise ValueError(f"{bad} of {num} samples are not finite ({solver} at NFE {int(used)}, "
                         f"step {int(state.step)} of the run): try another solver, grid or "
                         "more steps.")
    info = {"config": config, "step": int(state.step), "solver": solver, "grid": grid,
            "nfe": int(used), "seconds": time.perf_counter() - tic, "ema": use_ema}
    return x, info


def sample_checkpoint(checkpoint_dir: str | Path, *, solver: str = "dpm++2m", nfe: int = 10,
                      num: int = 1000, seed: int = 0, use_ema: bool = True,
                      step: int | None = None, grid: str = "default") -> tuple[np.ndarray, dict]:
    """:func:`sample_run` of :func:`restore_run` (the newest step unless ``step``)."""
    return sample_run(restore_run(checkpoint_dir, step), solver=solver, nfe=nfe, num=num,
                      seed=seed, use_ema=use_ema, grid=grid)


def run_demo(out_dir: str | Path = "out/demo", *, data: str = "checkerboard", steps: int = 3000,
             solvers: tuple[str, ...] = settings.DEMO_SOLVERS,
             nfes: tuple[int, ...] = settings.DEMO_NFES, num: int = 2000, seed: int = 0,
             progress: bool = True) -> dict:
    """Trains a flow-matching MLP on ``data`` with checkpoints (resuming if ``out_dir`` has
    them), samples it with ``solvers`` at ``nfes``, prints the quality table, writes plots."""
    from .plots import plot_loss, samples_figure
    from .quality import data_floor, quality
    from .tables import quality_table

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tic = time.perf_counter()
    _, history = train_run(out / "checkpoints", data=data, objective="fm", steps=steps,
                           save_every=max(1, steps // 3), progress=progress, batch_size=256,
                           lr=2e-3, hidden=128, depth=3, ema_decay=0.995, seed=seed)
    train_s = time.perf_counter() - tic
    tic = time.perf_counter()
    run = restore_run(out / "checkpoints")  # sample what was saved, not what is in memory
    dataset = run.dataset
    floor = data_floor(dataset, num, seed)
    rows, panels = [], []
    for name in solvers:
        for nfe in nfes:
            x, info = sample_run(run, solver=name, nfe=nfe, num=num, seed=seed)
            q = quality(x, dataset, seed=seed, floor=False)["model"]
            rows.append({"label": name, "nfe": info["nfe"], **q,
                         "floor_swd": floor["swd"], "floor_mmd": floor["mmd"]})
            if nfe == max(nfes):
                panels.append((f"{name}, NFE {info['nfe']}", x))
    sample_s = time.perf_counter() - tic
    table = quality_table(rows)
    trained = int(run.state.step)
    print(f"\nflow matching on {data}: {trained} steps ({train_s:.0f} s; checkpoints in "
          f"{out / 'checkpoints'}); sampling and metrics {sample_s:.0f} s\n")
    print(table)
    report = {"data": data, "objective": "fm", "steps": trained, "train_seconds": train_s,
              "sample_seconds": sample_s, "history": history, "rows": rows}
    (out / "demo.json").write_text(json.dumps(report, indent=2))
    (out / "quality.md").write_text(table + "\n")
    samples_figure([("held-out data", dataset.held_out(num))] + panels, dataset,
                   out / "samples.png", f"flow matching (fm) on {data}, {trained} training "
                                        f"steps: samples at NFE {max(nfes)}")
    written = [out / "demo.json", out / "quality.md", out / "samples.png"]
    if history:  # a resumed, complete run has no new history
        plot_loss(history, out / "loss.png", f"flow-matching loss on {data} ({trained} steps)",
                  "flow-matching loss")
        written.append(out / "loss.png")
    print("wrote " + ", ".join(str(p) for p in written))
    return report
