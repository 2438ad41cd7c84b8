"""Learning a sampler by gradient through ``jd.sample`` (LD3-style grids, S4S-style solvers).

Both functions draw the same loop: the student ``x = jd.sample(solver, den, x_T, grid(params))``
is pulled towards the teacher's endpoint ``y`` of the same noise,

    loss(params) = mean_b || x_b - y_b ||^2,

with optax Adam (global-norm clipping 1, cosine decay of the rate to a tenth) on a training split
of ``x_T``; the RMS distance on the held-out split (``validation``, a fraction) is recorded each
epoch and the parameters with the lowest one are returned. The grid parameters are those of
:mod:`jaxdist.tune.parametrise` (monotone by construction); :func:`optimise_solver` also learns
the per-step coefficient corrections of :class:`~jaxdist.tune.Corrected`. The default teacher
is a fine solve of the same noise (:func:`reference_solve`).

Soft teacher forcing (LD3, Tong et al. 2025; ``vinhsuhi/LD3`` ``trainer.py``,
``_update_latents``): with ``soft_radius = r > 0`` each training noise ``x_T`` gets a student
input ``x'`` that the student may move within the ball ``||x' - x_T|| <= r ||x_T||``: the loss
is ``mean_b || sample(x'_b) - y_b ||^2`` against the teacher's endpoint of the *original*
``x_T``; after each parameter update every ``x'`` takes a normalised gradient step of length
``r ||x_T|| / 2``, is projected back onto its ball, and keeps the move only where it lowers that
input's loss under the new parameters. A grid with few parameters then matches the teacher up to
a small change of its input instead of exactly. Validation and the returned grid use the
original noise.
"""

from __future__ import annotations

import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..denoiser import BaseDenoiser
from ..grids import karras, logsnr_uniform, time_quadratic, time_uniform, validate_grid
from ..grids.common import describe
from ..sample import check_fixed_grid_solver, sample
from ..solvers.base import Solver
from ..solvers.dpm_solver import DPMSolverPP
from .corrected import Corrected
from .parametrise import GridParams, grid_from_params, learned_times, params_from_grid
from .tuned import Tuned

Array = jax.Array

__all__ = ["optimise_grid", "optimise_solver", "reference_solve", "default_grid", "rms"]


def rms(x: Array, y: Array) -> Array:
    """``sqrt(mean_b ||x_b - y_b||^2)``, the RMS distance of two batches ``[B, ...]``."""
    d = (x - y).reshape(x.shape[0], -1)
    return jnp.sqrt(jnp.mean(jnp.sum(d**2, -1)))


def _start_time(schedule, t_start) -> float:
    t = float(schedule.t_max if t_start is None else t_start)
    if not (schedule.t_min < t <= schedule.t_max * (1 + 1e-7)):
        raise ValueError(f"t_start={t} must be in ({schedule.t_min:g}, {schedule.t_max:g}] of "
                         f"{describe(schedule)}.")
    return t


def default_grid(schedule, n_steps: int, t_start: float, final_zero: bool) -> Array:
    """``logsnr_uniform`` from ``t_start`` to ``t_min`` (``time_uniform`` where the log-SNR at
    ``t_start`` is infinite, e.g. rectified flow at ``t = 1``), then 0 if ``final_zero``."""
    lam = float(schedule.log_snr(jnp.asarray(float(t_start))))
    spacing = logsnr_uniform if math.isfinite(lam) else time_uniform
    return spacing(schedule, n_steps, t_start, schedule.t_min, final_zero=final_zero)


def reference_solve(denoiser: BaseDenoiser, x_T: Array, t_start: float | None = None, *,
                    final_zero: bool = True, n_steps: int = 256) -> Array:
    """The default teacher: third-order DPM-Solver++ (``"dpm++3m-o3"``) on the fine
    :func:`default_grid` of ``n_steps`` steps."""
    schedule = denoiser.schedule
    grid = default_grid(schedule, n_steps, _start_time(schedule, t_start), final_zero)
    solver = DPMSolverPP(order=3, warmup="singlestep", lower_order_final=False)
    return sample(solver, denoiser, x_T, grid.astype(x_T.dtype)).x


