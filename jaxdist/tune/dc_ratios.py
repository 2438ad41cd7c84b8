"""Fitting DC-Solver's compensation ratios (:class:`jaxdist.solvers.DCSolver`) by gradient
through ``jd.sample``, against a reference trajectory on the solver's grid.

``rho = 1 + 0.5 tanh(p)`` (DC-Solver's bound, ``wl-zhao/DC-Solver``), Adam on the mean squared
distance of the DC trajectory to the reference over the grid's points (or the endpoints).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..sample import sample
from ..solvers.base import Solver
from ..solvers.dc_solver import DCSolver
from ..solvers.dpm_solver import DPMSolverPP
from ..solvers.unipc import UniPC

Array = jax.Array

__all__ = ["fit_dc_ratios", "reference_trajectory"]


def _trajectory(solver: Solver, denoiser: Any, x_T: Array, grid: Array) -> Array:
    """``jd.sample``'s states at every grid time, ``[n_steps + 1, *x_T.shape]``."""
    return sample(solver, denoiser, x_T, grid, save_trajectory=True).trajectory


def reference_trajectory(denoiser: Any, x_T: Array, grid: Array, substeps: int = 32) -> Array:
    """A fine solve through the times of ``grid``: ``[n_steps + 1, *x_T.shape]``, third-order
    DPM-Solver++ 3M with ``substeps`` time-uniform steps in every interval of ``grid``."""
    grid = np.asarray(grid, np.float64)
    frac = np.linspace(0.0, 1.0, int(substeps) + 1)[:-1]
    fine = np.concatenate([a + (b - a) * frac for a, b in zip(grid[:-1], grid[1:])] + [grid[-1:]])
    solver = DPMSolverPP(order=3, lower_order_final=False)
    traj = jax.jit(lambda x: _trajectory(solver, denoiser, x, jnp.asarray(fine, x.dtype)))(x_T)
    return traj[:: int(substeps)]


def fit_dc_ratios(solver: DCSolver | UniPC, denoiser: Any, x_T: Array, grid: Array,
                  reference: Array, steps: int = 40, lr: float = 0.1) -> tuple[DCSolver, list]:
    """Fits the ratios of ``solver`` (a :class:`DCSolver`, or a :class:`UniPC` to compensate)
    on ``grid`` to ``reference``: a trajectory ``[n_steps + 1, *x_T.shape]`` on the grid (e.g.
    :func:`reference_trajectory`) or the endpoints ``x_T.shape``.

    Adam (rate ``lr``) for ``steps`` steps on ``mean ||x_k - ref_k||^2`` over the grid's points
    (all of them, or the endpoint) per example, ``rho = 1 + 0.5 tanh(p)`` (started from the
    solver's ratios, clipped into ``(0.5, 1.5)``). Returns ``(DCSolver with the fitted rho,
    losses per step)``.
    """
    grid = jnp.asarray(grid, x_T.dtype)
    n = grid.shape[0] - 1
    if isinstance(solver, UniPC):
        solver = DCSolver.identity(n, base=solver)
    if not isinstance(solver, DCSolver):
        raise TypeError(f"solver must be a DCSolver or UniPC, got {type(solver).__name__}.")
    solver.validate(denoiser.schedule, grid)
    reference = jnp.asarray(reference, x_T.dtype)
    whole = reference.shape == (n + 1,) + x_T.shape
    if not whole and reference.shape != x_T.shape:
        raise ValueError(f"reference has shape {reference.shape}; give the trajectory "
                         f"{(n + 1,) + x_T.shape} on the grid or the endpoints {x_T.shape}.")
    if not bool(jnp.all(jnp.isfinite(reference))):
        raise ValueError("reference contains non-finite values (nan or inf).")
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"steps={steps!r} must be a positive number of optimiser steps.")
    rho0 = jnp.clip(jnp.asarray(solver.rho, x_T.dtype), 0.5 + 1e-6, 1.5 - 1e-6)
    params = jnp.arctanh(2.0 * (rho0 - 1.0))

    def loss(p):
        s = dataclasses.replace(solver, rho=1.0 + 0.5 * jnp.tanh(p))
        traj = _trajectory(s, denoiser, x_T, grid)
        got = traj if whole else traj[-1]
        return jnp.mean(jnp.sum((got - reference).reshape(-1, x_T[0].size) ** 2, -1))

    opt = optax.adam(lr)
    state = opt.init(params)

    @jax.jit
    def update(p, state):
        value, g = jax.value_and_grad(loss)(p)
        upd, state = opt.update(g, state)
        return optax.apply_updates(p, upd), state, value

    losses = []
    for _ in range(steps):
        params, state, value = update(params, state)
        losses.append(float(value))
    return dataclasses.replace(solver, rho=1.0 + 0.5 * jnp.tanh(params)), losses
