"""Explicit Runge-Kutta methods on the probability-flow ODE, from a Butcher tableau given as data
(:mod:`jaxdist.solvers.tableaux`).

``RungeKutta(tableau, variable)`` picks the variable ``v`` the PF-ODE is written in:

* ``"sigma"`` (default, EDM/k-diffusion): ``v = s = sigma/alpha``, ``y = x~ = x/alpha``,
  ``F = eps_hat`` (``dx~/ds = (x~ - x0_hat)/s``). Needs ``alpha(grid[0]) > 0``.
* ``"t"``: ``v = t``, ``y = x``, ``F = dx/dt = alpha'(t) x0_hat + sigma'(t) eps_hat`` (the flow
  velocity; with the Euler tableau on ``RectifiedFlow`` this is diffusers' FlowMatchEuler).
* ``"lambda"``: ``v = lambda = log(alpha/sigma)``, ``y = x``, ``F = (dx/dt) / (dlambda/dt)``.
  Needs a finite log-SNR on the whole grid (no ``t = 0``, no ``alpha = 0``).

Every step is a stage table of :class:`~jaxdist.solvers.base.ExplicitStages` (state weight and
output weights per stage), so all coefficients are precomputed outside the loop. A step that ends
at ``t = 0`` (``sigma = 0``, where ``eps_hat`` of an ``x0``/``v`` model is ``0/0``) is an Euler
step, i.e. the denoiser's ``x0_hat`` (as k-diffusion's Heun and EDM's final step); its later
stages are evaluated at the step's start and weighted zero, so the NFE stays static. A new method is
one table: ``RungeKutta(ButcherTableau(a=[[0, 0], [2/3, 0]], b=[1/4, 3/4], c=[0, 2/3]))``
(Ralston); its order is read off the order conditions up to 4.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .base import ExplicitStages, solver_dataclass
from .primitives import check_alpha_start, concrete, half_log_snr
from .tableaux import RK4, ButcherTableau

Array = jax.Array

__all__ = ["RungeKutta"]

_VARIABLES = ("sigma", "t", "lambda")


def _stage_times(v0: Array, v1: Array, t: Array, t_next: Array, c: np.ndarray, to_time) -> Array:
    """``[n, S]`` times of the stages ``v0 + c_j (v1 - v0)``; ``c = 0, 1`` map to the grid
    times exactly (no round trip through ``to_time``)."""
    cols = []
    for cj in c:
        if cj == 0.0:
            cols.append(t)
        elif cj == 1.0:
            cols.append(t_next)
        else:
            cols.append(to_time(v0 + cj * (v1 - v0)))
    return jnp.stack(cols, 1)


@solver_dataclass
class RungeKutta(ExplicitStages):
    """Explicit Runge-Kutta of ``tableau`` on the PF-ODE in ``variable`` (see the module doc).

    ``order`` is the tableau's; each step evaluates the model once per stage.
    """

    tableau: ButcherTableau = RK4
    variable: str = "sigma"

    def __post_init__(self):
        if not isinstance(self.tableau, ButcherTableau):
            raise TypeError(f"RungeKutta: tableau must be a ButcherTableau (e.g. "
                            f"jd.solvers.tableaux.RK4), got {type(self.tableau).__name__}.")
        if self.variable not in _VARIABLES:
            raise ValueError(f"RungeKutta: variable={self.variable!r}; use one of {_VARIABLES}.")

    @property
    def order(self) -> int:
        return self.tableau.order

    @property
    def n_stages(self) -> int:
        return self.tableau.stages

    @property
    def space(self) -> str:
        return "eps" if self.variable == "sigma" else "velocity"

    def validate(self, schedule, grid):
        name = f"RungeKutta(variable={self.variable!r})"
        if self.variable == "sigma":
            check_alpha_start(name, schedule, grid)
        elif self.variable == "lambda":
            lam = concrete(schedule.log_snr(jnp.asarray(grid)))
            if lam is not None and not np.all(np.isfinite(lam)):
                raise ValueError(f"{name} needs a finite log-SNR at every grid time (no t = 0, "
                                 "no alpha = 0); end the grid at t_min > 0 or use variable='sigma'.")

    def stage_table(self, schedule, grid):
        times, state, weights = self._full_table(schedule, grid)
        n = times.shape[0]
        # row 0 (stage 0 at x) is implicit in ExplicitStages
        return times, state[:, 1:], weights[:, 1:], jnp.zeros((n, self.n_stages, 0), times.dtype)

    def _full_table(self, schedule, grid):
        times, state, weights = self._rk_table(schedule, grid)
        if self.variable == "lambda":  # validate() ensured a finite log-SNR: no step to t = 0
            return times, state, weights
        # a step to t = 0: Euler (weights on stage 0 only); stages at t, never at sigma = 0
        to_zero = grid[1:] == 0.0
        euler = jnp.zeros_like(weights).at[:, -1, 0].set(weights[:, -1, :].sum(-1))
        weights = jnp.where(to_zero[:, None, None], euler, weights)
        times = jnp.where(to_zero[:, None], grid[:-1, None], times)
        return times, state, weights

    def _rk_table(self, schedule, grid):
        tab = self.tableau
        a, b, c = np.asarray(tab.a), np.asarray(tab.b), np.asarray(tab.c)
        t, t_next = grid[:-1], grid[1:]
        n_stages = tab.stages
        # rows j < S are stages, row S the update: A_ext [S+1, S]
        a_ext = jnp.asarray(np.concatenate([a, b[None]], 0), grid.dtype)
        if self.variable == "t":
            h = t_next - t
            times = _stage_times(t, t_next, t, t_next, c, lambda v: v)
            state = jnp.ones(h.shape + (n_stages + 1,), h.dtype)
            return times, state, h[:, None, None] * a_ext[None]
        if self.variable == "sigma":
            s0, s1 = schedule.sigma_over_alpha(t), schedule.sigma_over_alpha(t_next)
            times = _stage_times(s0, s1, t, t_next, c,
                                 lambda s: schedule.t_from_log_snr(-2.0 * jnp.log(s)))
            alpha = schedule.alpha(t)
            # the alpha of each row's point: the stages, then the end of the step
            row_alpha = jnp.concatenate([schedule.alpha(times), schedule.alpha(t_next)[:, None]], 1)
            state = row_alpha / alpha[:, None]
            return times, state, (row_alpha * (s1 - s0)[:, None])[:, :, None] * a_ext[None]
        lam = half_log_snr(schedule, grid)
        l0, l1 = lam[:-1], lam[1:]
        times = _stage_times(l0, l1, t, t_next, c, lambda v: schedule.t_from_log_snr(2.0 * v))
        dlam = 0.5 * jax.jvp(schedule.log_snr, (times,), (jnp.ones_like(times),))[1]
        state = jnp.ones(l0.shape + (n_stages + 1,), l0.dtype)
        w = (l1 - l0)[:, None, None] * a_ext[None] / dlam[:, None, :]
        return times, state, w
