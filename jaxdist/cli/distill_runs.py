"""Runs of few-step generation (the command line's ``jaxdist distill`` and ``jaxdist train
--objective scm|meanflow|shortcut``): distil a teacher run, train few-step models from
scratch, sample the students.

* :func:`distill_run` distils a teacher checkpoint (any ``jaxdist train`` run) into a student:
  ``dmd``, ``dmd2``, ``f-distill``, ``vsd`` (a generator, a fake score and, for ``dmd2`` and
  ``f-distill``, a discriminator head on the fake score's features, trained with the
  two-time-scale rule) or ``scm``, ``meanflow``, ``shortcut``, ``cd`` (one network regressing
  on the teacher's velocity, or CD's teacher ODE step);
* :func:`train_fewstep_run` trains ``scm``, ``meanflow`` or ``shortcut`` from data alone;
* :func:`sample_student` restores any of these runs and samples it at a given NFE.

Every run shows a progress bar, checkpoints the whole state (all networks and optimiser
states) with :class:`jaxdist.checkpoint.Checkpointer` beside a JSON config, resumes from the
newest checkpoint bitwise (keys and data are functions of the step), runs data-parallel on
:func:`jaxdist.parallel.data_mesh` and stops with :class:`jaxdist.train.NonFiniteError` before saving a
non-finite state. Arguments are plain keywords (the command line wraps them).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import numpy as np
import optax

from .. import parallel
from ..checkpoint import Checkpointer, CheckpointError
from ..data import Dataset, get_dataset
from ..denoiser import BaseDenoiser, EDMPreconditioned
from ..objectives import dmd as dmd_lib
from ..objectives.meanflow import make_meanflow_loss, meanflow_sample
from ..objectives.scm import make_scm_loss, scm_init_params, scm_sample
from ..objectives.shortcut import make_shortcut_loss, shortcut_sample
from ..schedules import EDM
from ..train import NonFiniteError, TrainState, fit, init_train_state
from ..distill.state import DistillState, init_distill_state, make_distill_step
from .runs import build_run
from .time_grids import build_grid

Array = jax.Array

__all__ = ["DISTILL_METHODS", "FEWSTEP_METHODS", "DISTILL_DEFAULTS",
           "Teacher", "load_teacher", "distill_run", "train_fewstep_run", "sample_student",
           "restore_student", "mlp_features"]

#: methods of :func:`distill_run` (the first four train a generator, fake score and critic)
DISTILL_METHODS = ("dmd", "dmd2", "f-distill", "vsd", "scm", "meanflow", "shortcut", "cd")
#: methods of :func:`train_fewstep_run` (from data, no teacher)
FEWSTEP_METHODS = ("scm", "meanflow", "shortcut")
_MULTI = ("dmd", "dmd2", "f-distill", "vsd")
_DENOISER_TEACHERS = ("dsm", "edm", "fm", "ot-fm")

#: settings of a run (saved in its config; they must match on resume). ``None`` entries take
#: the method's own default (``objectives.dmd.METHODS`` for the generator losses). Tuned on the
#: 2-D sets (docs/distillation.md): the learning rates of the teacher runs; MeanFlow with
#: uniform times and half the batch at ``r != t`` (with the paper's logit-normal times and 25%
#: the one-step corner ``r = 0, t = 1`` stayed untrained in a few thousand steps).
DISTILL_DEFAULTS: dict[str, Any] = {
    "batch_size": 256, "lr": 1e-3, "fake_lr": 1e-3, "disc_lr": 1e-3, "n_critic": 5,
    "ema_decay": 0.99, "grad_clip": 1.0, "seed": 0, "hidden": 256, "depth": 3,
    "divergence": None, "gan_weight": None, "regression_weight": None, "n_pairs": 4096,
    "pair_steps": 32, "backward_simulation": True, "base_steps": 128, "flow_ratio": 0.5,
    "time_sampler": "uniform", "warmup_steps": None, "time_max_freq": None,
}
_RUN_KEYS = ("method", "student_steps", "teacher_dir", "data", "dim") + tuple(DISTILL_DEFAULTS)


class Teacher(NamedTuple):
    """A restored ``jaxdist train`` run: its config, data set, network and EMA parameters,
    objective and denoiser."""

    config: dict
    dataset: Dataset
    apply_fn: Callable[..., Array]
    params: Any
    objective: Any
    denoiser: BaseDenoiser


def _teacher_build(config: dict):
    return build_run(config)  # (dataset, apply_fn, params, objective), no weights


def load_teacher(teacher_dir: str | Path, step: int | None = None) -> Teacher:
    """Restores a ``jaxdist train`` checkpoint (EMA parameters) as a :class:`Teacher`."""
    path = Path(teacher_dir).expanduser()
    if not path.is_dir():
        raise CheckpointError(f"teacher_dir={str(teacher_dir)!r} is not a folder of a jaxdist "
                              "train run; train one first (jaxdist train --checkpoint-dir ...).")
    with Checkpointer(path, read_only=True) as ckpt:  # a teacher is only read (no lock)
        config = ckpt.restore_config(step)
        if config.get("kind") in ("distill", "fewstep", "discrete"):
            raise CheckpointError(f"{path} holds a {config['kind']} run (method "
                                  f"{config.get('method', config.get('objective'))!r}), not a "
                                  "teacher: pass a continuous "
                                  "jaxdist train checkpoint as teacher_dir.")
        dataset, apply_fn, params, obj = _teacher_build(config)
        tx = optax.adam(config["lr"])
        state, _ = ckpt.restore(init_train_state(params, tx, jax.random.key(0)), step)
    params = state.ema_params
    return Teacher(config, dataset, apply_fn, params, obj, obj.denoiser(apply_fn, params))


def mlp_features(apply_features: Callable[..., Array], schedule, prediction: str
                 ) -> Callable[[Any, Array, Array], Array]:
    """``features(params, x_t, t)``: the hidden features of a score network evaluated as its
    denoiser evaluates it (EDM's raw ``F`` at ``(c_in x / alpha, c_noise)``, any other
    prediction at ``(x, model_time(t))``). ``apply_features`` is e.g.
    ``jd.models.as_apply_fn(mlp, method="features")[0]``."""
    if prediction == "edm":
        pre = EDMPreconditioned(lambda x, c: x, schedule)

        def features(params, x, t):
            _, _, c_in, c_noise = pre.scalings(t)
            a = schedule.alpha(t)
            return apply_features(params, (c_in / a)[:, None] * x, c_noise)
    else:
        def features(params, x, t):
            return apply_features(params, x, schedule.model_time(t))
    return features


# ----------------------------------------------------------------------------- students
class _Student(NamedTuple):
    dataset: Dataset
    state: Any  # a fresh state (the structure checkpoints restore into)
    sample: Callable[[Any, Array, int, int, bool], Array]  # (state, key, num, nfe, use_ema)
    step_fn: Callable | None  # un-jitted step (training only)
    extra_batch: Callable[[int], dict] | None  # step -> extra batch entries (DMD pairs)


def _setting(config: dict, name: str, default: Any) -> Any:
    value = config.get(name)
    return default if value is None else value


def _mlp(dim: int, config: dict, *, second_time: bool = False, smooth: bool = False):
    from flax import nnx

    from ..models import MLP, as_apply_fn

    freq = _setting(config, "time_max_freq", 1.0 if smooth else 64.0)
    module = MLP(dim, hidden=config["hidden"], depth=config["depth"], time_max_freq=freq,
                 second_time=second_time, rngs=nnx.Rngs(config["seed"]))
    return as_apply_fn(module)


def _single_student(config: dict, dataset: Dataset, teacher: Teacher | None, training: bool
                    ) -> _Student:
    method, dim = config["method"], dataset.dim
    den = None if teacher is None else teacher.denoiser
    sd = float(dataset.std)
    if method == "scm":
        apply_fn, model_params = _mlp(dim, config, smooth=True)
        params = scm_init_params(model_params)
        warm = _setting(config, "warmup_steps", max(1, config["total_steps"] // 10))
        loss = make_scm_loss(apply_fn, sigma_data=sd, teacher=den, warmup_steps=warm) \
            if training else None

        def draw(p, key, num, nfe):
            return scm_sample(apply_fn, p["model"], key, (num, dim), nfe, sigma_data=sd)
    elif method == "meanflow":
        apply_fn, params = _mlp(dim, config, second_time=True)
        loss = make_meanflow_loss(apply_fn, teacher=den, flow_ratio=config["flow_ratio"],
                                  time_sampler=config["time_sampler"]) if training else None

        def draw(p, key, num, nfe):
            return meanflow_sample(apply_fn, p, key, (num, dim), nfe)
    elif method == "shortcut":
        apply_fn, params = _mlp(dim, config, second_time=True)
        m = config["base_steps"]
        loss = make_shortcut_loss(apply_fn, teacher=den, base_steps=m) if training else None

        def draw(p, key, num, nfe):
            return shortcut_sample(apply_fn, p, key, (num, dim), nfe, base_steps=m)
    elif method == "cd":
        from ..objectives import make_objective

        apply_fn, params = _mlp(dim, config, smooth=True)
        schedule = EDM(sigma_data=sd)
        obj = make_objective("cd", apply_fn, schedule=schedule, teacher=den) if training else \
            None
        loss = None if obj is None else obj.loss
        from ..objectives.consistency import consistency_sample

        def draw(p, key, num, nfe):
            return consistency_sample(apply_fn, p, key, (num, dim), nfe, schedule=schedule)
    else:  # pragma: no cover - checked by the callers
        raise ValueError(method)
    tx = optax.adam(config["lr"])
    state = init_train_state(params, tx, jax.random.key(config["seed"]))
    step_fn = None
    if training:
        from ..train import make_train_step

        step_fn = make_train_step(loss, tx, config["ema_decay"], config["grad_clip"], jit=False)

    def sample(st: TrainState, key, num, nfe, use_ema):
        return draw(st.ema_params if use_ema else st.params, key, num, nfe)

    return _Student(dataset, state, sample, step_fn, None)


def _multi_student(config: dict, teacher_config: dict, teacher: Teacher | None, training: bool
                   ) -> _Student:
    from ..models import MLP, as_apply_fn, denoiser_from_apply

    dataset, apply_fn, params, obj = (teacher.dataset, teacher.apply_fn, teacher.params,
                                      teacher.objective) if teacher is not None else \
        _teacher_build(teacher_config)
    schedule, prediction = obj.schedule, obj.prediction
    method, dim, k_steps = config["method"], dataset.dim, config["student_steps"]
    grid = build_grid("default", schedule, k_steps)
    generator = dmd_lib.Generator(
        lambda p: denoiser_from_apply(apply_fn, p, schedule, prediction), grid,
        backward_simulation=config["backward_simulation"])
    preset = dict(dmd_lib.METHODS[method])
    for name in ("divergence", "gan_weight", "regression_weight"):
        if config.get(name) is not None:
            preset[name] = config[name]
    needs_disc = preset["gan_weight"] > 0 or dmd_lib.get_divergence(preset["divergence"]).name \
        != "reverse-kl"
    logit_fn, disc_params = None, None
    if needs_disc:
        from flax import nnx

        module = MLP(dim, hidden=teacher_config["hidden"], depth=teacher_config["depth"],
                     rngs=nnx.Rngs(0))
        feats = mlp_features(as_apply_fn(module, method="features")[0], schedule, prediction)
        logit_fn = dmd_lib.feature_discriminator(feats)
        disc_params = dmd_lib.mlp_head_init(jax.random.key(config["seed"] + 1),
                                            teacher_config["hidden"])
    gen_tx, fake_tx = optax.adam(config["lr"]), optax.adam(config["fake_lr"])
    disc_tx = optax.adam(config["disc_lr"]) if needs_disc else None
    state = init_distill_state(params, params, jax.random.key(config["seed"]), gen_tx=gen_tx,
                               fake_tx=fake_tx, disc_params=disc_params, disc_tx=disc_tx)
    step_fn, extra = None, None
    if training:
        def fake(p):
            return denoiser_from_apply(apply_fn, p, schedule, prediction)
        b = config["batch_size"]
        gen_loss = dmd_lib.make_generator_loss(
            generator, teacher.denoiser, fake, sample_shape=(dim,), batch_size=b,
            logit_fn=logit_fn, **preset)
        critic_loss = dmd_lib.make_critic_loss(
            generator, apply_fn, schedule=schedule, prediction=prediction, sample_shape=(dim,),
            batch_size=b, logit_fn=logit_fn)
        step_fn = make_distill_step(gen_loss, critic_loss, gen_tx=gen_tx, fake_tx=fake_tx,
                                    disc_tx=disc_tx, n_critic=config["n_critic"],
                                    ema_decay=config["ema_decay"], grad_clip=config["grad_clip"],
                                    jit=False)
        if preset["regression_weight"] > 0:
            extra = _regression_pairs(teacher, config, (dim,))

    def sample(st: DistillState, key, num, nfe, use_ema):
        return generator.sample(st.gen_ema if use_ema else st.gen_params, key, (num, dim), nfe)

    return _Student(dataset, state, sample, step_fn, extra)


def _regression_pairs(teacher: Teacher, config: dict, shape: tuple) -> Callable[[int], dict]:
    """DMD's (noise, teacher ODE output) pairs, generated once (deterministically from the seed)
    with DPM-Solver++(2M); each step draws ``batch_size`` of them by a key of the step."""
    from ..objectives.flow_matching import reflow_pairs
    from ..solvers import DPMSolverPP

    sch = teacher.objective.schedule
    grid = build_grid("default", sch, config["pair_steps"])
    key = jax.random.fold_in(jax.random.key(config["seed"]), 17)
    noise, data = reflow_pairs(DPMSolverPP(order=2), teacher.denoiser, key, config["n_pairs"],
                               grid, shape=shape, batch_size=min(config["n_pairs"], 2048),
                               progress=True)
    noise, data = np.asarray(noise), np.asarray(data)
    pick_key = jax.random.fold_in(jax.random.key(config["seed"]), 19)
    pick = jax.jit(lambda k: jax.random.randint(k, (config["batch_size"],), 0, len(noise)))

    def extra(step: int) -> dict:
        idx = np.asarray(pick(jax.random.fold_in(pick_key, step)))
        return {"noise": noise[idx], "target": data[idx]}

    return extra


def _build_student(config: dict, teacher: Teacher | None, training: bool) -> _Student:
    if config["method"] in _MULTI:
        return _multi_student(config, config["teacher_config"], teacher, training)
    dataset = teacher.dataset if teacher is not None else get_dataset(config["data"])
    return _single_student(config, dataset, teacher, training)


# ----------------------------------------------------------------------------- running
def _check_settings(settings: dict, student_steps: int, steps: int) -> None:
    unknown = set(settings) - set(DISTILL_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; known: "
                         f"{sorted(DISTILL_DEFAULTS)}.")
    if steps < 1:
        raise ValueError(f"steps={steps} must be positive.")
    if not isinstance(student_steps, int) or student_steps < 1:
        raise ValueError(f"student_steps={student_steps} must be a positive integer.")
    n_critic = settings.get("n_critic", DISTILL_DEFAULTS["n_critic"])
    if not isinstance(n_critic, int) or n_critic < 1:
        raise ValueError(f"n_critic={n_critic} must be an integer >= 1 (fake-score updates per "
                         "generator update; DMD2 uses 5).")


def _run(checkpoint_dir, config: dict, teacher: Teacher | None, *, save_every, max_to_keep,
         progress: bool, log_every: int) -> tuple[Any, list]:
    """Builds the student, then (only then) opens the checkpoint folder, restores or starts,
    and trains with ``fit`` (a non-finite loss stops the run before any save)."""
    steps = config["total_steps"]  # the requested total; a resumed run keeps its saved config
    save_every = save_every or max(1, steps // 4)
    log_every = math.gcd(max(1, int(log_every)), save_every)  # every save step is checked
    mesh = _mesh_for(config["batch_size"])
    path = Path(checkpoint_dir).expanduser()
    if path.is_dir():
        with Checkpointer(path) as probe:
            if probe.latest_step() is not None:
                saved = probe.restore_config()
                config["total_steps"] = saved.get("total_steps", steps)
    student = _build_student(config, teacher, training=True)
    state = parallel.replicate(student.state, mesh)
    step_fn = parallel.sharded_step(student.step_fn, mesh)
    dataset = student.dataset
    draw = jax.jit(lambda k: dataset.sample(k, config["batch_size"]))
    data_key = jax.random.fold_in(jax.random.key(config["seed"]), 2**31 - 1)
    rows = parallel.process_rows(config["batch_size"])

    def batch_fn(step: int) -> dict:
        batch = {"x": np.asarray(draw(jax.random.fold_in(data_key, step)))}
        if student.extra_batch is not None:
            batch.update(student.extra_batch(step))
        return parallel.shard_batch({k: v[rows] for k, v in batch.items()}, mesh)

    def check_finite(step: int, metrics: dict) -> None:
        bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
        if bad:
            raise NonFiniteError(
                f"{', '.join(bad)} became non-finite by step {step} of the {config['method']} "
                f"run in {path}; nothing was saved after the last finite checkpoint. Lower the "
                "learning rates (lr, fake_lr) or raise grad_clip's strictness, then resume.", step)

    ckpt = Checkpointer(path, save_every=save_every, max_to_keep=max_to_keep)
    try:
        if ckpt.latest_step() is not None:
            state, _ = ckpt.restore(state, expected_config={k: config.get(k) for k in _RUN_KEYS
                                                            if k in config})
            print(f"resuming {ckpt.directory} from step {int(state.step)}")
        state, history = fit(state, step_fn, batch_fn, steps, checkpointer=ckpt,
                             config=config, log_every=log_every, progress=progress,
                             callbacks=[check_finite])
    finally:
        ckpt.close()
    return state, history


def _mesh_for(batch: int) -> jax.sharding.Mesh:
    mesh = parallel.data_mesh()
    if batch % mesh.size:
        raise ValueError(f"batch_size={batch} must be a multiple of the {mesh.size} devices "
                         f"(the batch is split over them); pick e.g. "
                         f"{mesh.size * max(1, batch // mesh.size)}.")
    return mesh


def distill_run(checkpoint_dir: str | Path, *, teacher_dir: str | Path, method: str,
                student_steps: int = 1, steps: int = 2000, data: str | None = None,
                save_every: int | None = None, max_to_keep: int = 3, progress: bool = True,
                log_every: int = 50, **settings) -> tuple[Any, list]:
    """Distils the teacher run in ``teacher_dir`` into a ``student_steps``-step student.

    Args:
      checkpoint_dir: the student's run folder (resumed when it holds checkpoints).
      teacher_dir: a ``jaxdist train`` checkpoint folder.
      method: one of :data:`DISTILL_METHODS`.
      student_steps: the generator's steps ``K`` (``dmd``-family: its fixed grid is the
        teacher's ``K``-step sampling grid); the other methods sample at any NFE and save it
        only as the default.
      steps: total training steps (generator updates for the ``dmd`` family).
      data: the data set (default: the teacher's); one of another dimension is an error.
      settings: overrides of :data:`DISTILL_DEFAULTS` (``n_critic``, ``lr``, ``fake_lr``,
        ``divergence``, ``gan_weight``, ...).

    Returns:
      ``(state, history)``: a :class:`~jaxdist.distill.DistillState` (``dmd``-family) or a
      :class:`~jaxdist.train.TrainState`, and the logged metrics.
    """
    if method not in DISTILL_METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {DISTILL_METHODS}.")
    _check_settings(settings, student_steps, steps)
    teacher = load_teacher(teacher_dir)
    tcfg = teacher.config
    if data is not None and get_dataset(data).dim != teacher.dataset.dim:
        raise ValueError(f"the teacher in {teacher_dir} was trained on {tcfg['data']!r} (data "
                         f"dimension {teacher.dataset.dim}); data={data!r} has dimension "
                         f"{get_dataset(data).dim}. Distil on data of the teacher's dimension.")
    if method in _MULTI and tcfg["objective"] not in _DENOISER_TEACHERS:
        raise ValueError(f"method {method!r} initialises its generator and fake score from the "
                         f"teacher, which must be a denoiser run ({_DENOISER_TEACHERS}); "
                         f"{teacher_dir} trained {tcfg['objective']!r}.")
    if method in _MULTI:
        div = settings.get("divergence") or dmd_lib.METHODS[method]["divergence"]
        dmd_lib.get_divergence(div)  # a clear error for an unknown name
    config = {**DISTILL_DEFAULTS, **settings, "kind": "distill", "method": method,
              "student_steps": int(student_steps), "total_steps": int(steps),
              "teacher_dir": str(Path(teacher_dir).expanduser().resolve()),
              "teacher_config": tcfg, "data": data or tcfg["data"], "dim": teacher.dataset.dim}
    return _run(checkpoint_dir, config, teacher, save_every=save_every, max_to_keep=max_to_keep,
                progress=progress, log_every=log_every)


def train_fewstep_run(checkpoint_dir: str | Path, *, data: str = "two-moons",
                      method: str = "meanflow", steps: int = 2000, student_steps: int = 1,
                      save_every: int | None = None, max_to_keep: int = 3,
                      progress: bool = True, log_every: int = 50, **settings
                      ) -> tuple[TrainState, list]:
    """Trains an ``scm``, ``meanflow`` or ``shortcut`` model on a built-in data set from scratch
    (the ``train_run`` of few-step models; same checkpointing and resume)."""
    if method not in FEWSTEP_METHODS:
        raise ValueError(f"unknown method {method!r}; train_fewstep_run trains "
                         f"{FEWSTEP_METHODS} (distil the others with distill_run).")
    _check_settings(settings, student_steps, steps)
    dataset = get_dataset(data)
    config = {**DISTILL_DEFAULTS, **settings, "kind": "fewstep", "method": method,
              "student_steps": int(student_steps), "total_steps": int(steps),
              "teacher_dir": None, "data": data, "dim": dataset.dim}
    return _run(checkpoint_dir, config, None, save_every=save_every, max_to_keep=max_to_keep,
                progress=progress, log_every=log_every)


def restore_student(checkpoint_dir: str | Path, step: int | None = None) -> tuple[dict, Any, Any]:
    """``(config, state, student)`` of a :func:`distill_run` / :func:`train_fewstep_run` folder
    (the teacher is not needed)."""
    with Checkpointer(checkpoint_dir, read_only=True) as ckpt:
        config = ckpt.restore_config(step)
        if config.get("kind") not in ("distill", "fewstep"):
            raise CheckpointError(f"{ckpt.directory} is not a distill or few-step run (it has no "
                                  "'kind'); sample jaxdist train runs with sample_checkpoint.")
        student = _build_student(config, None, training=False)
        state, _ = ckpt.restore(student.state, step)
    return config, state, student


def sample_student(checkpoint_dir: str | Path, *, nfe: int | None = None, num: int = 1000,
                   seed: int = 0, use_ema: bool = True, step: int | None = None
                   ) -> tuple[np.ndarray, dict]:
    """``num`` samples ``[num, dim]`` of a student run with its own sampler at ``nfe`` network
    evaluations (default: the run's ``student_steps``), and an info dict (config, step, NFE,
    seconds)."""
    config, state, student = restore_student(checkpoint_dir, step)
    nfe = int(nfe or config["student_steps"])
    tic = time.perf_counter()
    x = student.sample(state, jax.random.key(seed), num, nfe, use_ema)
    x = np.asarray(jax.block_until_ready(x), np.float32)
    info = {"config": config, "step": int(state.step), "solver": config["method"], "nfe": nfe,
            "seconds": time.perf_counter() - tic, "ema": use_ema}
    return x, info
