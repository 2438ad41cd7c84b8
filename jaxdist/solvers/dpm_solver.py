"""DPM-Solver (Lu et al. 2022a, noise prediction) and DPM-Solver++ (Lu et al. 2022b, data
prediction): exponential integrators of the probability-flow ODE in ``lambda = log(alpha/sigma)``
(half the log-SNR).

With ``h = lambda_t - lambda_s``, the exact solution of the PF-ODE is

* data prediction:  ``x_t = (sigma_t/sigma_s) x_s + sigma_t int_{lambda_s}^{lambda_t} e^l x0 dl``,
* noise prediction: ``x_t = (alpha_t/alpha_s) x_s - alpha_t int_{lambda_s}^{lambda_t} e^-l eps dl``,

and the solvers approximate the model output by Taylor expansions in ``lambda`` from previous
steps (multistep: ``2M``, ``3M``) or from intermediate stages (singlestep: ``2S``, ``3S``, stages at
``lambda_s + r h`` with ``r = 1/2`` or ``1/3, 2/3``). Coefficients are the paper's
(:func:`~jaxdist.solvers.primitives.dpm_phis`), written as weights on the model outputs of one
:class:`~jaxdist.solvers.base.ExplicitStages` table, so all three forms (multistep, singlestep and
multistep with a singlestep first step) are one solver. Every schedule works through its log-SNR
(VP, VE, EDM, rectified flow).

Static per-step tables (from ``n_steps`` and the settings only): multistep orders
``1, 2, .., p`` (warm-up) and, with ``lower_order_final``, ``.., 2, 1``; singlestep orders ``p``
and, with ``lower_order_final``, ``min(p, steps left)``. A step to ``t = 0`` is first order: a
multistep step returns ``alpha_0 x0_hat``; a singlestep step takes the first-order step from its
last stage.

Global order (``solver.order``): a fixed number of lower-order boundary steps bounds it (a step
of order ``k`` has local error ``O(h^(k+1))``): 2M is order 2; 3M with the first-order warm-up or
a first-order final step is order 2 in the limit; ``warmup="singlestep"`` (one extra evaluation)
with ``lower_order_final=False`` keeps 3M at order 3. The third-order update weights the
second difference by ``2 phi_3`` (Taylor-exact, ``third_order="taylor"``); the reference code and
diffusers use ``phi_3`` (``third_order="reference"``), which makes the update second order.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .base import ExplicitStages, solver_dataclass
from .primitives import (boundary_bound, cap_final_orders, check_final_orders, check_noise_start,
                         check_order, dpm_phis, first_order_coefficients, half_log_snr,
                         multistep_orders)

Array = jax.Array

__all__ = ["DPMSolver", "DPMSolverPP", "DPMFamily", "SOLVER_TYPES", "multistep_weights",
           "singlestep_grid_weights", "diffusers_singlestep_orders"]

#: accepted ``solver_type`` names (diffusers' and DPM-Solver's) -> the canonical one
SOLVER_TYPES = {"midpoint": "midpoint", "dpmsolver": "midpoint", "heun": "heun", "taylor": "heun"}
_D2_WEIGHT = {"taylor": 2.0, "reference": 1.0}
_METHODS = ("multistep", "singlestep", "singlestep-grid")


def multistep_weights(prediction: str, schedule, grid: Array, orders, solver_type: str = "midpoint",
                      third_order: str = "taylor") -> tuple[Array, Array]:
    """Multistep DPM-Solver(++) weights: ``x_{i+1} = ratio_i x_i + b_i . [D_i, D_{i-1}, D_{i-2}]``.

    ``orders [n]`` (1-3) per step; a step to ``t = 0`` is first order. With ``r_j`` the ratios of
    the previous step sizes to ``h``: ``D1 = (D_i - D_{i-1}) / r_0``, and for order 3 the
    divided differences ``d_1 = D1 + r_0 / (r_0 + r_1) (D1 - D1')``,
    ``d_2 = (D1 - D1') / (r_0 + r_1)``, ``b = c1 e_0 + p2 d_1 + w p3 d_2`` (``w = 2`` Taylor,
    ``1`` reference). Returns ``ratio [n]`` and ``b [n, 3]``.
    """
    lam = half_log_snr(schedule, grid)
    s, t = grid[:-1], grid[1:]
    h = lam[1:] - lam[:-1]
    # Step sizes of the previous two steps (dummies on warm-up steps, where they are unused).
    h1 = jnp.concatenate([h[:1], h[:-1]])
    h2 = jnp.concatenate([h[:1], h1[:-1]])
    r0, r1 = (h1 / h)[:, None], (h2 / h)[:, None]
    ratio, c1 = first_order_coefficients(prediction, schedule, s, t)
    p2, p3 = (p[:, None] for p in dpm_phis(prediction, schedule, t, h))
    c1 = c1[:, None]
    e0, e1, e2 = jnp.eye(3, dtype=h.dtype)
    d1_0 = (e0 - e1) / r0
    b2 = c1 * e0 + (0.5 * c1 if SOLVER_TYPES[solver_type] == "midpoint" else p2) * d1_0
    d1_1 = (e1 - e2) / r1
    d1 = d1_0 + r0 / (r0 + r1) * (d1_0 - d1_1)
    d2 = (d1_0 - d1_1) / (r0 + r1)
    # d2 estimates h^2 m''/2: its Taylor weight is 2 p3 (the reference code uses p3).
    b3 = c1 * e0 + p2 * d1 + _D2_WEIGHT[third_order] * p3 * d2
    orders = jnp.where(t == 0, 1, jnp.asarray(orders))[:, None]
    b = jnp.where(orders == 1, c1 * e0, jnp.where(orders == 2, b2, b3))
    return ratio, b


def diffusers_singlestep_orders(n_steps: int, order: int, lower_order_final: bool,
                                final_zero: bool = False) -> np.ndarray:
    """diffusers' ``DPMSolverSinglestepScheduler.get_order_list``: the order of each of its
    ``n_steps`` evaluations, groups ``1, 2, .., k`` (a group of ``k`` evaluations is one
    singlestep step of order ``k``); with ``lower_order_final`` (or a step count that ``order``
    does not divide) the last groups are shorter; a final step to ``sigma = 0`` is first
    order."""
    n, k = int(n_steps), int(order)
    full, rest = divmod(n, k)
    groups = [k] * full
    if (lower_order_final or rest) and k > 1:  # diffusers switches it on for a remainder
        if rest == 0:
            groups = groups[:-1] + ([2, 1] if k == 3 else [1, 1])
        else:
            groups = groups + [rest]
    orders = [o for g in groups for o in range(1, g + 1)]
    if final_zero and orders:
        orders[-1] = 1
    return np.asarray(orders, np.int32)


def singlestep_grid_weights(prediction: str, schedule, grid: Array, orders,
                            solver_type: str = "midpoint") -> tuple[Array, Array]:
    """diffusers' singlestep DPM-Solver(++) written on the grid's own points, one evaluation per
    grid step: ``x_{i+1} = ratio_i x_i + b_i . [D_i, D_{i-1}, D_{i-2}]``.

    A step of order ``k`` (``orders [n]``) ends a group that started ``k - 1`` steps before at
    ``g``: the singlestep update from ``x_g`` with stages at the group's grid points (order 2:
    ``x_g -> t`` with ``D1 = (D_i - D_g) / r0``, ``r0 = (lambda_i - lambda_g) / h``; order 3:
    ``D1_1 = (D_i - D_g) / r0`` (midpoint) or the divided differences of all three (heun)).
    ``x_g`` is recovered from ``x_i`` through the group's earlier (linear) steps, so the update
    needs no extra state. Returns ``ratio [n]`` and ``b [n, 3]``."""
    lam = half_log_snr(schedule, grid)
    n = grid.shape[0] - 1
    idx = jnp.arange(n)
    i1, i2 = jnp.maximum(idx - 1, 0), jnp.maximum(idx - 2, 0)
    s, t, g1, g2 = grid[:-1], grid[1:], grid[i1], grid[i2]
    l_s, l_t, l_1, l_2 = lam[:-1], lam[1:], lam[i1], lam[i2]
    midpoint = SOLVER_TYPES[solver_type] == "midpoint"

    def second(g, u, l_g, l_m, l_u):
        """Coefficient of ``(D_m - D_g)`` in the order-2 step ``g -> u`` (stage at ``m``), and
        ``c1(g -> u)``."""
        h = l_u - l_g
        _, c1 = first_order_coefficients(prediction, schedule, g, u)
        p2, _ = dpm_phis(prediction, schedule, u, h)
        return (0.5 * c1 if midpoint else p2) / ((l_m - l_g) / h), c1

    ratio, c1 = first_order_coefficients(prediction, schedule, s, t)
    zero = jnp.zeros_like(c1)
    b1 = jnp.stack([c1, zero, zero], 1)
    # order 2: x_{i+1} = ratio_i (x_i - c1(g1 -> s) D_g) + c1(g1 -> t) D_g + k (D_i - D_g)
    k, c1_gt = second(g1, t, l_1, l_s, l_t)
    _, c1_gs = first_order_coefficients(prediction, schedule, g1, s)
    b2 = jnp.stack([k, c1_gt - k - ratio * c1_gs, zero], 1)
    # order 3 from g2: x_i = (x_g terms) + c1(g2 -> s) D_g + kk (D_{i-1} - D_g)
    kk, c1_2s = second(g2, s, l_2, l_1, l_s)
    h = l_t - l_2
    r0, r1 = (l_s - l_2) / h, (l_1 - l_2) / h
    _, c1_2t = first_order_coefficients(prediction, schedule, g2, t)
    p2, p3 = dpm_phis(prediction, schedule, t, h)
    if midpoint:
        w_i, w_1 = p2 / r0, zero
    else:  # p2 D1 + p3 D2 with e0 = D_i - D_g, e1 = D_{i-1} - D_g:
        # D1 = (r0/r1 e1 - r1/r0 e0) / (r0 - r1), D2 = 2 (e0/r0 - e1/r1) / (r0 - r1)
        w_i = (-p2 * r1 / r0 + 2.0 * p3 / r0) / (r0 - r1)
        w_1 = (p2 * r0 / r1 - 2.0 * p3 / r1) / (r0 - r1)
    b3 = jnp.stack([w_i, w_1 - ratio * kk,
                    c1_2t - w_i - w_1 - ratio * (c1_2s - kk)], 1)
    orders = jnp.where(t == 0, 1, jnp.asarray(orders))[:, None]
    b = jnp.where(orders == 1, b1, jnp.where(orders == 2, b2, b3))
    return ratio, b


def _pad_rows(c, w, v, S: int, K: int):
    """Pads a ``k``-stage table (rows ``k``) to ``S`` rows, the update moved to the last row."""
    k = c.shape[1]
    n = c.shape[0]
    zc = jnp.zeros((n, S), c.dtype)
    zw = jnp.zeros((n, S, S), c.dtype)
    zv = jnp.zeros((n, S, K), c.dtype)
    zc = zc.at[:, : k - 1].set(c[:, : k - 1]).at[:, S - 1].set(c[:, k - 1])
    m = w.shape[2]
    zw = zw.at[:, : k - 1, :m].set(w[:, : k - 1]).at[:, S - 1, :m].set(w[:, k - 1])
    if K and v is not None:
        zv = zv.at[:, S - 1, : v.shape[1]].set(v)
    return zc, zw, zv


def _consistent_groups(table: tuple[int, ...]) -> bool:
    """Each entry ``k > 1`` follows ``k - 1`` (groups ``1, 2, .., k``)."""
    return all(k >= 1 and (k == 1 or (j > 0 and table[j - 1] == k - 1))
               for j, k in enumerate(table))


class DPMFamily(ExplicitStages):
    """Shared implementation of :class:`DPMSolver` and :class:`DPMSolverPP`."""

    prediction = "x0"

    def __post_init__(self):
        name = type(self).__name__
        check_order(name, self.solver_order, (1, 2, 3))
        if self.method not in _METHODS:
            raise ValueError(f"{name}: method={self.method!r}; use one of {_METHODS}.")
        if self.warmup not in ("lower_order", "singlestep"):
            raise ValueError(f"{name}: warmup={self.warmup!r}; use 'lower_order' or 'singlestep'.")
        if self.solver_type not in SOLVER_TYPES:
            raise ValueError(f"{name}: solver_type={self.solver_type!r}; use one of "
                             f"{sorted(SOLVER_TYPES)}.")
        if self.third_order not in _D2_WEIGHT:
            raise ValueError(f"{name}: third_order={self.third_order!r}; use 'taylor' "
                             "(Taylor-exact, third order) or 'reference' (diffusers / DPM-Solver "
                             "code).")
        object.__setattr__(self, "solver_type", SOLVER_TYPES[self.solver_type])
        caps = check_final_orders(name, self.final_orders)
        if caps and self.method != "multistep":
            raise ValueError(f"{name}: final_orders is a multistep option (method='multistep').")
        object.__setattr__(self, "final_orders", caps)
        table = tuple(int(k) for k in self.grid_orders)
        if table and (self.method != "singlestep-grid" or not _consistent_groups(table)):
            raise ValueError(f"{name}: grid_orders={self.grid_orders!r} is for "
                             "method='singlestep-grid' and must be groups 1, 2, .., k (k <= "
                             "order), as diffusers' get_order_list.")
        if table and max(table) > self.solver_order:
            raise ValueError(f"{name}: grid_orders={table} exceeds order={self.solver_order}.")
        object.__setattr__(self, "grid_orders", table)

    @property
    def space(self) -> str:
        return self.prediction

    # -- static tables ---------------------------------------------------------------------
    @property
    def _singlestep_warmup(self) -> bool:
        return self.method == "multistep" and self.warmup == "singlestep" and self.solver_order == 3

    @property
    def history(self) -> int:
        return self.solver_order - 1 if self.method != "singlestep" else 0

    @property
    def accepts_zero_final_step(self) -> bool:
        """``singlestep-grid`` takes diffusers' repeated ``sigma_min`` as its last step (where
        a group's last update lands on its own stage)."""
        return self.method == "singlestep-grid"

    @property
    def n_stages(self) -> int:
        if self.method == "singlestep":
            return self.solver_order
        return 2 if self._singlestep_warmup else 1

    def step_orders(self, n_steps: int) -> np.ndarray:
        """Static order of each step (a singlestep warm-up step counts as order 2)."""
        p = self.solver_order
        if self.method == "singlestep-grid":
            table = np.asarray(self.grid_orders or diffusers_singlestep_orders(
                n_steps, p, self.lower_order_final), np.int32)
            if table.size < n_steps:
                raise ValueError(f"{type(self).__name__}: grid_orders has {table.size} entries "
                                 f"for {n_steps} steps.")
            table = table[table.size - n_steps:]  # a later start (img2img) runs the last ones
            return np.minimum(table, np.arange(n_steps) + 1).astype(np.int32)
        if self.method == "singlestep":
            orders = np.full(n_steps, p, np.int32)
            if self.lower_order_final:
                orders = np.minimum(orders, n_steps - np.arange(n_steps)).astype(np.int32)
            return orders
        orders = multistep_orders(n_steps, p, self.lower_order_final)
        orders = cap_final_orders(orders, self.final_orders)
        if self._singlestep_warmup and n_steps > 1:
            orders[0] = 2  # singlestep DPM-Solver(++)-2; step 1 is multistep of order 2
        return orders

    def stages_per_step(self, n_steps):
        if self.method == "singlestep":
            return self.step_orders(n_steps)
        stages = np.ones(n_steps, np.int32)
        if self._singlestep_warmup and n_steps > 1:
            stages[0] = 2
        return stages

    @property
    def order(self) -> int:
        p = self.solver_order
        if self.method == "singlestep-grid":  # the order of a group is that of its last step
            orders = self.step_orders(18)  # 18: a whole number of groups for every order
            orders = [o for o, nxt in zip(orders, list(orders[1:]) + [1]) if nxt == 1]
        else:
            orders = self.step_orders(16)  # long enough to show every boundary step
        boundary = [int(k) for k in orders if k < p]
        # the reference 3M update (phi_3 weight) is second order
        reference_3m = p == 3 and self.method == "multistep" and self.third_order == "reference"
        bulk = 2 if reference_3m else p
        return boundary_bound(bulk, boundary)

    def validate(self, schedule, grid):
        check_noise_start(type(self).__name__, self.prediction, schedule, grid)

    # -- coefficients ----------------------------------------------------------------------
    def stage_table(self, schedule, grid):
        n = grid.shape[0] - 1
        S, K = self.n_stages, self.history
        orders = self.step_orders(n)
        if self.method == "singlestep":
            tables = [self.singlestep_table(schedule, grid, k, S, K) for k in range(1, S + 1)]
            per_step = orders
        else:
            tables = [self.multistep_table(schedule, grid, S, K)]
            per_step = np.zeros(n, np.int32) + 1
            if self._singlestep_warmup and n > 1:
                tables.append(self.singlestep_table(schedule, grid, 2, S, K))
                per_step = self.stages_per_step(n)
        s, c, w, v = tables[0]
        for k, tab in enumerate(tables[1:], start=2):
            pick = jnp.asarray(per_step == k)
            s, c, w, v = (jnp.where(pick.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)
                          for old, new in zip((s, c, w, v), tab))
        return s, c, w, v

    def multistep_table(self, schedule, grid, S: int = 1, K: int = 0):
        """The multistep update of every step at its static order, as stage-table rows."""
        s = grid[:-1]
        n = s.shape[0]
        if self.method == "singlestep-grid":
            ratio, b = singlestep_grid_weights(self.prediction, schedule, grid,
                                               self.step_orders(n), self.solver_type)
        else:
            ratio, b = multistep_weights(self.prediction, schedule, grid, self.step_orders(n),
                                         self.solver_type, self.third_order)
        stage_t = jnp.broadcast_to(s[:, None], (n, S))
        c = jnp.zeros((n, S), b.dtype).at[:, S - 1].set(ratio)
        w = jnp.zeros((n, S, S), b.dtype).at[:, S - 1, 0].set(b[:, 0])
        v = jnp.zeros((n, S, K), b.dtype).at[:, S - 1, :].set(b[:, 1: K + 1])
        return stage_t, c, w, v

    def singlestep_table(self, schedule, grid, k: int, S: int | None = None, K: int = 0):
        """Singlestep DPM-Solver(++)-``k`` on every step, as stage-table rows padded to ``S``
        stages (default ``k``) and ``K`` history columns."""
        S = k if S is None else S
        pred = self.prediction
        s, t = grid[:-1], grid[1:]
        n = s.shape[0]
        lam = half_log_snr(schedule, grid)
        lam_s, h = lam[:-1], lam[1:] - lam[:-1]
        ratio_t, c1_t = first_order_coefficients(pred, schedule, s, t)
        rs = {1: (), 2: (0.5,), 3: (1.0 / 3.0, 2.0 / 3.0)}[k]
        stage_t = [s] + [schedule.t_from_log_snr(2.0 * (lam_s + r * h)) for r in rs]
        first = [first_order_coefficients(pred, schedule, s, u) for u in stage_t[1:]]
        # rows 0..k-2: stages 1..k-1; row k-1: the update
        c = jnp.stack([f[0] for f in first] + [ratio_t], 1)
        w = jnp.zeros((n, k, k), h.dtype)
        for j, (_, c1_u) in enumerate(first):
            w = w.at[:, j, 0].set(c1_u)
        p2_t, _ = dpm_phis(pred, schedule, t, h)
        if k == 1:
            w = w.at[:, 0, 0].set(c1_t)
        elif k == 2:
            r1 = rs[0]
            # midpoint: + c1/(2 r1) (D1 - D0); heun: + p2/r1 (D1 - D0)
            coef = c1_t / (2 * r1) if self.solver_type == "midpoint" else p2_t / r1
            w = w.at[:, 1, 0].set(c1_t - coef).at[:, 1, 1].set(coef)
        else:
            r1, r2 = rs
            p22, _ = dpm_phis(pred, schedule, stage_t[2], r2 * h)
            inner = r2 / r1 * p22
            w = w.at[:, 1, 0].add(-inner).at[:, 1, 1].set(inner)
            outer = p2_t / r2
            w = w.at[:, 2, 0].set(c1_t - outer).at[:, 2, 2].set(outer)
        # A step to t = 0: the first-order step from the last stage u_{k-1}.
        ratio_0, c1_0 = first_order_coefficients(pred, schedule, stage_t[-1], t)
        if k == 1:
            c_end, w_end = ratio_0, c1_0[:, None] * jnp.eye(1, dtype=h.dtype)[0]
        else:
            c_end = ratio_0 * c[:, k - 2]
            last = jnp.eye(k, dtype=h.dtype)[k - 1]
            w_end = ratio_0[:, None] * w[:, k - 2] + c1_0[:, None] * last
        final = t == 0
        c = c.at[:, k - 1].set(jnp.where(final, c_end, c[:, k - 1]))
        w = w.at[:, k - 1].set(jnp.where(final[:, None], w_end, w[:, k - 1]))
        times = jnp.stack(stage_t + [s] * (S - k), 1)
        c, w, v = _pad_rows(c, w, None, S, K)
        return times, c, w, v


