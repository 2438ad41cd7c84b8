"""``jd.sample``: the one sampling loop, and ``jd.sample_adaptive`` for adaptive solvers.

``sample(solver, denoiser, x_T, grid, key=None)`` integrates from ``grid[0]`` (noise) to
``grid[-1]``: ``coefficients`` once, then ``step`` under ``lax.scan`` (one scan per run of steps
with the same static number of model evaluations, see :mod:`jaxdist.solvers.base`). It works
under ``jax.jit``, ``jax.vmap`` and ``jax.grad`` (``remat=True`` rematerialises each step in the
backward pass, so memory does not grow with the step count), counts model evaluations, and
optionally returns the trajectory. Written by hand, the same loop is::

    model = jd.DenoiserModel(den)
    coefs = solver.coefficients(den.schedule, grid)
    state = solver.init(x_T, jd.solvers.ModelState(jnp.zeros((), jnp.int32), den.init_state(x_T)))
    for i in range(len(grid) - 1):
        state = solver.step(model, state, jd.solvers.coefs_at(coefs, i), keys[i])
    x, model_state = solver.finish(state)

``checks=True`` adds ``jax.experimental.checkify`` checks that name a bad grid time (non-finite,
not decreasing, outside the schedule's range: also for traced grids) or the first step whose
sample is not finite. Eagerly the error is raised at once; inside your own ``jax.jit``, wrap the
jitted function in ``checkify.checkify`` and call ``err.throw()`` (see docs/sampling.md).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from .denoiser import BaseDenoiser
from .grids import validate_grid
from .solvers.adaptive import AdaptiveDPMSolver, AdaptiveInfo
from .solvers.base import ModelState, Solver, set_stages, stage_table
from .solvers.primitives import hold_zero

Array = jax.Array

__all__ = ["sample", "sample_adaptive", "SampleResult", "DenoiserModel", "run_steps"]


class SampleResult(NamedTuple):
    """``x``: the sample; ``nfe``: model evaluations used; ``trajectory``: ``[n_steps + 1, ...]``
    states on the grid (``None`` unless requested); ``all_finite``: whether ``x`` is finite."""

    x: Array
    nfe: Array
    trajectory: Array | None = None
    all_finite: Array | None = None


class DenoiserModel:
    """The denoiser as solvers call it: ``model(x, t, ms) -> (x0_hat, eps_hat, ms)``.

    Counts evaluations in ``ms.nfe`` and threads the denoiser's own state in ``ms.den``.
    """

    def __init__(self, denoiser: BaseDenoiser, cond: dict[str, Any] | None = None):
        self.denoiser, self.cond = denoiser, dict(cond or {})
        self.schedule = denoiser.schedule

    def __call__(self, x: Array, t: Array, ms: ModelState):
        (x0, eps), den_state = self.denoiser.apply(ms.den, x, t, **self.cond)
        return x0.astype(x.dtype), eps.astype(x.dtype), ModelState(ms.nfe + 1, den_state)

    def start(self, x: Array) -> ModelState:
        """The model state before the first evaluation."""
        return ModelState(jnp.zeros((), jnp.int32), self.denoiser.init_state(x))


def _runs(table: np.ndarray | None, n: int) -> list[tuple[int, int, int | None]]:
    """``(start, stop, stages)`` of the runs of equal static ``stages``."""
    if table is None:
        return [(0, n, None)]
    runs, start = [], 0
    for i in range(1, n + 1):
        if i == n or table[i] != table[start]:
            runs.append((start, i, int(table[start])))
            start = i
    return runs


def run_steps(solver: Solver, model: DenoiserModel, state: Any, coefs: Any, grid: Array,
              keys: Array | None, *, save_trajectory: bool = False, remat: bool = False,
              unroll: int = 1, checks: bool = False):
    """Steps ``state`` over the whole grid; returns ``(state, trajectory [n, ...] | None)``."""
    n = grid.shape[0] - 1
    arrays = set_stages(coefs, None)
    saved = []
    for a, b, stages in _runs(stage_table(coefs), n):
        xs = (jax.tree.map(lambda c, a=a, b=b: c[a:b], arrays),
              None if keys is None else keys[a:b], jnp.arange(a, b), grid[a:b], grid[a + 1:b + 1])

        def body(carry, inputs, stages=stages):
            coef, key, i, t, t_next = inputs
            if stages is not None:
                coef = set_stages(coef, stages)
            carry = solver.step(model, carry, coef, key)
            x = solver.finish(carry)[0]
            if checks:
                checkify.check(jnp.all(jnp.isfinite(x)),
                               "jd.sample: the sample is not finite after step {i} "
                               "(t = {t} -> {t_next}): the model returned a non-finite value or "
                               "the step diverged", i=i, t=t, t_next=t_next)
            return carry, (x if save_trajectory else None)

        if remat:
            body = jax.checkpoint(body)
        state, traj = jax.lax.scan(body, state, xs, unroll=unroll)
        saved.append(traj)
    return state, (jnp.concatenate(saved) if save_trajectory else None)


def _as_array(x: Any, name: str) -> Array:
    if isinstance(x, (list, tuple)):
        x = np.asarray(x)
    if not hasattr(x, "dtype"):
        raise TypeError(f"{name} must be an array, got {type(x).__name__}.")
    return jnp.asarray(x)


def _check_cond(cond: dict[str, Any] | None, x_T: Array) -> None:
    if cond is None:
        return
    if not isinstance(cond, dict):
        raise TypeError(f"cond must be a dict of keyword arguments for the model, got "
                        f"{type(cond).__name__}.")
    batch = x_T.shape[0] if x_T.ndim else None
    for name, value in cond.items():
        for leaf in jax.tree.leaves(value):
            shape = np.shape(leaf)
            if shape and batch is not None and shape[0] not in (batch, 1):
                raise ValueError(f"cond[{name!r}] has leading dimension {shape[0]} but x_T has "
                                 f"batch {batch}: give one entry per example (or 1 to share).")


def check_fixed_grid_solver(solver: Any, adaptive_hint: str) -> None:
    """Raises ``TypeError`` unless ``solver`` is a fixed-grid jaxdist solver; for an adaptive one
    the message ends with ``adaptive_hint`` (what to do instead)."""
    if isinstance(solver, AdaptiveDPMSolver):
        raise TypeError(f"{type(solver).__name__} chooses its own steps: {adaptive_hint}")
    if not isinstance(solver, Solver):
        raise TypeError(f"solver must be a jaxdist solver (e.g. jd.solvers.DPMSolverPP()), got "
                        f"{type(solver).__name__}.")


def _check_inputs(solver: Any, denoiser: Any, x_T: Array, grid: Any, key: Any) -> None:
    check_fixed_grid_solver(solver, "use jd.sample_adaptive(solver, denoiser, x_T, t_start, "
                                    "t_end).")
    _check_denoiser(denoiser)
    if not jnp.issubdtype(x_T.dtype, jnp.floating):
        raise TypeError(f"x_T must be a floating-point array, got dtype {x_T.dtype}.")
    if x_T.ndim < 1:
        raise ValueError(f"x_T must have a leading batch axis, got shape {x_T.shape}.")
    if solver.stochastic and key is None:
        raise ValueError(f"{type(solver).__name__} is stochastic: pass key=jax.random.key(seed).")
    validate_grid(denoiser.schedule, grid,
                  allow_zero_final_step=bool(getattr(solver, "accepts_zero_final_step", False)))
    solver.validate(denoiser.schedule, grid)


def _check_denoiser(denoiser: Any) -> None:
    if not (callable(denoiser) and hasattr(denoiser, "schedule")):
        raise TypeError("denoiser must be a jd.Denoiser (or any denoiser with a .schedule); got "
                        f"{type(denoiser).__name__}. Wrap your network: jd.Denoiser(fn, schedule, "
                        "prediction='eps').")


def _check_grid_values(schedule, grid: Array) -> None:
    """checkify versions of :func:`jaxdist.grids.validate_grid` (for traced grids)."""
    lo, hi = schedule.t_min * (1 - 1e-5), schedule.t_max * (1 + 1e-5) + 1e-12

    def first_bad(ok):
        return jnp.argmin(ok)

    finite = jnp.isfinite(grid)
    checkify.check(jnp.all(finite), "jd.sample: grid[{i}] = {v} is not finite",
                   i=first_bad(finite), v=grid[first_bad(finite)])
    dec = jnp.diff(grid) < 0
    checkify.check(jnp.all(dec), "jd.sample: the grid must be strictly decreasing, but "
                   "grid[{i}] = {a} <= grid[{j}] = {b}", i=first_bad(dec), a=grid[first_bad(dec)],
                   j=first_bad(dec) + 1, b=grid[first_bad(dec) + 1])
    inside = ((grid >= lo) & (grid <= hi)) | ((grid == 0) & (jnp.arange(grid.shape[0])
                                                             == grid.shape[0] - 1))
    checkify.check(jnp.all(inside), "jd.sample: grid[{i}] = {v} is outside [{lo}, {hi}] of the "
                   "schedule (only the last time may be 0)", i=first_bad(inside),
                   v=grid[first_bad(inside)], lo=jnp.asarray(schedule.t_min),
                   hi=jnp.asarray(schedule.t_max))


def sample(solver: Solver, denoiser: BaseDenoiser, x_T: Array, grid: Array,
           key: Array | None = None, *, cond: dict[str, Any] | None = None,
           save_trajectory: bool = False, remat: bool = False, unroll: int = 1,
           checks: bool = False) -> SampleResult:
    """Runs ``solver`` on ``denoiser`` from ``x_T`` at ``grid[0]`` down the decreasing ``grid``.

    Args:
      solver: a ``jd.solvers`` solver.
      denoiser: a ``jd.Denoiser`` (or transformation of one); its schedule defines the times.
      x_T: the starting point ``[batch, ...]`` (for VP, standard normal noise at ``t_max``;
        for VE/EDM scale it by ``sigma(grid[0])``).
      grid: decreasing times, ``n_steps + 1`` of them (``jd.grids``).
      key: PRNG key for stochastic solvers (split per step).
      cond: keyword conditioning passed to the model at every evaluation (arrays with a leading
        batch axis of ``x_T``'s size or 1).
      save_trajectory: also return the state at every grid time.
      remat: rematerialise steps under ``jax.grad`` (memory independent of the step count).
      unroll: steps unrolled per ``lax.scan`` iteration (``lax.scan(unroll=)``).
      checks: ``checkify`` checks of the grid values and of every step's result (module doc).

    Returns:
      ``SampleResult(x, nfe, trajectory, all_finite)``.
    """
    x_T = _as_array(x_T, "x_T")
    _check_inputs(solver, denoiser, x_T, grid, key)
    _check_cond(cond, x_T)
    grid = jnp.asarray(grid)
    if not jnp.issubdtype(grid.dtype, jnp.floating):
        grid = grid.astype(jnp.result_type(float))
    model = DenoiserModel(denoiser, cond)
    n_steps = grid.shape[0] - 1

    def run(x_T, grid, key):
        if checks:
            _check_grid_values(denoiser.schedule, grid)
        # t = 0 is a fixed end point: d/d grid stays finite for grids ending at 0
        coefs = solver.coefficients(denoiser.schedule, hold_zero(grid))
        state = solver.init(x_T, model.start(x_T))
        keys = None if key is None else jax.random.split(key, n_steps)
        state, traj = run_steps(solver, model, state, coefs, grid, keys,
                                save_trajectory=save_trajectory, remat=remat, unroll=unroll,
                                checks=checks)
        x, ms = solver.finish(state)
        if save_trajectory:
            traj = jnp.concatenate([x_T[None].astype(traj.dtype), traj])
        return SampleResult(x, ms.nfe, traj, jnp.all(jnp.isfinite(x)))

    # One XLA program for the whole run (coefficients, loop, finish): an eager call compiles it
    # once instead of dispatching every coefficient operation on its own; inside a user's jit,
    # vmap or grad it is inlined.
    if not checks:
        return jax.jit(lambda x_T, key: run(x_T, grid, key))(x_T, key)
    err, result = jax.jit(checkify.checkify(run))(x_T, grid, key)
    checkify.check_error(err)
    return result


def sample_adaptive(solver: AdaptiveDPMSolver, denoiser: BaseDenoiser, x_T: Array,
                    t_start: Any = None, t_end: Any = None, *,
                    cond: dict[str, Any] | None = None) -> tuple[SampleResult, AdaptiveInfo]:
    """Runs an adaptive solver (``jd.solvers.AdaptiveDPMSolver``) from ``t_start`` (default
    ``schedule.t_max``) to ``t_end > 0`` (default ``schedule.t_min``); it picks its own steps.

    Returns ``(SampleResult(x, nfe), AdaptiveInfo(accepted, rejected, nfe))``.
    """
    if not isinstance(solver, AdaptiveDPMSolver):
        raise TypeError(f"sample_adaptive needs an adaptive solver (jd.solvers.AdaptiveDPMSolver),"
                        f" got {type(solver).__name__}; fixed-grid solvers run with jd.sample.")
    _check_denoiser(denoiser)
    x_T = _as_array(x_T, "x_T")
    if not jnp.issubdtype(x_T.dtype, jnp.floating):
        raise TypeError(f"x_T must be a floating-point array, got dtype {x_T.dtype}.")
    _check_cond(cond, x_T)
    schedule = denoiser.schedule
    dtype = jnp.result_type(float)
    t_start = jnp.asarray(schedule.t_max if t_start is None else t_start, dtype)
    t_end = jnp.asarray(schedule.t_min if t_end is None else t_end, dtype)
    solver.validate(schedule, t_start, t_end)
    model = DenoiserModel(denoiser, cond)

    def run(x_T, t_start, t_end):
        x, ms, info = solver.integrate(model, schedule, x_T, t_start, t_end, model.start(x_T))
        return SampleResult(x, ms.nfe, None, jnp.all(jnp.isfinite(x))), info

    return jax.jit(run)(x_T, t_start, t_end)