def _check_solver(solver: Any) -> None:
    check_fixed_grid_solver(solver, "it has no grid to tune; pass a fixed-grid solver such as "
                                    "jd.solvers.DPMSolverPP().")
    if solver.stochastic:
        raise ValueError(f"{type(solver).__name__} is stochastic: tuning fits the endpoint of the "
                         "probability-flow ODE; tune a deterministic solver.")


def _check_steps(solver: Solver, n_steps: Any, final_zero: bool) -> int:
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)):
        raise TypeError(f"n_steps must be an int, got {n_steps!r}.")
    least = 2 if final_zero else 1
    if n_steps < least:
        why = " (one to t_min, one to t = 0: final_zero=True)" if final_zero else ""
        raise ValueError(f"n_steps={n_steps}: {type(solver).__name__} needs at least {least} "
                         f"step(s) here{why}.")
    return int(n_steps)


def _check_data(x_T: Any, teacher: Any, validation: float) -> tuple[Array, Array | None]:
    x_T = jnp.asarray(x_T)
    if not jnp.issubdtype(x_T.dtype, jnp.floating) or x_T.ndim < 2:
        raise ValueError(f"x_T must be a floating-point batch [B, ...] of starting points, got "
                         f"dtype {x_T.dtype} and shape {x_T.shape}.")
    if not 0.0 <= validation < 1.0:
        raise ValueError(f"validation={validation} must be a fraction in [0, 1).")
    n_val = int(round(validation * x_T.shape[0]))
    if validation > 0 and (n_val < 1 or n_val >= x_T.shape[0]):
        raise ValueError(f"validation={validation} of {x_T.shape[0]} samples leaves no training "
                         "or no validation sample: pass more starting points or validation=0.")
    if teacher is None:
        return x_T, None
    teacher = jnp.asarray(teacher, x_T.dtype)
    if teacher.shape != x_T.shape:
        raise ValueError(f"teacher has shape {teacher.shape} but x_T has shape {x_T.shape}: give "
                         "the teacher's endpoint of every starting point (same shape).")
    if not bool(jnp.all(jnp.isfinite(teacher))):
        raise ValueError("teacher contains non-finite values (nan or inf): check the reference "
                         "solve that produced it.")
    return x_T, teacher


#: the standard spacings ``init="auto"`` tries
AUTO_INIT = {"logsnr": logsnr_uniform, "karras": karras, "time-quadratic": time_quadratic,
             "time-uniform": time_uniform}


def _candidates(schedule, n_steps, t_start, final_zero) -> dict[str, np.ndarray]:
    """The ``AUTO_INIT`` grids from ``t_start`` to ``t_min`` (those defined there)."""
    out = {}
    for name, fn in AUTO_INIT.items():
        try:
            out[name] = fn(schedule, n_steps, t_start, schedule.t_min, final_zero=final_zero)
        except ValueError:  # e.g. log-SNR spacings from an infinite log-SNR
            continue
    return out


def _initial_grid(solver, schedule, init, n_steps, t_start, final_zero, dtype) -> Array:
    if init is None:
        init = default_grid(schedule, n_steps, t_start, final_zero)
    if isinstance(init, str):
        grids = _candidates(schedule, n_steps, t_start, final_zero)
        if init not in grids:
            raise ValueError(f"init={init!r}: use a grid array, 'auto' or one of "
                             f"{sorted(grids)}.")
        init = grids[init]
    init = jnp.asarray(init, dtype)
    validate_grid(schedule, init, "init")
    if init.shape != (n_steps + 1,):
        raise ValueError(f"init has {init.shape[0]} times; an {n_steps}-step grid has "
                         f"{n_steps + 1}.")
    if (float(init[-1]) == 0.0) != final_zero or abs(float(init[0]) - t_start) > 1e-6 * t_start:
        raise ValueError(f"init must start at t_start={t_start} and "
                         f"{'end at 0' if final_zero else 'end above 0'} (final_zero="
                         f"{final_zero}); got {np.asarray(init)}.")
    try:
        solver.validate(schedule, init)
    except ValueError as err:
        raise ValueError(f"{type(solver).__name__} cannot take this {n_steps}-step grid: {err}"
                         ) from None
    return init


