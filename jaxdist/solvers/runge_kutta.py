"""Explicit Runge-Kutta methods on the probability-flow ODE, from a Butcher tableau given as data.

A tableau ``(a, b, c)`` with ``S`` stages advances ``dy/dv = F(y, v)`` by ``h``:

    k_j = F(y + h sum_{m<j} a_jm k_m, v + c_j h),    y_{n+1} = y + h sum_j b_j k_j.

``RungeKutta(tableau, variable)`` picks the variable ``v`` the PF-ODE is written in:

* ``"sigma"`` (default, EDM/k-diffusion): ``v = s = sigma/alpha``, ``y = x~ = x/alpha``,
  ``F = eps_hat`` (``dx~/ds = (x~ - x0_hat)/s``). Needs ``alpha(grid[0]) > 0``.
* ``"t"``: ``v = t``, ``y = x``, ``F = dx/dt = alpha'(t) x0_hat + sigma'(t) eps_hat`` (the flow
  velocity; with the Euler tableau on ``RectifiedFlow`` this is diffusers' FlowMatchEuler).
* ``"lambda"``: ``v = lambda = log(alpha/sigma)``, ``y = x``, ``F = (dx/dt) / (dlambda/dt)``.
  Needs a finite log-SNR on the whole grid (no ``t = 0``, no ``alpha = 0``).

Every step is a stage table of :class:`~jaxdist.solvers.base.ExplicitStages` (state weight and
output weights per stage), so all coefficients are precomputed outside the loop. A new method is
one table: ``RungeKutta(ButcherTableau(a=[[0, 0], [2/3, 0]], b=[1/4, 3/4], c=[0, 2/3]))``
(Ralston); its order is read off the order conditions up to 4.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from .base import ExplicitStages, half_log_snr, solver_dataclass
from .edm import _concrete, check_alpha_start

Array = jax.Array

__all__ = ["ButcherTableau", "RungeKutta", "EULER", "MIDPOINT", "HEUN", "RK3", "RK4", "TABLEAUX"]

_VARIABLES = ("sigma", "t", "lambda")


def _order_conditions(a: np.ndarray, b: np.ndarray, c: np.ndarray, tol: float = 1e-12) -> int:
    """The highest order ``p <= 4`` whose Butcher order conditions hold."""
    ac = a @ c
    conditions = [
        [b.sum() - 1.0],
        [b @ c - 1 / 2],
        [b @ c**2 - 1 / 3, b @ ac - 1 / 6],
        [b @ c**3 - 1 / 4, b @ (c * ac) - 1 / 8, b @ (a @ c**2) - 1 / 12, b @ (a @ ac) - 1 / 24],
    ]
    order = 0
    for p, conds in enumerate(conditions, start=1):
        if max(abs(v) for v in conds) > tol:
            break
        order = p
    return order


@dataclasses.dataclass(frozen=True)
class ButcherTableau:
    """An explicit Butcher tableau: ``a [S, S]`` strictly lower triangular (rows may be given
    ragged: row ``j`` with its first ``j`` entries), weights ``b [S]``, nodes ``c [S]``.

    ``order`` is computed from the order conditions (up to 4) unless given.
    """

    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]
    name: str = ""
    order: int = 0

    def __post_init__(self):
        b = tuple(float(v) for v in np.ravel(self.b))
        c = tuple(float(v) for v in np.ravel(self.c))
        n = len(b)
        if n < 1 or len(c) != n:
            raise ValueError(f"ButcherTableau: b and c must have the same length >= 1, got "
                             f"len(b)={n}, len(c)={len(c)}.")
        rows = list(self.a)
        if len(rows) != n:
            raise ValueError(f"ButcherTableau: a must have {n} rows (one per stage), got {len(rows)}.")
        full = np.zeros((n, n))
        for j, row in enumerate(rows):
            row = np.ravel(np.asarray(row, dtype=np.float64))
            if row.size > n or np.any(row[j:] != 0):
                raise ValueError(f"ButcherTableau: row {j} of a={row.tolist()} must be strictly "
                                 "lower triangular (explicit methods only).")
            full[j, : row.size] = row
        if c[0] != 0.0:
            raise ValueError(f"ButcherTableau: c[0]={c[0]} must be 0 (explicit methods).")
        if not np.allclose(full.sum(1), c, atol=1e-12):
            raise ValueError(f"ButcherTableau: c={list(c)} must equal the row sums of a "
                             f"({full.sum(1).tolist()}).")
        order = self.order or _order_conditions(full, np.asarray(b), np.asarray(c))
        if order < 1:
            raise ValueError("ButcherTableau: the weights b must sum to 1 (consistency).")
        object.__setattr__(self, "a", tuple(tuple(float(v) for v in r) for r in full))
        object.__setattr__(self, "b", b)
        object.__setattr__(self, "c", c)
        object.__setattr__(self, "order", int(order))

    @property
    def stages(self) -> int:
        return len(self.b)


EULER = ButcherTableau(a=[[0.0]], b=[1.0], c=[0.0], name="euler")
MIDPOINT = ButcherTableau(a=[[0, 0], [0.5, 0]], b=[0, 1], c=[0, 0.5], name="midpoint")
HEUN = ButcherTableau(a=[[0, 0], [1, 0]], b=[0.5, 0.5], c=[0, 1], name="heun")
RK3 = ButcherTableau(a=[[0, 0, 0], [0.5, 0, 0], [-1, 2, 0]], b=[1 / 6, 2 / 3, 1 / 6],
                     c=[0, 0.5, 1], name="rk3")
RK4 = ButcherTableau(a=[[0, 0, 0, 0], [0.5, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 1, 0]],
                     b=[1 / 6, 1 / 3, 1 / 3, 1 / 6], c=[0, 0.5, 0.5, 1], name="rk4")
#: the built-in tableaux by name
TABLEAUX = {tab.name: tab for tab in (EULER, MIDPOINT, HEUN, RK3, RK4)}


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

    ``order`` is the tableau's; ``nfe_per_step`` its number of stages.
    """

    butcher: ButcherTableau = RK4
    variable: str = "sigma"

    def __init__(self, tableau: ButcherTableau = RK4, variable: str = "sigma"):
        if not isinstance(tableau, ButcherTableau):
            raise TypeError(f"tableau must be a ButcherTableau (e.g. jd.solvers.RK4), got "
                            f"{type(tableau).__name__}.")
        if variable not in _VARIABLES:
            raise ValueError(f"RungeKutta: variable={variable!r}; use one of {_VARIABLES}.")
        object.__setattr__(self, "butcher", tableau)
        object.__setattr__(self, "variable", variable)

    @property
    def order(self) -> int:
        return self.butcher.order

    @property
    def nfe_per_step(self) -> int:
        return self.butcher.stages

    @property
    def space(self) -> str:  # type: ignore[override]
        return "eps" if self.variable == "sigma" else "velocity"

    def validate(self, schedule, grid):
        name = f"RungeKutta(variable={self.variable!r})"
        if self.variable == "sigma":
            check_alpha_start(name, schedule, grid)
        elif self.variable == "lambda":
            lam = _concrete(schedule.log_snr(jnp.asarray(grid)))
            if lam is not None and not np.all(np.isfinite(lam)):
                raise ValueError(f"{name} needs a finite log-SNR at every grid time (no t = 0, "
                                 "no alpha = 0); end the grid at t_min > 0 or use variable='sigma'.")

    def tableau(self, schedule, grid):
        tab = self.butcher
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
