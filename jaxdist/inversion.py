"""Inversion (data to noise) and inpainting.

``invert(solver, denoiser, x, grid)`` runs a deterministic solver on an *increasing* grid
``t_0 < t_1 < ... < t_N``: the probability-flow ODE is integrated from the data end to the noise
end with the same update formulas. DDIM's ``x_next = alpha_next x0_hat + sigma_next eps_hat`` is
direction-free; the DPM-Solver(++) coefficients are written with ``h = lambda_next - lambda``,
ratios of step sizes and ``expm1``, and stay valid for ``h < 0``. Running ``jd.sample`` with the
same solver on the reversed grid reconstructs the data; the round-trip error falls at the
solver's order.

The grid must start at ``t_0 > 0`` (the data is treated as the state at ``t_0``, typically
``schedule.t_min``): at ``t = 0`` the noise prediction is undefined.

:class:`Inpaint` replaces the known region at every evaluation by the known data re-noised with
the schedule, ``alpha_t x_known + sigma_t z`` (``z`` drawn once from ``key``), and returns the
known data as the ``x0`` prediction there (with ``z`` as its ``eps``), so after every DDIM or
DPM-Solver++ step the known region of the state is exactly ``alpha_t x_known + sigma_t z``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .denoiser import BaseDenoiser
from .grids import validate_grid
from .sample import DenoiserModel, SampleResult, run_steps
from .solvers.base import Solver
from .solvers.cfgpp import Renoised
from .solvers.ddim import DDIM
from .solvers.dpm_solver import DPMSolver, DPMSolverPP
from .solvers.primitives import concrete

Array = jax.Array

__all__ = ["invert", "Inpaint", "INVERTIBLE"]

#: solvers whose formulas are checked (by tests) to run on increasing grids
INVERTIBLE = (DDIM, DPMSolver, DPMSolverPP)


def _check_solver(solver: Any) -> None:
    base = solver.base if isinstance(solver, Renoised) else solver
    if not isinstance(base, INVERTIBLE) or getattr(base, "stochastic", False):
        raise ValueError(f"invert: solver={solver!r} is not supported; use one of "
                         f"{', '.join(c.__name__ for c in INVERTIBLE)} (deterministic).")


def _check_grid(schedule, grid: Any) -> None:
    validate_grid(schedule, grid, increasing=True)
    first = concrete(jnp.asarray(grid)[0])
    if first is None:
        return
    if not float(first) > 0:
        raise ValueError(f"grid[0]={float(first)} must be > 0: inversion starts from the data at a "
                         "small positive time (e.g. schedule.t_min), where eps is defined.")


def invert(solver: Solver, denoiser: BaseDenoiser, x: Array, grid: Array, *,
           cond: dict[str, Any] | None = None, save_trajectory: bool = False) -> SampleResult:
    """Deterministic inversion: integrates the PF-ODE from ``x`` at ``grid[0]`` up the
    increasing ``grid`` to ``grid[-1]``.

    Args:
      solver: ``DDIM``, ``DPMSolverPP`` or ``DPMSolver`` (also ``cfgpp_solver(...)``).
      denoiser: any denoiser (guided ones included; e.g. ``CFGPlusPlus`` with DDIM).
      x: the data ``[batch, ...]``, taken as the state at ``grid[0] > 0``.
      grid: increasing times, ``n_steps + 1`` of them (``jd.grids.logsnr_uniform(...)[::-1]``).
      cond: keyword conditioning for the model.
      save_trajectory: also return the states on the grid.

    Returns:
      ``SampleResult`` with the latent at ``grid[-1]``; reconstruct with
      ``jd.sample(solver, denoiser, latent, grid[::-1])``.
    """
    _check_solver(solver)
    if not (callable(denoiser) and hasattr(denoiser, "schedule")):
        raise TypeError(f"denoiser must be a jd.Denoiser, got {type(denoiser).__name__}.")
    _check_grid(denoiser.schedule, grid)
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x must be a floating-point array, got dtype {x.dtype}.")
    grid = jnp.asarray(grid)
    if not jnp.issubdtype(grid.dtype, jnp.floating):
        grid = grid.astype(jnp.result_type(float))
    solver.validate(denoiser.schedule, grid[::-1])
    model = DenoiserModel(denoiser, cond)

    def run(x, grid):
        state = solver.init(x, model.start(x))
        state, traj = run_steps(solver, model, state, solver.coefficients(denoiser.schedule, grid),
                                grid, None, save_trajectory=save_trajectory)
        out, ms = solver.finish(state)
        if save_trajectory:
            traj = jnp.concatenate([x[None].astype(traj.dtype), traj])
        return SampleResult(out, ms.nfe, traj, jnp.all(jnp.isfinite(out)))

    return jax.jit(run)(x, grid)  # one program (see jd.sample)


class Inpaint(BaseDenoiser):
    """Inpainting by replacement (Song et al. 2021) as a denoiser transformation.

    With ``k = mask`` (1 on the known region) and ``x_k(t) = alpha_t known + sigma_t z``:
    the model sees ``k x_k(t) + (1 - k) x`` and the returned pair is
    ``(k known + (1 - k) x0_hat, k z + (1 - k) eps_hat)``.

    Args:
      denoiser: the (unconditional) denoiser.
      known: ``[batch, ...]`` data whose masked part is kept.
      mask: 1/True where ``known`` is kept, broadcastable to ``known``.
      key: PRNG key for the re-noising noise ``z`` (or pass ``noise``).
      noise: the re-noising noise ``z`` itself (shape of ``known``).

    Start sampling from :meth:`start` so that the known region of ``x_T`` is consistent too
    (needed for exactness with multistep solvers; DDIM overwrites it after one step).
    """

    def __init__(self, denoiser: BaseDenoiser, known: Array, mask: Array, key: Array | None = None,
                 *, noise: Array | None = None):
        known = jnp.asarray(known)
        if (key is None) == (noise is None):
            raise ValueError("pass exactly one of key= (noise is drawn from it) or noise=.")
        noise = jax.random.normal(key, known.shape, known.dtype) if noise is None else noise
        if jnp.shape(noise) != known.shape:
            raise ValueError(f"noise has shape {jnp.shape(noise)}, known has {known.shape}.")
        try:
            mask = jnp.broadcast_to(jnp.asarray(mask, known.dtype), known.shape)
        except ValueError:
            raise ValueError(f"mask of shape {jnp.shape(mask)} does not broadcast to known "
                             f"{known.shape}.") from None
        self.inner, self.known, self.mask, self.noise = denoiser, known, mask, jnp.asarray(noise)

    @property
    def schedule(self):  # type: ignore[override]
        return self.inner.schedule

    def known_at(self, t) -> Array:
        """``alpha_t known + sigma_t z``."""
        return self.schedule.marginal(self.known, self.noise, t)

    def start(self, x_T: Array, t) -> Array:
        """``x_T`` with its known region replaced by ``known_at(t)``."""
        return self.mask * self.known_at(t) + (1 - self.mask) * x_T

    def _replace(self, pair):
        x0, eps = pair
        k = self.mask
        return k * self.known + (1 - k) * x0, k * self.noise + (1 - k) * eps

    def init_state(self, x):
        return self.inner.init_state(x)

    def __call__(self, x, t, **cond):
        return self._replace(self.inner(self.start(x, t), t, **cond))

    def apply(self, state, x, t, **cond):
        pair, state = self.inner.apply(state, self.start(x, t), t, **cond)
        return self._replace(pair), state

