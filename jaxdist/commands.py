"""The ``jaxdist train``, ``jaxdist sample`` and ``jaxdist demo`` commands, usable from Python.

* :func:`train_run` trains an MLP on a built-in data set with an objective, data-parallel over
  all devices, checkpointing with Orbax and resuming when the folder already holds a run;
* :func:`sample_checkpoint` restores a run (EMA parameters by default) and samples it with any
  registered solver;
* :func:`quality` measures samples against held-out data (sliced Wasserstein, MMD, with the
  data-against-data floor);
* :func:`run_demo` does all three on a 2-D data set and writes the table and plots.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

from . import grids as grids_lib
from . import parallel
from .checkpoint import Checkpointer, CheckpointError
from .data import DATASETS, Dataset, get_dataset
from .metrics import mmd_rbf, sliced_wasserstein
from .sample import sample
from .schedules import EDM, RectifiedFlow, Schedule
from .train import TrainState, fit, init_train_state

__all__ = ["TRAIN_OBJECTIVES", "DEFAULTS", "OBJECTIVE_DEFAULTS", "train_run", "sample_checkpoint",
           "sample_run", "make_grid", "quality", "save_samples", "draw_samples", "run_demo"]

TRAIN_OBJECTIVES = ("dsm", "edm", "fm", "ot-fm", "ict")

#: settings of a run (saved as the checkpoint's config; the ``_MODEL_KEYS`` must match on resume)
DEFAULTS: dict[str, Any] = {"batch_size": 256, "lr": 1e-3, "hidden": 256, "depth": 3,
                            "ema_decay": 0.999, "grad_clip": 1.0, "seed": 0, "prediction": None}
#: settings that differ by objective (explicit settings win). ``dsm`` trains a v-prediction
#: network: with eps-prediction the same MLP's PF-ODE diverged on digits (docs/training.md).
OBJECTIVE_DEFAULTS: dict[str, dict[str, Any]] = {"ict": {"lr": 5e-4}, "dsm": {"prediction": "v"}}
DSM_PREDICTIONS = ("eps", "x0", "v")
#: iCT needs a smooth time embedding (the consistency function must change little between
#: adjacent noise levels), the data's own sigma_data and a lower learning rate; with the MLP's
#: default embedding, sigma_data = 0.5 and lr 2e-3 the samples collapsed (docs/training.md).
ICT_TIME_MAX_FREQ = 1.0
_MODEL_KEYS = ("data", "objective", "hidden", "depth", "batch_size", "lr", "ema_decay",
               "grad_clip", "seed", "dim", "prediction")


def _build(config: dict) -> tuple[Dataset, Any, Any, Any]:
    """``(dataset, apply_fn, params, objective)`` for a run config."""
    from flax import nnx

    from .models import MLP, as_apply_fn
    from .objectives import make_objective

    dataset = get_dataset(config["data"])
    ict = config["objective"] == "ict"
    smooth = {"time_max_freq": ICT_TIME_MAX_FREQ} if ict else {}
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


def train_run(checkpoint_dir: str | Path, *, data: str = "two-moons", objective: str = "fm",
              steps: int = 2000, save_every: int | None = None, max_to_keep: int = 3,
              progress: bool = True, log_every: int = 50, **settings) -> tuple[TrainState, list]:
    """Trains (or resumes) a run in ``checkpoint_dir``; returns the final state and the history.

    ``settings`` override :data:`DEFAULTS` and :data:`OBJECTIVE_DEFAULTS` (``batch_size``,
    ``lr``, ``hidden``, ``depth``, ``ema_decay``, ``grad_clip``, ``seed``, and ``prediction``
    for ``dsm``: ``"eps"``, ``"x0"`` or ``"v"``). A folder that already holds checkpoints
    resumes from the newest one; its saved settings must match (else :class:`CheckpointError`).
    """
    if objective not in TRAIN_OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; use one of {TRAIN_OBJECTIVES}.")
    if data not in DATASETS:
        raise ValueError(f"unknown data set {data!r}; use one of {tuple(DATASETS)}.")
    if steps < 1:
        raise ValueError(f"steps={steps} must be positive.")
    unknown = set(settings) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; known: {sorted(DEFAULTS)}.")
    config = {**DEFAULTS, **OBJECTIVE_DEFAULTS.get(objective, {}), **settings, "data": data,
              "objective": objective, "total_steps": steps}
    if objective == "dsm" and config["prediction"] not in DSM_PREDICTIONS:
        raise ValueError(f"prediction={config['prediction']!r} must be one of {DSM_PREDICTIONS}.")
    if objective != "dsm" and config["prediction"] is not None:
        raise ValueError(f"prediction applies to objective 'dsm' only (got objective "
                         f"{objective!r}); drop --prediction.")
    save_every = save_every or max(1, steps // 4)
    ckpt = Checkpointer(checkpoint_dir, save_every=save_every, max_to_keep=max_to_keep)
    try:
        if ckpt.latest_step() is not None:  # resume: keep the saved run's settings
            saved = ckpt.restore_config()
            config["total_steps"] = saved.get("total_steps", steps)
        dataset, _, params, obj = _build(config)
        config["dim"] = dataset.dim
        mesh = _mesh_for(config["batch_size"])
        tx = optax.adam(config["lr"])
        state = parallel.replicate(init_train_state(params, tx, jax.random.key(config["seed"])),
                                   mesh)
        if ckpt.latest_step() is not None:
            state, _ = ckpt.restore(state, expected_config={k: config[k] for k in _MODEL_KEYS})
            print(f"resuming {ckpt.directory} from step {int(state.step)}")
        step_fn = parallel.sharded_train_step(obj.loss, tx, mesh, config["ema_decay"],
                                              config["grad_clip"])
        draw = jax.jit(lambda k: dataset.sample(k, config["batch_size"]))
        data_key = jax.random.fold_in(jax.random.key(config["seed"]), 2**31 - 1)
        rows = parallel.process_rows(config["batch_size"])

        def batch_fn(step: int) -> dict:
            x = np.asarray(draw(jax.random.fold_in(data_key, step)))[rows]
            return parallel.shard_batch({"x": x}, mesh)

        state, history = fit(state, step_fn, batch_fn, steps, checkpointer=ckpt, config=config,
                             log_every=log_every, progress=progress)
    finally:
        ckpt.close()
    return state, history


def make_grid(schedule: Schedule, n_steps: int) -> jax.Array:
    """The default sampling grid of a schedule: uniform in ``t`` for rectified flow (from 0.999),
    Karras rho=7 for EDM, uniform in log-SNR otherwise."""
    if isinstance(schedule, RectifiedFlow):
        return grids_lib.time_uniform(schedule, n_steps, 0.999, 1e-3)
    if isinstance(schedule, EDM):
        return grids_lib.karras(schedule, n_steps)
    return grids_lib.logsnr_uniform(schedule, n_steps)


def _restore_run(checkpoint_dir: str | Path, step: int | None = None):
    with Checkpointer(checkpoint_dir) as ckpt:
        config = ckpt.restore_config(step)
        dataset, apply_fn, params, obj = _build(config)
        tx = optax.adam(config["lr"])
        target = init_train_state(params, tx, jax.random.key(0))
        state, _ = ckpt.restore(target, step)
    return config, dataset, apply_fn, obj, state


def sample_checkpoint(checkpoint_dir: str | Path, *, solver: str = "dpm++2m", nfe: int = 10,
                      num: int = 1000, seed: int = 0, use_ema: bool = True,
                      step: int | None = None) -> tuple[np.ndarray, dict]:
    """Samples ``num`` points from the run in ``checkpoint_dir`` with ``solver`` at ``nfe``.

    ``solver="consistency"`` uses multistep consistency sampling (``ict`` runs). Returns
    ``(samples [num, dim], info)`` with ``info`` holding the config, step, NFE used and time.
    """
    run = _restore_run(checkpoint_dir, step)
    return sample_run(run, solver=solver, nfe=nfe, num=num, seed=seed, use_ema=use_ema)


def sample_run(run: tuple, *, solver: str, nfe: int, num: int, seed: int = 0,
               use_ema: bool = True) -> tuple[np.ndarray, dict]:
    """Samples a restored run ``(config, dataset, apply_fn, objective, state)``."""
    from .bench import steps_for_nfe
    from .solvers.registry import by_name

    config, dataset, apply_fn, obj, state = run
    params = state.ema_params if use_ema else state.params
    key = jax.random.key(seed)
    tic = time.perf_counter()
    if solver == "consistency":
        if obj.sampler is None:
            raise ValueError(f"solver 'consistency' needs an ict run; this run trained "
                             f"{config['objective']!r}.")
        x = obj.sampler(apply_fn, params, key, (num, dataset.dim), nfe)
        used = nfe
    else:
        algo = by_name(solver)
        den = obj.denoiser(apply_fn, params)
        grid = make_grid(obj.schedule, steps_for_nfe(algo, nfe))
        x_T = jax.random.normal(key, (num, dataset.dim)) * obj.schedule.sigma(grid[0])

        def draw(x):
            return sample(algo, den, x, grid, key=jax.random.fold_in(key, 1))[:2]

        mesh = parallel.data_mesh()
        if num % mesh.size == 0 and mesh.size > 1:
            x, used = parallel.sharded_sample(draw, x_T, mesh)
        else:
            x, used = jax.jit(draw)(x_T)
    x = np.asarray(jax.block_until_ready(x), np.float32)
    info = {"config": config, "step": int(state.step), "solver": solver, "nfe": int(used),
            "seconds": time.perf_counter() - tic, "ema": use_ema}
    return x, info


def quality(x: np.ndarray, dataset: Dataset, n_ref: int = 2000, seed: int = 0,
            floor: bool = True) -> dict:
    """Sliced W2 and MMD^2 of ``x`` to ``n_ref`` held-out points and, with ``floor``, the same
    metrics between a fresh training draw of ``len(x)`` points and the held-out set (the value
    a perfect model would get)."""
    ref = dataset.held_out(min(n_ref, dataset.held_out_size or n_ref))
    key = jax.random.key(seed)

    def both(a):
        return {"swd": float(sliced_wasserstein(key, a, ref)), "mmd": float(mmd_rbf(a, ref))}

    out = {"model": both(x)}
    if floor:
        out["floor"] = both(np.asarray(dataset.sample(jax.random.fold_in(key, 7), len(x))))
    return out


def save_samples(x: np.ndarray, out: str | Path, dataset: Dataset, info: dict | None = None,
                 title: str = "") -> tuple[Path, Path]:
    """Writes ``out`` (``.npz`` with ``samples`` and JSON ``info``) and a PNG beside it: a
    scatter plot for 2-D data, an image grid for digits."""
    out = Path(out)
    if out.suffix != ".npz":
        out = out.with_suffix(".npz")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, samples=x, info=np.array(json.dumps(info or {})))
    png = out.with_suffix(".png")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    draw_samples(ax, x, dataset, title)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return out, png


def draw_samples(ax, x: np.ndarray, dataset: Dataset, title: str = "") -> None:
    """Draws samples on a matplotlib axis: a scatter plot for 2-D data, an image grid (up to
    10x10, grey levels clipped to [-1, 1]) for image data sets."""
    if dataset.image_shape is not None:
        h, w = dataset.image_shape
        k = int(np.ceil(np.sqrt(min(len(x), 100))))
        canvas = np.ones((k * (h + 1), k * (w + 1)))
        for i, img in enumerate(x[: k * k]):
            r, c = divmod(i, k)
            canvas[r * (h + 1): r * (h + 1) + h, c * (w + 1): c * (w + 1) + w] = \
                (np.clip(img.reshape(h, w), -1, 1) + 1) / 2
        ax.imshow(canvas, cmap="gray_r", vmin=0, vmax=1)
        ax.axis("off")
    else:
        ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.5)
        ax.set_xlim(-3.5, 3.5)
        ax.set_ylim(-3.5, 3.5)
        ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)


def format_quality_table(rows: list[dict]) -> str:
    """Markdown table of ``{"label", "nfe", "swd", "mmd", "floor_swd", "floor_mmd"}`` rows."""
    lines = ["| samples | NFE | sliced W2 | MMD^2 | floor sliced W2 | floor MMD^2 |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['nfe']} | {r['swd']:.4f} | {r['mmd']:.2e} | "
                     f"{r['floor_swd']:.4f} | {r['floor_mmd']:.2e} |")
    return "\n".join(lines)


def run_demo(out_dir: str | Path = "out/demo", *, data: str = "checkerboard", steps: int = 3000,
             solvers: tuple[str, ...] = ("ddim", "dpm++2m", "dpm++3m"), nfes: tuple[int, ...] = (5, 10, 20),
             num: int = 2000, seed: int = 0, progress: bool = True) -> dict:
    """Trains a flow-matching MLP on ``data`` with checkpoints (resuming if ``out_dir`` has
    them), samples it with ``solvers`` at ``nfes``, prints the quality table, writes plots."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tic = time.perf_counter()
    state, history = train_run(out / "checkpoints", data=data, objective="fm", steps=steps,
                               save_every=max(1, steps // 3), progress=progress, batch_size=256,
                               lr=2e-3, hidden=128, depth=3, ema_decay=0.995, seed=seed)
    train_s = time.perf_counter() - tic
    tic = time.perf_counter()
    run = _restore_run(out / "checkpoints")  # sample what was saved, not what is in memory
    dataset = run[1]
    rows, panels = [], []
    floor = quality(np.asarray(dataset.sample(jax.random.key(seed + 1), num)), dataset,
                    seed=seed, floor=False)["model"]
    for name in solvers:
        for nfe in nfes:
            x, info = sample_run(run, solver=name, nfe=nfe, num=num, seed=seed)
            q = quality(x, dataset, seed=seed, floor=False)["model"]
            rows.append({"label": name, "nfe": info["nfe"], **q,
                         "floor_swd": floor["swd"], "floor_mmd": floor["mmd"]})
            if nfe == max(nfes):
                panels.append((f"{name}, NFE {info['nfe']}", x))
    sample_s = time.perf_counter() - tic
    table = format_quality_table(rows)
    print(f"\nflow matching on {data}: {steps} steps in {train_s:.0f} s (checkpoints in "
          f"{out / 'checkpoints'}); sampling and metrics {sample_s:.0f} s\n")
    print(table)
    report = {"data": data, "objective": "fm", "steps": steps, "train_seconds": train_s,
              "sample_seconds": sample_s,
              "history": history, "rows": rows}
    (out / "demo.json").write_text(json.dumps(report, indent=2))
    (out / "quality.md").write_text(table + "\n")
    _demo_plots(out, dataset, panels, history, num)
    print(f"wrote {out / 'demo.json'}, {out / 'quality.md'}, {out / 'samples.png'} and "
          f"{out / 'loss.png'}")
    return report


def _demo_plots(out: Path, dataset: Dataset, panels: list, history: list, num: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("held-out data", dataset.held_out(num))] + panels
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4))
    for ax, (title, x) in zip(np.atleast_1d(axes), panels):
        draw_samples(ax, x, dataset, title)
    fig.tight_layout()
    fig.savefig(out / "samples.png", dpi=110)
    plt.close(fig)
    if history:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot([h["step"] for h in history], [h["loss"] for h in history])
        ax.set_xlabel("step")
        ax.set_ylabel("flow-matching loss")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "loss.png", dpi=110)
        plt.close(fig)