def _check_soft_radius(soft_radius: Any) -> float:
    r = float(soft_radius)
    if not (math.isfinite(r) and 0.0 <= r < 1.0):
        raise ValueError(f"soft_radius={soft_radius!r} must be in [0, 1): the student input may "
                         "move that fraction of each noise's norm (LD3 soft teacher forcing; 0 "
                         "turns it off).")
    return r


def _soft_step(x_s: Array, x_0: Array, grads: Array, radius: float) -> Array:
    """A normalised gradient step of ``radius ||x_0|| / 2`` per example, projected onto the ball
    ``||x' - x_0|| <= radius ||x_0||``; ``[B, ...]``."""
    flat = lambda a: a.reshape(a.shape[0], -1)  # noqa: E731
    bound = radius * jnp.linalg.norm(flat(x_0), axis=-1, keepdims=True)
    g = flat(grads)
    g_norm = jnp.linalg.norm(g, axis=-1, keepdims=True)
    step = jnp.where(g_norm > 0, g / jnp.where(g_norm > 0, g_norm, 1.0), 0.0)
    d = flat(x_s) - 0.5 * bound * step - flat(x_0)
    d_norm = jnp.linalg.norm(d, axis=-1, keepdims=True)
    d = d * jnp.minimum(1.0, bound / jnp.where(d_norm > 0, d_norm, 1.0))
    return (flat(x_0) + d).reshape(x_0.shape)


