"""DC-Solver (Zhao et al. 2024): UniPC with dynamic compensation of the newest model output.

At step ``i`` (from ``t_i``) the model output ``m_i`` is evaluated as in UniPC and first used
uncompensated by the corrector UniC of the previous interval; the predictor UniP from ``t_i``
(and every later use of that history entry) then takes the Lagrange interpolation through the
last ``dc_order + 1`` outputs (compensated ones for the older entries), in time, at the shifted
time ``t'_i = rho_i t_i + (1 - rho_i) t_{i-1}``:

    m~_i = sum_k L_k(t'_i) m_{i-k},    L_k(t) = prod_{j != k} (t - t_{i-j}) / (t_{i-k} - t_{i-j}),
    x_c = x_i + corr_i . [m_i, m~_{i-1}, ..],    x_{i+1} = ratio_i x_c + pred_i . [m~_i, m~_{i-1}, ..].

``rho_i = 1`` gives ``m~_i = m_i``: UniPC. Steps with fewer than ``dc_order + 1`` outputs
(``i < dc_order``) are not compensated (the reference searches ratios from step 2 on). Checked
against the official code (wl-zhao/DC-Solver,
``diffusers/src/diffusers/schedulers/scheduling_dcsolver_multistep.py``:
``dynamic_compensation`` (``t_ = ratio (t[-1] - t[-2]) + t[-2]``, Lagrange through
``dc_order + 1`` buffered outputs), ``_step`` (corrector with the raw output, then the buffer's
newest entry replaced, persistently) and ``find_optim_ratio`` (per step, AdamW lr 0.1, ratio
``0.5 tanh(p) + 1``, MSE to the ground-truth trajectory after the next corrector)).

:func:`jaxdist.tune.fit_dc_ratios` fits all ratios jointly by Adam on the mean squared distance of the
trajectory on the grid to a reference trajectory, by ``jax.grad`` through the sampling loop
(the reference fits
them greedily, one step at a time); ratios are bounded as in the reference,
``rho = 1 + 0.5 tanh(p)``. The ratios ``rho [n_steps]`` are data (pytree leaves): one
compilation for all values, differentiable.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .base import MultistepState, Solver, push
from .primitives import output_in_space
from .unipc import UniPC

Array = jax.Array

__all__ = ["DCSolver", "DCCoefs", "lagrange_weights"]


class DCCoefs(NamedTuple):
    """Per step: UniPC's unmerged tables (``ratio [n]``, ``pred [n, W]``, ``corr [n, W]``) and
    the compensation weights ``lag [n, W]`` on ``[m_i, m~_{i-1}, ..]``."""

    t: Array
    t_next: Array
    ratio: Array
    pred: Array
    corr: Array
    lag: Array


def lagrange_weights(grid: Array, rho: Array, dc_order: int, width: int) -> Array:
    """``lag [n, width]``: weights of ``m_i, m_{i-1}, ..`` in the interpolation at
    ``rho_i t_i + (1 - rho_i) t_{i-1}`` through ``t_i, .., t_{i - dc_order}`` (``e_0`` on steps
    ``i < dc_order``)."""
    t = grid[:-1]
    n = t.shape[0]
    k = dc_order + 1
    idx = np.arange(n)
    nodes = jnp.stack([t[np.maximum(idx - j, 0)] for j in range(k)], 1)  # [n, k]
    active = jnp.asarray(idx >= dc_order)
    prev = nodes[:, min(1, k - 1)]
    t_dc = rho * t + (1.0 - rho) * prev
    safe = jnp.where(active[:, None], nodes, nodes + jnp.arange(k, dtype=t.dtype))  # distinct
    cols = []
    for a in range(k):
        w = jnp.ones_like(t)
        for b in range(k):
            if a != b:
                w = w * (t_dc - safe[:, b]) / (safe[:, a] - safe[:, b])
        cols.append(w)
    lag = jnp.stack(cols, 1)
    e0 = jnp.zeros((n, k), t.dtype).at[:, 0].set(1.0)
    lag = jnp.where(active[:, None], lag, e0)
    return jnp.pad(lag, ((0, 0), (0, width - k)))


@dataclasses.dataclass(frozen=True, eq=False)
class DCSolver(Solver):
    """UniPC with dynamic compensation (module docstring).

    Args:
      rho: compensation ratios ``[n_steps]`` (data; ``1``: UniPC). Build ones with
        :meth:`identity`; fit them with :func:`jaxdist.tune.fit_dc_ratios`.
      base: the UniPC predictor-corrector (default ``UniPC(order=2, variant="bh2")``, data
        prediction, as the paper).
      dc_order: order of the Lagrange interpolation (2: through the last 3 outputs).

    ``order``: UniPC's (for ``rho = 1``; fitted ratios are for one grid and keep no order).
    NFE = number of steps.
    """

    rho: Array
    base: UniPC = UniPC()
    dc_order: int = 2

    def __post_init__(self):
        if not isinstance(self.base, UniPC):
            raise ValueError(f"DCSolver: base={type(self.base).__name__}; dynamic compensation "
                             "is defined here on UniPC (jd.solvers.UniPC).")
        if isinstance(self.dc_order, bool) or self.dc_order not in (1, 2, 3):
            raise ValueError(f"DCSolver: dc_order={self.dc_order!r} must be 1, 2 or 3.")
        if isinstance(self.rho, (list, tuple)):
            object.__setattr__(self, "rho", jnp.asarray(self.rho, jnp.result_type(float)))
        if hasattr(self.rho, "ndim") and self.rho.ndim != 1:  # (pytree placeholders pass)
            raise ValueError(f"DCSolver: rho must be a 1-D array of per-step ratios, got shape "
                             f"{self.rho.shape}.")

    @classmethod
    def identity(cls, n_steps: int, **kwargs) -> "DCSolver":
        """``rho = 1`` for ``n_steps`` steps: UniPC itself."""
        return cls(jnp.ones(int(n_steps), jnp.result_type(float)), **kwargs)

    @property
    def n_steps(self) -> int:
        return int(jnp.shape(self.rho)[0])

    @property
    def order(self) -> int:
        return self.base.order

    @property
    def accepts_zero_final_step(self) -> bool:
        return self.base.accepts_zero_final_step

    @property
    def space(self) -> str:
        return self.base.space

    @property
    def history(self) -> int:
        return max(self.base.history, self.dc_order + 1)

    def validate(self, schedule, grid):
        n = jnp.shape(grid)[0] - 1
        if n != self.n_steps:
            raise ValueError(f"DCSolver: rho has {self.n_steps} ratios but the grid has {n} "
                             f"steps; fit the ratios for {n} steps (jd.tune.fit_dc_ratios).")
        self.base.validate(schedule, grid)

    def coefficients(self, schedule, grid):
        ratio, pred, corr = self.base.predictor_corrector(schedule, grid)
        width = self.history
        pad = ((0, 0), (0, width - pred.shape[1]))
        lag = lagrange_weights(grid, jnp.asarray(self.rho, grid.dtype), self.dc_order, width)
        return DCCoefs(grid[:-1], grid[1:], ratio, jnp.pad(pred, pad), jnp.pad(corr, pad), lag)

    def init(self, x, model_state):
        return MultistepState(x, jnp.zeros((self.history,) + x.shape, x.dtype), model_state)

    def step(self, model, state, coefs, key):
        x, hist, ms = state
        dt = x.dtype
        x0, eps, ms = model(x, coefs.t, ms)
        raw = push(hist, output_in_space(self.space, x0, eps, x, coefs.t, model.schedule))
        x_c = x + jnp.tensordot(coefs.corr.astype(dt), raw, 1)
        hist = raw.at[0].set(jnp.tensordot(coefs.lag.astype(dt), raw, 1))
        x_next = coefs.ratio.astype(dt) * x_c + jnp.tensordot(coefs.pred.astype(dt), hist, 1)
        return MultistepState(x_next, hist, ms)


jax.tree_util.register_dataclass(DCSolver, data_fields=["rho"], meta_fields=["base", "dc_order"])
