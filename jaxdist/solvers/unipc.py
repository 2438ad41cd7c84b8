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
predictor"), then UniP to ``t_{i+1}``. All weights are per-step arrays computed once from the
grid; a step is two ``tensordot``s. There is no corrector after the last step.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ..schedules import Schedule
from .base import (LinearMultistep, _check_order, half_log_snr, multistep_orders,
                   solver_dataclass)
from .dpm_solver import _first_order

Array = jax.Array

__all__ = ["UniPC", "phi_functions", "unipc_tables"]

_SERIES_TERMS = 16


def phi_functions(z: Array, k_max: int) -> list[Array]:
    """``[phi_1(z), .., phi_kmax(z)]``: ``phi_1 = expm1(z)/z``, ``phi_(k+1) = (phi_k - 1/k!)/z``.

    The recursion cancels catastrophically for small ``|z|``; there the Taylor series
    ``phi_k(z) = sum_j z^j / (j + k)!`` is used instead (``|z| < 1``, 16 terms).
    """
    small = jnp.abs(z) < 1.0
    zs = jnp.where(small, z, 1.0)  # keeps both branches finite
    zl = jnp.where(small, 1.0, z)
    out = []
    rec = jnp.expm1(zl) / zl
    for k in range(1, k_max + 1):
        series = sum(zs**j / float(math.factorial(j + k)) for j in range(_SERIES_TERMS))
        out.append(jnp.where(small, series, rec))
        rec = (rec - 1.0 / math.factorial(k)) / zl
    return out


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
    ratio, c1 = _first_order(prediction, schedule, s, t)
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


def select_by_order(orders: Array, tables: list[Array], width: int) -> Array:
    """Row ``i`` of ``tables[orders[i] - 1]`` (each ``[n, k]``, zero-padded to ``width``)."""
    padded = [jnp.pad(tab, ((0, 0), (0, width - tab.shape[1]))) for tab in tables]
    out = padded[0]
    for k, tab in enumerate(padded[1:], start=2):
        out = jnp.where((orders == k)[:, None], tab, out)
    return out


def final_first_order(orders, grid: Array) -> Array:
    """Per-step orders with the step to ``t = 0`` (if any) forced to first order."""
    return jnp.where(grid[1:] == 0, 1, jnp.asarray(orders))


@solver_dataclass
class UniPC(LinearMultistep):
    """UniPC multistep sampler: UniP-``order`` predictor plus (``corrector=True``) UniC.

    Args (dataclass fields):
      order: 1, 2 or 3 (diffusers' ``solver_order``); with the corrector the method has order
        of accuracy ``order + 1`` (Zhao et al. 2023). Warm-up uses orders ``1, 2, ..``.
      variant: ``"bh1"`` (``B(h) = h``) or ``"bh2"`` (``B(h) = expm1(h)``; diffusers' default).
      prediction: ``"x0"`` (data prediction, diffusers' ``predict_x0=True``) or ``"eps"``.
      corrector: apply UniC (free: it reuses the next model evaluation); never after the last step.
      lower_order_final: last steps use orders ``.., 2, 1`` (no step-count threshold, as in the
        reference and diffusers). Its final first-order step bounds the global order by 2.
      rho: ``"reference"`` (``rho = 1/2`` for UniP-2 / UniC-1, as the reference and diffusers)
        or ``"solve"`` (solve every Vandermonde system; then ``bh1`` and ``bh2`` coincide).

    NFE = number of steps. A step to ``t = 0`` is first order and returns ``alpha_0 x0_hat``.
    """

    order: int = 2
    variant: str = "bh2"
    prediction: str = "x0"
    corrector: bool = True
    lower_order_final: bool = True
    rho: str = "reference"

    def __post_init__(self):
        _check_order("UniPC", self.order, (1, 2, 3))
        if self.variant not in ("bh1", "bh2"):
            raise ValueError(f"UniPC: variant={self.variant!r}; use 'bh1' or 'bh2'.")
        if self.prediction not in ("x0", "eps"):
            raise ValueError(f"UniPC: prediction={self.prediction!r}; use 'x0' or 'eps'.")
        if self.rho not in ("reference", "solve"):
            raise ValueError(f"UniPC: rho={self.rho!r}; use 'reference' or 'solve'.")

    @property
    def space(self) -> str:  # type: ignore[override]
        return self.prediction

    @property
    def history(self) -> int:
        return self.order + (1 if self.corrector else 0)

    @property
    def convergence_order(self) -> int:
        """Order of accuracy of the steps: ``order + 1`` with the corrector."""
        return self.order + (1 if self.corrector else 0)

    def validate(self, schedule, grid):
        validate_noise_start(type(self).__name__, self.prediction, schedule, grid)

    def weights(self, schedule, grid):
        return self._tables(schedule, grid)[:2]

    def _tables(self, schedule, grid):
        n = grid.shape[0] - 1
        orders = final_first_order(multistep_orders(n, self.order, self.lower_order_final), grid)
        tabs = [unipc_tables(schedule, grid, k, self.prediction, self.variant, self.rho)
                for k in range(1, self.order + 1)]
        width = self.history
        b = select_by_order(orders, [tb[1] for tb in tabs], width)
        corr = select_by_order(orders, [tb[2] for tb in tabs], self.order + 1)[:, :width]
        # UniC of interval i-1 is applied at the start of step i (none before the first step).
        corr = jnp.concatenate([jnp.zeros_like(corr[:1]), corr[:-1]])
        if not self.corrector:
            corr = jnp.zeros_like(corr)
        return tabs[0][0], b, corr

    def coefficients(self, schedule, grid):
        a, b, corr = self._tables(schedule, grid)
        return {"t": grid[:-1], "t_next": grid[1:], "a": a, "b": b, "corr": corr}

    def step(self, model, state, coef, key):
        x, hist, ms = state
        x0, eps, ms = model(x, coef["t"], ms)
        d = x0 if self.prediction == "x0" else eps
        hist = jnp.concatenate([d[None].astype(hist.dtype), hist[:-1]])
        x = x + jnp.tensordot(coef["corr"].astype(x.dtype), hist, 1)  # UniC (zero at step 0)
        x_next = coef["a"].astype(x.dtype) * x + jnp.tensordot(coef["b"].astype(x.dtype), hist, 1)
        return x_next, hist, ms


def validate_noise_start(name: str, prediction: str, schedule: Schedule, grid) -> None:
    """Noise-prediction exponential integrators divide by ``alpha_s``: refuses a grid starting
    where ``alpha = 0``."""
    if prediction != "eps":
        return
    try:
        a0 = float(schedule.alpha(jnp.asarray(grid)[0]))
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return
    if a0 == 0.0:
        raise ValueError(f"{name} (noise prediction) cannot start where alpha = 0 "
                         f"(grid[0]={float(jnp.asarray(grid)[0])}); start the grid below t_max "
                         "(e.g. 0.999 for RectifiedFlow) or use data prediction.")
