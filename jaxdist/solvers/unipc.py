"""UniPC (Zhao et al. 2023): the unified predictor UniP-p and the corrector UniC-p.

With ``lambda = log(alpha/sigma)`` (half the log-SNR), ``h = lambda_t - lambda_s`` and model
outputs ``m`` (data prediction ``x0`` or noise prediction ``eps``), both are

    x_t = x~_t - A_t B(h) sum_k rho_k D_k,    D_k = (m_{-k} - m_0) / r_k,
    r_k = (lambda_{-k} - lambda_s) / h,

where ``x~_t`` is the exact first-order (DDIM) step from ``x_s``, ``A_t = alpha_t`` (data) or
``sigma_t`` (noise prediction), ``hh = -h`` (data) or ``h`` (noise), ``B(h) = hh`` (``bh1``) or
``expm1(hh)`` (``bh2``), and ``rho`` solves ``sum_k rho_k r_k^(j-1) = j! hh phi_(j+1)(hh) / B(h)``
(``j = 1..``; ``phi_1(z) = expm1(z)/z``, ``phi_(k+1)(z) = (phi_k(z) - 1/k!) / z``).

* UniP-p (predictor) uses ``m_0 .. m_{-(p-1)}`` (the ``p - 1`` previous outputs).
* UniC-p (corrector) adds ``D = m_t - m_0`` with ``r = 1``, ``m_t`` the output at the predicted
  point: the model evaluation that the next step needs anyway, so the corrector costs no NFE.
  It raises the order of accuracy from ``p`` to ``p + 1``.

Implementation: the step at ``t_i`` evaluates the model at the predicted ``x_i``, applies UniC of
the previous interval (``x_i += sum_j c_j m_{i-j}``, a weight table that is "corrector minus
predictor"), then UniP to ``t_{i+1}``. Both are linear in the history, so they are merged into
one :class:`~jaxdist.solvers.base.LinearMultistep` table (``b + a c``): a step is one
``tensordot``. There is no corrector after the last step.

Global order (``solver.order``): the steps have order of accuracy ``order + 1`` (with the
corrector); the first-order warm-up step keeps that (UniP-1 + UniC-1 is second order), but the
last step is not corrected, so ``lower_order_final`` (a first-order last step) bounds the global
order by 2, and without it the order is ``order + 1`` for ``order <= 2``, 3 for ``order = 3``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ..schedules import Schedule
from .base import LinearMultistep, solver_dataclass
from .primitives import (boundary_bound, check_noise_start, check_order,
                         first_order_coefficients, half_log_snr, multistep_orders,
                         phi_functions, select_by_order)

Array = jax.Array

__all__ = ["UniPC", "unipc_tables"]


def unipc_tables(schedule: Schedule, grid: Array, order: int, prediction: str = "x0",
                 variant: str = "bh2", rho: str = "reference") -> tuple[Array, Array, Array]:
    """UniP-``order`` and UniC-``order`` weights for every interval ``t_i -> t_{i+1}``.

    Returns ``ratio [n]``, ``pred [n, order]`` (weights on ``m_i, m_{i-1}, ..``: the predicted
    ``x_{i+1} = ratio x_i + pred . m``) and ``corr [n, order + 1]`` (weights on
    ``m_{i+1}, m_i, m_{i-1}, ..``: the corrected ``x_{i+1}`` is the predicted one plus
    ``corr . m``).
    Warm-up steps (``i < order - 1``) use extrapolated dummy log-SNRs; select them away.
    ``rho="reference"`` uses the reference code's ``rho = 1/2`` for UniP-2 and UniC-1 (this is
    what makes ``bh1`` and ``bh2`` differ); ``"solve"`` solves every system.
    """
    lam = half_log_snr(schedule, grid)
    s, t = grid[:-1], grid[1:]
    h = lam[1:] - lam[:-1]
    n = h.shape[0]
    lam_ext = jnp.concatenate([lam[0] - h[0] * jnp.arange(3, 0, -1, dtype=h.dtype), lam[:-1]])
    # r[:, k-1] = (lambda_{i-k} - lambda_i) / h_i, k = 1, 2 (negative: past points)
    r = jnp.stack([(lam_ext[3 - k: 3 - k + n] - lam[:-1]) / h for k in (1, 2)], 1)
    ratio, c1 = first_order_coefficients(prediction, schedule, s, t)
    hh = -h if prediction == "x0" else h
    big_a = schedule.alpha(t) if prediction == "x0" else schedule.sigma(t)
    b_h = hh if variant == "bh1" else jnp.expm1(hh)
    phis = phi_functions(hh, order + 1)
    # g_j = B(h) b_j = j! hh phi_(j+1)(hh): right-hand sides of the rho systems times B(h)
    g = jnp.stack([float(math.factorial(j)) * hh * phis[j] for j in range(1, order + 1)], 1)
    p = order

    def solve(nodes: Array, rhs: Array) -> Array:  # rho * B(h), [n, m]
        m = nodes.shape[1]
        vander = jnp.stack([nodes**j for j in range(m)], 1)  # [n, m (rows j), m (cols k)]
        return jnp.linalg.solve(vander, rhs[..., None])[..., 0]

    if p == 1:
        rho_p = jnp.zeros((n, 0), h.dtype)
    elif p == 2 and rho == "reference":
        rho_p = 0.5 * b_h[:, None]
    else:
        rho_p = solve(r[:, : p - 1], g[:, : p - 1])
    nodes_c = jnp.concatenate([r[:, : p - 1], jnp.ones((n, 1), h.dtype)], 1)
    rho_c = 0.5 * b_h[:, None] if (p == 1 and rho == "reference") else solve(nodes_c, g)
    ak = big_a[:, None]
    rr = r[:, : p - 1]
    pred = jnp.concatenate([(c1 + big_a * jnp.sum(rho_p / rr, 1))[:, None], -ak * rho_p / rr], 1)
    diff = rho_c[:, :-1] - rho_p
    corr = jnp.concatenate([-ak * rho_c[:, -1:],
                            ak * (rho_c[:, -1:] + jnp.sum(diff / rr, 1, keepdims=True)),
                            -ak * diff / rr], 1)
    return ratio, pred, corr


@solver_dataclass
class UniPC(LinearMultistep):
    """UniPC multistep sampler: UniP-``order`` predictor plus (``corrector=True``) UniC.

    Args (dataclass fields; ``order=`` sets ``solver_order``):
      solver_order: 1, 2 or 3 (diffusers' ``solver_order``). Warm-up uses orders ``1, 2, ..``.
      variant: ``"bh1"`` (``B(h) = h``) or ``"bh2"`` (``B(h) = expm1(h)``; diffusers' default).
      prediction: ``"x0"`` (data prediction, diffusers' ``predict_x0=True``) or ``"eps"``.
      corrector: apply UniC (free: it reuses the next model evaluation); never after the last step.
      lower_order_final: last steps use orders ``.., 2, 1`` (no step-count threshold, as in the
        reference and diffusers). Its final first-order step bounds the global order by 2.
      rho: ``"reference"`` (``rho = 1/2`` for UniP-2 / UniC-1, as the reference and diffusers)
        or ``"solve"`` (solve every Vandermonde system; then ``bh1`` and ``bh2`` coincide).
      disable_corrector: indices ``d`` of steps whose result is not corrected (the UniC at
        step ``d + 1`` is skipped), as diffusers' ``disable_corrector`` (static; empty default).

    ``order``: the global convergence order (module docstring). NFE = number of steps. A step to
    ``t = 0`` is first order and returns ``alpha_0 x0_hat``.
    """

    solver_order: int = 2
    variant: str = "bh2"
    prediction: str = "x0"
    corrector: bool = True
    lower_order_final: bool = True
    rho: str = "reference"
    disable_corrector: tuple[int, ...] = ()

    def __post_init__(self):
        check_order("UniPC", self.solver_order, (1, 2, 3))
        if self.variant not in ("bh1", "bh2"):
            raise ValueError(f"UniPC: variant={self.variant!r}; use 'bh1' or 'bh2'.")
        if self.prediction not in ("x0", "eps"):
            raise ValueError(f"UniPC: prediction={self.prediction!r}; use 'x0' or 'eps'.")
        if self.rho not in ("reference", "solve"):
            raise ValueError(f"UniPC: rho={self.rho!r}; use 'reference' or 'solve'.")
        object.__setattr__(self, "disable_corrector", tuple(int(i) for i in self.disable_corrector))

    @property
    def accepts_zero_final_step(self) -> bool:
        """With a first-order last step, diffusers' repeated ``sigma_min`` (a zero-length last
        step) is exact: it corrects the previous step (one more evaluation) and moves nowhere."""
        return self.lower_order_final or self.solver_order == 1

    @property
    def space(self) -> str:
        return self.prediction

    @property
    def history(self) -> int:
        return self.solver_order + (1 if self.corrector else 0)

    @property
    def order(self) -> int:
        p, corr = self.solver_order, int(self.corrector)
        orders = multistep_orders(16, p, self.lower_order_final)
        boundary = [int(o) + corr for o in orders[:-1] if o + corr < p + corr] + [int(orders[-1])]
        return boundary_bound(p + corr, boundary)

    def validate(self, schedule, grid):
        check_noise_start(type(self).__name__, self.prediction, schedule, grid)

    def predictor_corrector(self, schedule, grid) -> tuple[Array, Array, Array]:
        """Unmerged tables: ``ratio [n]``, UniP weights ``pred [n, K]`` on ``m_i, m_{i-1}, ..``
        and ``corr [n, K]``, the UniC of interval ``i - 1`` applied at the start of step ``i``
        (zero at step 0 and without the corrector)."""
        n = grid.shape[0] - 1
        static = multistep_orders(n, self.solver_order, self.lower_order_final)
        orders = jnp.where(grid[1:] == 0, 1, jnp.asarray(static))
        tabs = [unipc_tables(schedule, grid, k, self.prediction, self.variant, self.rho)
                for k in range(1, self.solver_order + 1)]
        width = self.history
        b = select_by_order(orders, [tb[1] for tb in tabs], width)
        corr = select_by_order(orders, [tb[2] for tb in tabs], self.solver_order + 1)[:, :width]
        corr = jnp.concatenate([jnp.zeros_like(corr[:1]), corr[:-1]])
        skip = [d + 1 for d in self.disable_corrector if 0 <= d + 1 < n]
        if skip:
            corr = corr.at[jnp.asarray(skip)].set(0.0)
        if not self.corrector:
            corr = jnp.zeros_like(corr)
        return tabs[0][0], b, corr

    def weights(self, schedule, grid):
        ratio, b, corr = self.predictor_corrector(schedule, grid)
        # x_next = ratio (x + corr . m) + b . m: one table
        return ratio, b + ratio[:, None] * corr
