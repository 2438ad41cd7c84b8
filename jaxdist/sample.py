"""``jd.sample``: the one sampling loop.

``sample(solver, denoiser, x_T, grid, key=None)`` integrates from ``grid[0]`` (noise) to
``grid[-1]`` with one ``lax.scan`` per static run of the solver's plan. It works under
``jax.jit``, ``jax.vmap`` and ``jax.grad`` (``remat=True`` rematerialises each step in the
backward pass, so memory does not grow with the step count), counts model evaluations, and
optionally returns the trajectory.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .denoiser import BaseDenoiser
from .grids import validate_grid
from .solvers.base import ModelState, Solver

Array = jax.Array

__all__ = ["sample", "SampleResult", "DenoiserModel"]


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


def _check_inputs(solver: Any, denoiser: Any, x_T: Any, grid: Any, key: Any) -> None:
    if not isinstance(solver, Solver):
        raise TypeError(f"solver must be a jaxdist solver (e.g. jd.solvers.DPMSolverPP()), got "
                        f"{type(solver).__name__}.")
    if not (callable(denoiser) and hasattr(denoiser, "schedule")):
        raise TypeError("denoiser must be a jd.Denoiser (or any denoiser with a .schedule); got "
                        f"{type(denoiser).__name__}. Wrap your network: jd.Denoiser(fn, schedule, "
                        "prediction='eps').")
    if not jnp.issubdtype(jnp.result_type(x_T), jnp.floating):
        raise TypeError(f"x_T must be a floating-point array, got dtype {jnp.result_type(x_T)}.")
    if solver.stochastic and key is None:
        raise ValueError(f"{type(solver).__name__} is stochastic: pass key=jax.random.key(seed).")
    validate_grid(denoiser.schedule, grid)
    solver.validate(denoiser.schedule, grid)


def sample(solver: Solver, denoiser: BaseDenoiser, x_T: Array, grid: Array, key: Array | None = None,
           *, cond: dict[str, Any] | None = None, save_trajectory: bool = False,
           remat: bool = False) -> SampleResult:
    """Runs ``solver`` on ``denoiser`` from ``x_T`` at ``grid[0]`` down the decreasing ``grid``.

    Args:
      solver: a ``jd.solvers`` solver.
      denoiser: a ``jd.Denoiser`` (or transformation of one); its schedule defines the times.
      x_T: the starting point ``[batch, ...]`` (for VP, standard normal noise at ``t_max``;
        for VE/EDM scale it by ``sigma(grid[0])``).
      grid: decreasing times, ``n_steps + 1`` of them (``jd.grids``).
      key: PRNG key for stochastic solvers (split per step).
      cond: keyword conditioning passed to the model at every evaluation.
      save_trajectory: also return the state at every grid time.
      remat: rematerialise steps under ``jax.grad`` (memory independent of the step count).

    Returns:
      ``SampleResult(x, nfe, trajectory, all_finite)``.
    """
    _check_inputs(solver, denoiser, x_T, grid, key)
    x_T = jnp.asarray(x_T)
    grid = jnp.asarray(grid)
    if not jnp.issubdtype(grid.dtype, jnp.floating):
        grid = grid.astype(jnp.result_type(float))
    model = DenoiserModel(denoiser, cond)
    ms = ModelState(jnp.zeros((), jnp.int32), denoiser.init_state(x_T))
    x, ms, traj = solver.run(model, denoiser.schedule, x_T, grid, key, ms,
                             save_trajectory=save_trajectory, remat=remat)
    return SampleResult(x, ms.nfe, traj, jnp.all(jnp.isfinite(x)))