def _fit(solver, denoiser, x_T, n_steps, *, learn_solver, teacher, t_start, final_zero, init,
         steps, learning_rate, solver_learning_rate, batch_size, key, validation, teacher_steps,
         progress, soft_radius=0.0) -> Tuned:
    from tqdm.auto import tqdm

    tic = time.perf_counter()
    _check_solver(solver)
    soft = _check_soft_radius(soft_radius)
    schedule = denoiser.schedule
    t_start = _start_time(schedule, t_start)
    n_steps = _check_steps(solver, n_steps, final_zero)
    if learned_times(n_steps, final_zero) < 1:
        raise ValueError(f"n_steps={n_steps} leaves no time to learn.")
    x_T, teacher = _check_data(x_T, teacher, validation)
    if not (isinstance(steps, (int, np.integer)) and steps >= 1):
        raise ValueError(f"steps={steps!r} must be a positive number of optimiser steps.")
    dtype = x_T.dtype
    auto = isinstance(init, str) and init == "auto"
    init = _initial_grid(solver, schedule, None if auto else init, n_steps, t_start,
                         final_zero, dtype)
    if teacher is None:
        teacher = reference_solve(denoiser, x_T, t_start, final_zero=final_zero,
                                  n_steps=teacher_steps)
    key = jax.random.key(0) if key is None else key
    key, split_key = jax.random.split(key)
    order = jax.random.permutation(split_key, x_T.shape[0])
    n_val = int(round(validation * x_T.shape[0]))
    val_idx, train_idx = order[:n_val], order[n_val:]
    x_train, y_train = x_T[train_idx], teacher[train_idx]
    x_val, y_val = x_T[val_idx], teacher[val_idx]

    base = solver
    params: dict[str, Any] = {"grid": params_from_grid(init, schedule, final_zero, dtype)}
    if learn_solver:
        params["solver"] = Corrected.identity(base, schedule, init, dtype).scales
    labels = {"grid": "grid", **({"solver": jax.tree.map(lambda _: "solver", params["solver"])}
                                 if learn_solver else {})}
    labels["grid"] = GridParams("grid", "grid")
    def adam(rate):  # cosine decay to a tenth over the run
        return optax.adam(optax.cosine_decay_schedule(rate, int(steps), alpha=0.1))

    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.multi_transform(
        {"grid": adam(learning_rate), "solver": adam(solver_learning_rate or learning_rate)},
        labels))
    opt_state = opt.init(params)

    def build(p):
        grid = grid_from_params(p["grid"], schedule, t_start, final_zero)
        return grid, (Corrected(base, p["solver"]) if learn_solver else base)

    def per_example_loss(p, x, y):
        grid, s = build(p)
        d = (sample(s, denoiser, x, grid).x - y).reshape(x.shape[0], -1)
        return jnp.sum(d**2, -1)

    def loss_fn(p, x, y):
        per = per_example_loss(p, x, y)
        return jnp.mean(per), per

    @jax.jit
    def update(p, state, x_s, x_0, y):
        """One Adam step of ``p`` at the student inputs ``x_s``; with soft forcing, also the
        accepted moves of ``x_s`` (module docstring)."""
        if soft == 0:
            (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, x_s, y)
            updates, state = opt.update(grads, state, p)
            return optax.apply_updates(p, updates), state, x_s, loss
        (loss, per), (grads, g_x) = jax.value_and_grad(loss_fn, (0, 1), has_aux=True)(p, x_s, y)
        updates, state = opt.update(grads, state, p)
        p = optax.apply_updates(p, updates)
        moved = _soft_step(x_s, x_0, g_x, soft)
        better = per_example_loss(p, moved, y) < per
        x_s = jnp.where(better.reshape((-1,) + (1,) * (x_s.ndim - 1)), moved, x_s)
        return p, state, x_s, loss

    @jax.jit
    def evaluate(p, x, y):
        grid, s = build(p)
        return rms(sample(s, denoiser, x, grid).x, y)

    if auto:  # start from the standard spacing with the lowest training error
        scores = {name: float(evaluate({**params, "grid": params_from_grid(
            g, schedule, final_zero, dtype)}, x_train, y_train))
            for name, g in _candidates(schedule, n_steps, t_start, final_zero).items()}
        init_name = min(scores, key=scores.get)
        params["grid"] = params_from_grid(_candidates(schedule, n_steps, t_start, final_zero)[
            init_name], schedule, final_zero, dtype)
        opt_state = opt.init(params)
    n_train = x_train.shape[0]
    batch = n_train if batch_size is None else max(1, min(int(batch_size), n_train))
    per_epoch = n_train // batch
    score = (lambda p: float(evaluate(p, x_val, y_val))) if n_val else None
    first = score(params) if score else None
    history = [{"epoch": 0, "step": 0, "train_loss": None, "val_rms": first}]
    best, best_score = params, (first if score else math.inf)
    x_student = x_train  # moved within its ball by soft teacher forcing, else fixed
    step, epoch = 0, 0
    bar = tqdm(total=steps, desc="tune", disable=not progress, leave=False)
    while step < steps:
        epoch += 1
        key, perm_key = jax.random.split(key)
        perm = jax.random.permutation(perm_key, n_train) if batch < n_train else jnp.arange(n_train)
        losses = []
        for b in range(per_epoch):
            if step >= steps:
                break
            idx = perm[b * batch:(b + 1) * batch]
            params, opt_state, moved, loss = update(params, opt_state, x_student[idx],
                                                    x_train[idx], y_train[idx])
            if soft > 0:
                x_student = x_student.at[idx].set(moved)
            losses.append(float(loss))
            step += 1
            bar.update(1)
        if not all(map(math.isfinite, losses)):
            bar.close()
            raise FloatingPointError(f"tuning diverged at step {step} (loss {losses[-1]}): "
                                     "lower learning_rate.")
        current = score(params) if score else None
        history.append({"epoch": epoch, "step": step, "train_loss": float(np.mean(losses)),
                        "val_rms": current})
        if soft > 0:  # mean ||x' - x_T|| / ||x_T|| of the training inputs
            flat = (x_student - x_train).reshape(n_train, -1)
            history[-1]["soft_shift"] = float(jnp.mean(
                jnp.linalg.norm(flat, axis=-1) / jnp.linalg.norm(x_train.reshape(n_train, -1),
                                                                 axis=-1)))
        bar.set_postfix(val_rms=current, train=np.mean(losses))
        if score is None or current < best_score:
            best, best_score = params, (current if score else best_score)
    bar.close()
    grid, tuned_solver = build(best)
    grid = jax.block_until_ready(grid)
    return Tuned(grid, tuned_solver, history, describe(schedule), time.perf_counter() - tic)