# ----------------------------------------------------------------------------- CLI entry points
def cli_train(args) -> int:
    """``jaxdist train``."""
    settings = {k: getattr(args, k) for k in DEFAULTS if getattr(args, k, None) is not None}
    try:
        _, history = train_run(args.checkpoint_dir, data=args.data, objective=args.objective,
                               steps=args.steps, save_every=args.save_every,
                               progress=not args.quiet, **settings)
    except (CheckpointError, ValueError) as err:  # bad settings or checkpoints: say which
        print(f"error: {err}")
        return 1
    if history:
        last = history[-1]
        print(f"step {last['step']}: loss {last['loss']:.4f} ({last['steps_per_s']:.0f} steps/s); "
              f"checkpoints in {Path(args.checkpoint_dir).resolve()}")
    return 0


def cli_sample(args) -> int:
    """``jaxdist sample``."""
    try:
        x, info = sample_checkpoint(args.checkpoint_dir, solver=args.solver, nfe=args.nfe,
                                    num=args.num, seed=args.seed, use_ema=not args.no_ema)
    except CheckpointError as err:
        print(f"error: {err}")
        return 1
    dataset = get_dataset(info["config"]["data"])
    npz, png = save_samples(x, args.out, dataset, info,
                            title=f"{info['config']['objective']} on {dataset.name}: "
                                  f"{args.solver}, NFE {info['nfe']}")
    q = quality(x, dataset, seed=args.seed)
    print(f"{len(x)} samples from step {info['step']} with {args.solver} (NFE {info['nfe']}): "
          f"sliced W2 {q['model']['swd']:.4f} (data floor {q['floor']['swd']:.4f}), "
          f"MMD^2 {q['model']['mmd']:.2e} (floor {q['floor']['mmd']:.2e})")
    print(f"wrote {npz} and {png}")
    return 0


