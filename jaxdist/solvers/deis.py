"""DEIS (Zhang & Chen 2023) time-Adams-Bashforth and iPNDM (Zhang & Chen 2023; Zhou et al. 2024).

Both integrate the probability-flow ODE in the "EDM variables" ``y = x / alpha`` and
``rho = sigma / alpha``, in which it reads ``dy/drho = eps_hat(x, t)``; so

    x_t = (alpha_t / alpha_s) x_s + alpha_t int_{rho_s}^{rho_t} eps(rho) drho.

* **DEIS tAB-p** interpolates ``eps`` by the Lagrange polynomial in *time* ``t`` through the last
  ``p`` outputs ``eps_i, .., eps_{i-p+1}`` and integrates it exactly (up to quadrature):
  ``b_ij = alpha_t int_{rho_s}^{rho_t} L_j(t(rho)) drho``. The integrals are Gauss-Legendre
  quadratures in ``rho`` (``t(rho)`` is smooth in ``rho`` for VP, VE/EDM and rectified flow, unlike
  ``rho'(t)`` which is singular at ``t = 0`` for VP), computed once for the whole grid outside the
  loop; ``b_i0`` is then set so that ``sum_j b_ij`` equals the exact first-order weight
  ``sigma_t - alpha_t sigma_s / alpha_s`` (``p = 1`` is DDIM).
* **iPNDM-p** uses the fixed Adams-Bashforth weights ``[1]``, ``[3, -1]/2``, ``[23, -16, 5]/12``,
  ``[55, -59, 37, -9]/24`` on ``eps_i, eps_{i-1}, ..`` times ``alpha_t (rho_t - rho_s)``: on EDM
  (``alpha = 1``) exactly k-diffusion's / diff-solvers' ``sample_ipndm`` in ``sigma``. The fixed
  weights assume steps uniform in ``rho``; on other grids the global order is at most 2.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..schedules import Schedule
from .base import LinearMultistep, solver_dataclass
from .primitives import (boundary_bound, cap_final_orders, check_final_orders, check_noise_start,
                         check_order, first_order_coefficients, multistep_orders,
                         select_by_order)

Array = jax.Array

__all__ = ["DEIS", "IPNDM", "EpsMultistep", "deis_tables", "IPNDM_WEIGHTS"]

#: Adams-Bashforth weights of iPNDM-p on ``eps_i, eps_{i-1}, ..``
IPNDM_WEIGHTS = (
    (1.0,),
    (3 / 2, -1 / 2),
    (23 / 12, -16 / 12, 5 / 12),
    (55 / 24, -59 / 24, 37 / 24, -9 / 24),
)


def _rho(schedule: Schedule, t: Array) -> Array:
    return schedule.sigma(t) / schedule.alpha(t)


def deis_tables(schedule: Schedule, grid: Array, order: int, nodes: int = 32,
                variable: str = "t") -> Array:
    """tAB-``order`` weights ``b [n, order]`` on ``eps_i, eps_{i-1}, ..`` for every step.

    ``variable="t"``: Lagrange basis in time (DEIS tAB); ``"rho"``: in ``rho = sigma/alpha``
    (DEIS rhoAB = variable-step Adams-Bashforth in the EDM variable); ``"logrho"``: in
    ``log rho = -lambda`` (the basis of diffusers' ``DEISMultistepScheduler``,
    ``solver_type="logrho"``). Warm-up rows (``i < order - 1``) use extrapolated dummy past
    nodes; select them away.
    """
    s, t = grid[:-1], grid[1:]
    n = s.shape[0]
    _, c1 = first_order_coefficients("eps", schedule, s, t)
    if order == 1:
        return c1[:, None]
    rho_s, rho_t = _rho(schedule, s), _rho(schedule, t)
    knots = {"t": lambda: grid, "rho": lambda: _rho(schedule, grid),
             "logrho": lambda: jnp.log(_rho(schedule, grid))}[variable]()
    dt0 = knots[0] - knots[1]
    t_ext = jnp.concatenate([knots[0] + dt0 * jnp.arange(order - 1, 0, -1, dtype=grid.dtype),
                             knots[:-1]])
    # past[:, j] = t_{i-j}, j = 0..order-1
    past = jnp.stack([t_ext[order - 1 - j: order - 1 - j + n] for j in range(order)], 1)
    xg, wg = np.polynomial.legendre.leggauss(nodes)
    half = 0.5 * (rho_t - rho_s)
    rho_q = (rho_s + rho_t)[:, None] * 0.5 + half[:, None] * jnp.asarray(xg, grid.dtype)
    rho_q = jnp.maximum(rho_q, jnp.finfo(grid.dtype).tiny)
    tau = {"t": lambda: schedule.t_from_log_snr(-2.0 * jnp.log(rho_q)), "rho": lambda: rho_q,
           "logrho": lambda: jnp.log(rho_q)}[variable]()
    weights = []
    for j in range(order):
        basis = jnp.ones_like(tau)
        for m in range(order):
            if m != j:
                basis = basis * (tau - past[:, m:m + 1]) / (past[:, j:j + 1] - past[:, m:m + 1])
        weights.append(schedule.alpha(t) * half * (basis @ jnp.asarray(wg, grid.dtype)))
    b = jnp.stack(weights, 1)
    # The basis sums to one: make the first-order part exact (and exact at t = 0).
    return b.at[:, 0].set(c1 - jnp.sum(b[:, 1:], 1))


class EpsMultistep(LinearMultistep):
    """Noise-prediction multistep in the EDM variables: ``a = alpha_t / alpha_s``; subclasses
    give ``table(schedule, grid, k) -> b [n, k]`` for each order ``k``."""

    space = "eps"
    #: a step to ``t = 0`` is first order (returns ``alpha_0 x0_hat``); LMS integrates its
    #: polynomial there instead
    first_order_to_zero = True

    def validate(self, schedule, grid):
        check_noise_start(type(self).__name__, "eps", schedule, grid)

    def step_orders(self, n_steps: int):
        """Static orders: warm-up ``1, 2, ..`` and, with ``lower_order_final``, ``.., 2, 1``."""
        return multistep_orders(n_steps, self.solver_order, self.lower_order_final)

    #: order of the steps in the bulk (iPNDM's fixed weights: 2 on non-uniform grids)
    @property
    def bulk_order(self) -> int:
        return self.solver_order

    @property
    def order(self) -> int:
        boundary = [int(o) for o in self.step_orders(16) if o < self.solver_order]
        return boundary_bound(self.bulk_order, boundary)

    def weights(self, schedule, grid):
        a, _ = first_order_coefficients("eps", schedule, grid[:-1], grid[1:])
        tables = [self.table(schedule, grid, k) for k in range(1, self.solver_order + 1)]
        orders = jnp.asarray(self.step_orders(grid.shape[0] - 1))
        if self.first_order_to_zero:
            orders = jnp.where(grid[1:] == 0, 1, orders)
        return a, select_by_order(orders, tables, self.solver_order)


@solver_dataclass
class DEIS(EpsMultistep):
    """DEIS tAB-``order`` (orders 1-3; diffusers' ``DEISMultistepScheduler`` uses ``logrho``).

    ``lower_order_final``: last steps use orders ``.., 2, 1``. Warm-up uses ``1, 2, ..``; its
    first-order first step bounds the global order of tAB3 by 2 in the limit, so
    ``DEIS(order=3).order == 2`` (``order=`` sets ``solver_order``).
    ``quadrature_nodes``: Gauss-Legendre nodes per step for the coefficients
    (32: relative error 3e-15 on a 10-step VP grid; 16: 1e-9).
    ``variable``: ``"t"`` (tAB, default), ``"rho"`` (rhoAB: Lagrange basis in ``sigma/alpha``) or
    ``"logrho"`` (basis in ``log(sigma/alpha)``, as diffusers' ``solver_type="logrho"``).
    ``final_orders``: caps on the orders of the last steps (as ``DPMSolverPP``'s).
    NFE = number of steps; a step to ``t = 0`` is first order and returns ``alpha_0 x0_hat``.
    """

    solver_order: int = 3
    lower_order_final: bool = True
    quadrature_nodes: int = 32
    variable: str = "t"
    final_orders: tuple[int, ...] = ()

    def __post_init__(self):
        check_order("DEIS", self.solver_order, (1, 2, 3))
        object.__setattr__(self, "final_orders", check_final_orders("DEIS", self.final_orders))
        if self.variable not in ("t", "rho", "logrho"):
            raise ValueError(f"DEIS: variable={self.variable!r}; use 't' (tAB), 'rho' (rhoAB) "
                             "or 'logrho' (diffusers).")
        if self.quadrature_nodes < 2:
            raise ValueError(f"DEIS: quadrature_nodes={self.quadrature_nodes} must be >= 2.")

    def step_orders(self, n_steps: int):
        return cap_final_orders(super().step_orders(n_steps), self.final_orders)

    def table(self, schedule, grid, k):
        return deis_tables(schedule, grid, k, self.quadrature_nodes, self.variable)


@solver_dataclass
class IPNDM(EpsMultistep):
    """iPNDM-``order`` (orders 1-4): fixed Adams-Bashforth weights in ``rho = sigma/alpha``.

    ``x_{i+1} = (alpha_{i+1}/alpha_i) x_i + alpha_{i+1} (rho_{i+1} - rho_i) sum_j w_pj eps_{i-j}``
    (``w`` = :data:`IPNDM_WEIGHTS`). Warm-up uses orders ``1, 2, ..``; ``lower_order_final`` is
    off by default, as in the reference. NFE = number of steps.

    The fixed weights are exact only for steps uniform in ``rho``; on other grids (Karras,
    log-SNR) the local error has an ``O(h (h_i - h_{i-1}))`` term and iPNDM-3/4 converge at
    order 2. ``variable_step=True`` uses the exact variable-step Adams-Bashforth weights in
    ``rho`` (the integrals of the Lagrange basis in ``rho``, i.e. DEIS rhoAB), which keep order
    ``p`` on any grid and equal the fixed weights on a ``rho``-uniform grid. The first-order
    warm-up step bounds the global order by 2 either way, so ``IPNDM(order=4).order == 2``.
    """

    solver_order: int = 4
    lower_order_final: bool = False
    variable_step: bool = False

    def __post_init__(self):
        check_order("IPNDM", self.solver_order, (1, 2, 3, 4))

    @property
    def bulk_order(self) -> int:
        return self.solver_order if self.variable_step else min(self.solver_order, 2)

    def table(self, schedule, grid, k):
        if self.variable_step:
            return deis_tables(schedule, grid, k, nodes=4, variable="rho")
        _, c1 = first_order_coefficients("eps", schedule, grid[:-1], grid[1:])
        return c1[:, None] * jnp.asarray(IPNDM_WEIGHTS[k - 1], grid.dtype)