def optimise_grid(solver: Solver, denoiser: BaseDenoiser, x_T: Array, n_steps: int, *,
                  teacher: Array | None = None, t_start: float | None = None,
                  final_zero: bool = True, init: Array | None = None, steps: int = 300,
                  learning_rate: float = 0.05, batch_size: int | None = None,
                  key: Array | None = None, validation: float = 0.2, teacher_steps: int = 256,
                  soft_radius: float = 0.0, progress: bool = True) -> Tuned:
    """Learns the ``n_steps`` time grid of ``solver`` on ``denoiser`` (LD3-style).

    Args:
      solver: a deterministic fixed-grid solver.
      denoiser: the model (its schedule defines the times).
      x_T: starting noise ``[B, ...]`` at ``t_start`` (scaled as for ``jd.sample``).
      n_steps: steps of the grid (``solver.nfe(n_steps)`` model evaluations).
      teacher: endpoints ``[B, ...]`` of the same noise (default: :func:`reference_solve`).
      t_start: the fixed first time (default ``schedule.t_max``).
      final_zero: end the grid with a step to ``t = 0`` (the last positive time is learned).
      init: initial grid: an array, a spacing name (``"logsnr"``, ``"karras"``,
        ``"time-quadratic"``, ``"time-uniform"``, from ``t_start`` to ``t_min``) or ``"auto"``
        (the one of these with the lowest training error); default :func:`default_grid`.
      steps, learning_rate, batch_size: Adam steps, its learning rate, minibatch size
        (default: the whole training split).
      key: for the train/validation split and the minibatches.
      validation: fraction of ``x_T`` held out (its RMS error is recorded every epoch).
      soft_radius: LD3's soft teacher forcing (module docstring): each training input may move
        within ``soft_radius * ||x_T||`` (0: off).

    Returns:
      :class:`Tuned` with the grid of lowest validation error; ``history[0]`` is the initial grid.
    """
    return _fit(solver, denoiser, x_T, n_steps, learn_solver=False, teacher=teacher,
                t_start=t_start, final_zero=final_zero, init=init, steps=steps,
                learning_rate=learning_rate, solver_learning_rate=None, batch_size=batch_size,
                key=key, validation=validation, teacher_steps=teacher_steps, progress=progress,
                soft_radius=soft_radius)


def optimise_solver(solver: Solver, denoiser: BaseDenoiser, x_T: Array, n_steps: int, *,
                    teacher: Array | None = None, t_start: float | None = None,
                    final_zero: bool = True, init: Array | None = None, steps: int = 300,
                    learning_rate: float = 0.05, solver_learning_rate: float = 0.01,
                    batch_size: int | None = None, key: Array | None = None,
                    validation: float = 0.2, teacher_steps: int = 256,
                    soft_radius: float = 0.0, progress: bool = True) -> Tuned:
    """:func:`optimise_grid` that also learns per-step relative corrections of ``solver``'s
    coefficient table (:class:`~jaxdist.tune.Corrected`, zero at the start: the first evaluation
    is the base solver on ``init``). ``solver_learning_rate``: Adam's rate for the corrections.
    Returns :class:`Tuned` whose ``solver`` is the ``Corrected`` solver."""
    return _fit(solver, denoiser, x_T, n_steps, learn_solver=True, teacher=teacher,
                t_start=t_start, final_zero=final_zero, init=init, steps=steps,
                learning_rate=learning_rate, solver_learning_rate=solver_learning_rate,
                batch_size=batch_size, key=key, validation=validation,
                teacher_steps=teacher_steps, progress=progress, soft_radius=soft_radius)