@solver_dataclass
class DPMSolverPP(DPMFamily):
    """DPM-Solver++ (data prediction). ``order=2`` (multistep) is "DPM++ 2M", ``order=3``
    "3M"; ``method="singlestep"`` gives "2S"/"3S" (``order`` evaluations per step, stages at
    log-SNR fractions); ``method="singlestep-grid"`` is diffusers'
    ``DPMSolverSinglestepScheduler``: the stages are the grid's own points, one evaluation per
    grid step, a group of ``k`` steps is one singlestep step of order ``k``.

    Args (dataclass fields; ``order=`` sets ``solver_order``):
      solver_order: 1, 2 or 3, the order of the update formulas.
      method: ``"multistep"`` (one evaluation per step) or ``"singlestep"``.
      solver_type: ``"midpoint"`` (DPM-Solver's ``dpmsolver``) or ``"heun"`` (``taylor``) for
        the second-order terms.
      lower_order_final: the last steps use orders ``min(order, steps left)`` (at every step
        count; diffusers applies it below 15 steps, which ``from_diffusers_scheduler`` mirrors).
      warmup: ``"lower_order"`` (orders ``1, 2, ..``: diffusers and DPM-Solver) or
        ``"singlestep"`` (3M only: a singlestep DPM-Solver++-2 first step, one more evaluation,
        which keeps the global order 3).
      third_order: ``"taylor"`` (``2 phi_3``, default) or ``"reference"`` (``phi_3``, diffusers).
      grid_orders: ``method="singlestep-grid"`` only: the order of each grid step (default
        :func:`diffusers_singlestep_orders` of the grid's length and ``lower_order_final``); a
        shorter grid (a later start) takes the last entries, reduced to the outputs it has.
      final_orders: multistep only: caps on the orders of the last ``len(final_orders)`` steps
        (``(2, 1)`` is ``lower_order_final`` for order 3; ``(3, 1)`` diffusers'
        ``euler_at_final``; ``(2,)`` diffusers' order-3 pattern before a repeated ``sigma_min``).

    ``order`` is the global convergence order these settings achieve (see the module docstring):
    ``DPMSolverPP(order=3).order == 2``;
    ``DPMSolverPP(order=3, warmup="singlestep", lower_order_final=False).order == 3``.
    """

    solver_order: int = 2
    method: str = "multistep"
    solver_type: str = "midpoint"
    lower_order_final: bool = True
    warmup: str = "lower_order"
    third_order: str = "taylor"
    final_orders: tuple[int, ...] = ()
    grid_orders: tuple[int, ...] = ()
    prediction = "x0"


@solver_dataclass
class DPMSolver(DPMFamily):
    """DPM-Solver (noise prediction): ``method="singlestep"`` (DPM-Solver-1/2/3, ``order``
    model evaluations per step) or ``"multistep"``. Same options as :class:`DPMSolverPP`; it
    cannot start where ``alpha = 0``."""

    solver_order: int = 2
    method: str = "singlestep"
    solver_type: str = "midpoint"
    lower_order_final: bool = False
    warmup: str = "lower_order"
    third_order: str = "taylor"
    final_orders: tuple[int, ...] = ()
    grid_orders: tuple[int, ...] = ()
    prediction = "eps"