def cli_demo(args) -> int:
    """``jaxdist demo``."""
    run_demo(args.out, data=args.data, steps=args.steps, seed=args.seed,
             progress=not args.quiet)
    return 0


def add_parsers(sub) -> None:
    """Adds the ``train``, ``sample`` and ``demo`` subcommands to the CLI's subparsers."""
    from .solvers.registry import SOLVERS

    train = sub.add_parser(
        "train", help="train a model on a built-in data set (resumes from --checkpoint-dir)",
        description="Trains an MLP with an objective on a built-in data set, data-parallel over "
                    "all devices, with a progress bar and Orbax checkpoints. If --checkpoint-dir "
                    "already holds a run, training resumes from its newest checkpoint.")
    train.add_argument("--data", choices=list(DATASETS), default="two-moons",
                       help="built-in data set (default: two-moons)")
    train.add_argument("--objective", choices=list(TRAIN_OBJECTIVES), default="fm",
                       help="training objective (default: fm)")
    train.add_argument("--steps", type=int, default=2000, help="total steps (default: 2000)")
    train.add_argument("--checkpoint-dir", required=True, help="folder of the run's checkpoints")
    train.add_argument("--seed", type=int, default=None, help="random seed (default: 0)")
    train.add_argument("--save-every", type=int, default=None,
                       help="steps between checkpoints (default: steps / 4)")
    for name in ("batch_size", "hidden", "depth"):
        train.add_argument(f"--{name.replace('_', '-')}", dest=name, type=int, default=None,
                           help=f"default: {DEFAULTS[name]}")
    for name in ("lr", "ema_decay", "grad_clip"):
        special = "".join(f", {v[name]} for {obj}" for obj, v in OBJECTIVE_DEFAULTS.items()
                          if name in v)
        train.add_argument(f"--{name.replace('_', '-')}", dest=name, type=float, default=None,
                           help=f"default: {DEFAULTS[name]}{special}")
    train.add_argument("--prediction", choices=DSM_PREDICTIONS, default=None,
                       help="what the network predicts in dsm runs (default: v)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    smp = sub.add_parser(
        "sample", help="sample a trained checkpoint with any solver",
        description="Restores the newest checkpoint of a run (EMA parameters) and samples it; "
                    "writes FILE.npz and FILE.png (scatter for 2-D data, image grid for digits).")
    smp.add_argument("--checkpoint-dir", required=True, help="folder of a `jaxdist train` run")
    smp.add_argument("--solver", default="dpm++2m",
                     help=f"one of {', '.join(sorted(SOLVERS))}, or 'consistency' for ict runs "
                          "(default: dpm++2m)")
    smp.add_argument("--nfe", type=int, default=10, help="model evaluations (default: 10)")
    smp.add_argument("--num", type=int, default=1000, help="number of samples (default: 1000)")
    smp.add_argument("--out", default="samples.npz", help="output .npz (PNG written beside it)")
    smp.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    smp.add_argument("--no-ema", action="store_true", help="use the raw, not the EMA, parameters")

    demo = sub.add_parser(
        "demo", help="train flow matching for ~1 minute, sample with 3 solvers, report quality",
        description="Trains a flow-matching MLP on a 2-D data set with checkpoints, samples it "
                    "with DDIM, DPM-Solver++(2M) and (3M), prints sliced-Wasserstein and MMD "
                    "against held-out data, and writes plots to --out.")
    demo.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    demo.add_argument("--data", choices=["two-moons", "checkerboard", "gmm"],
                      default="checkerboard", help="data set (default: checkerboard)")
    demo.add_argument("--steps", type=int, default=3000, help="training steps (default: 3000)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")


#: subcommand name -> implementation taking the parsed arguments
COMMANDS = {"train": cli_train, "sample": cli_sample, "demo": cli_demo}
