"""Per-step plans as data: one compiled sampler for any mix of solver families and orders.

:class:`StepPlan` takes, per step, an ``order`` (1-3) and a ``family`` code as *arrays* (pytree
leaves, so traced under ``jax.jit``): changing the plan does not recompile. Every family's
weights are computed for every order over the whole grid (:func:`unipc_tables`,
:func:`deis_tables`, DPM-Solver++ multistep weights, Euler) and the plan selects one row per
step with ``jnp.where``. The carry keeps histories of both ``x0_hat`` and ``eps_hat``, so one step

    x <- x + c_i . X0                                   (UniC, if step i-1 was UniPC)
    x_{i+1} = a_i x + b_i . X0 + e_i . EPS              (X0, EPS: newest-first histories)

covers all families:

* ``DPMPP`` (0): DPM-Solver++ multistep, data prediction, ``a = sigma_t/sigma_s``;
* ``UNIPC`` (1): UniP + UniC (``variant``, data prediction), ``a = sigma_t/sigma_s``;
* ``DEIS`` (2): DEIS tAB, noise prediction, ``a = alpha_t/alpha_s``;
* ``EULER`` (3): explicit Euler on the PF-ODE in the grid's time, ``a = 1``,
  ``b_0 = (t_{i+1} - t_i) alpha'(t_i)``, ``e_0 = (t_{i+1} - t_i) sigma'(t_i)`` (order forced to 1).

Orders are clipped to ``[1, min(3, i + 1)]`` (history available at step ``i``) and to 1 on a step
to ``t = 0``. NFE = number of steps.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .base import Solver, multistep_orders
from .deis import deis_tables
from .dpm_solver import DPMMultistep, _first_order
from .unipc import select_by_order, unipc_tables

Array = jax.Array

__all__ = ["StepPlan", "FAMILIES", "DPMPP", "UNIPC", "DEIS_FAMILY", "EULER"]

DPMPP, UNIPC, DEIS_FAMILY, EULER = 0, 1, 2, 3
#: family name -> code used in :attr:`StepPlan.families`
FAMILIES = {"dpm++": DPMPP, "unipc": UNIPC, "deis": DEIS_FAMILY, "euler": EULER}
_MAX_ORDER = 3
_X0_HISTORY = _MAX_ORDER + 1  # UniC-3 uses four data predictions
_EPS_HISTORY = _MAX_ORDER


@dataclasses.dataclass(frozen=True, eq=False)
class StepPlan(Solver):
    """A sampler whose per-step ``orders [n_steps]`` and ``families [n_steps]`` are arrays.

    Build one with :meth:`constant` or :meth:`from_names`, or pass integer arrays directly
    (codes in :data:`FAMILIES`). It is a pytree whose leaves are the two arrays, so
    ``jax.jit(lambda plan, x: jd.sample(plan, den, x, grid).x)`` compiles once for all plans of
    the same length. ``variant`` (UniPC's ``B(h)``) and ``rho`` are static.
    """

    orders: Array
    families: Array
    variant: str = "bh2"
    rho: str = "reference"

    def __post_init__(self):
        if self.variant not in ("bh1", "bh2"):
            raise ValueError(f"StepPlan: variant={self.variant!r}; use 'bh1' or 'bh2'.")
        if self.rho not in ("reference", "solve"):
            raise ValueError(f"StepPlan: rho={self.rho!r}; use 'reference' or 'solve'.")

    @property
    def order(self) -> int:
        return _MAX_ORDER

    # -- construction --------------------------------------------------------------------
    @classmethod
    def constant(cls, family: str, order: int, n_steps: int, *, lower_order_final: bool = True,
                 **kwargs) -> "StepPlan":
        """The plan of the plain multistep solver ``family`` of ``order`` (warm-up ``1, 2, ..``
        and, with ``lower_order_final``, ``.., 2, 1``)."""
        orders = multistep_orders(n_steps, order, lower_order_final)
        return cls.from_names(orders, [family] * n_steps, **kwargs)

    @classmethod
    def from_names(cls, orders: Sequence[int], families: Sequence[str], **kwargs) -> "StepPlan":
        """From per-step orders and family names (keys of :data:`FAMILIES`)."""
        unknown = sorted({f for f in families if f not in FAMILIES})
        if unknown:
            raise ValueError(f"StepPlan: unknown families {unknown}; use {sorted(FAMILIES)}.")
        return cls(jnp.asarray(np.asarray(orders, np.int32)),
                   jnp.asarray(np.asarray([FAMILIES[f] for f in families], np.int32)), **kwargs)

    # -- checks --------------------------------------------------------------------------
    def validate(self, schedule, grid):
        n = jnp.shape(grid)[0] - 1
        for name in ("orders", "families"):
            if jnp.shape(getattr(self, name)) != (n,):
                raise ValueError(f"StepPlan.{name} has shape {jnp.shape(getattr(self, name))}; "
                                 f"it needs one entry per step: ({n},).")
        try:
            orders, fams = np.asarray(self.orders), np.asarray(self.families)
        except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
            return
        if orders.min() < 1 or orders.max() > _MAX_ORDER:
            raise ValueError(f"StepPlan.orders must be in 1..{_MAX_ORDER}; got {orders}.")
        if fams.min() < 0 or fams.max() > EULER:
            raise ValueError(f"StepPlan.families must be codes in {FAMILIES}; got {fams}.")
        if np.any((fams == DEIS_FAMILY)) and float(schedule.alpha(jnp.asarray(grid)[0])) == 0.0:
            raise ValueError("StepPlan: DEIS (noise prediction) cannot start where alpha = 0; "
                             "start the grid below t_max.")

    # -- coefficients --------------------------------------------------------------------
    def effective_orders(self, grid: Array) -> Array:
        """The orders actually used: clipped to the available history, 1 for Euler and for a
        step to ``t = 0``."""
        n = grid.shape[0] - 1
        orders = jnp.clip(jnp.asarray(self.orders), 1, jnp.minimum(_MAX_ORDER, jnp.arange(n) + 1))
        return jnp.where((grid[1:] == 0) | (jnp.asarray(self.families) == EULER), 1, orders)

    def coefficients(self, schedule, grid):
        n = grid.shape[0] - 1
        s, t = grid[:-1], grid[1:]
        fam = jnp.asarray(self.families)[:, None]
        orders = self.effective_orders(grid)
        ratio_x0, _ = _first_order("x0", schedule, s, t)
        ratio_eps, _ = _first_order("eps", schedule, s, t)
        dpm = [DPMMultistep("x0", (k,) * n).weights(schedule, grid)[1]
               for k in range(1, _MAX_ORDER + 1)]
        uni = [unipc_tables(schedule, grid, k, "x0", self.variant, self.rho)
               for k in range(1, _MAX_ORDER + 1)]
        deis = [deis_tables(schedule, grid, k) for k in range(1, _MAX_ORDER + 1)]
        dt = (t - s)[:, None]
        e0x = jnp.eye(_X0_HISTORY, dtype=grid.dtype)[0]
        e0e = jnp.eye(_EPS_HISTORY, dtype=grid.dtype)[0]
        euler_x0 = dt * schedule.d_alpha(s)[:, None] * e0x
        euler_eps = dt * schedule.d_sigma(s)[:, None] * e0e
        zx, ze = jnp.zeros_like(euler_x0), jnp.zeros_like(euler_eps)
        b_dpm = select_by_order(orders, dpm, _X0_HISTORY)
        b_uni = select_by_order(orders, [u[1] for u in uni], _X0_HISTORY)
        b_x0 = jnp.where(fam == DPMPP, b_dpm, jnp.where(fam == UNIPC, b_uni,
                                                        jnp.where(fam == EULER, euler_x0, zx)))
        b_eps = jnp.where(fam == DEIS_FAMILY, select_by_order(orders, deis, _EPS_HISTORY),
                          jnp.where(fam == EULER, euler_eps, ze))
        f = fam[:, 0]
        a = jnp.where(f == DEIS_FAMILY, ratio_eps,
                      jnp.where(f == EULER, jnp.ones_like(ratio_x0), ratio_x0))
        corr = jnp.where(fam == UNIPC, select_by_order(orders, [u[2] for u in uni], _X0_HISTORY),
                         zx)
        corr = jnp.concatenate([jnp.zeros_like(corr[:1]), corr[:-1]])  # UniC of step i-1
        return {"t": s, "t_next": t, "a": a, "b_x0": b_x0, "b_eps": b_eps, "corr": corr}

    # -- loop ----------------------------------------------------------------------------
    def init(self, x, ms):
        return (x, jnp.zeros((_X0_HISTORY,) + x.shape, x.dtype),
                jnp.zeros((_EPS_HISTORY,) + x.shape, x.dtype), ms)

    def step(self, model, state, coef, key):
        x, hx, he, ms = state
        x0, eps, ms = model(x, coef["t"], ms)
        hx = jnp.concatenate([x0[None].astype(hx.dtype), hx[:-1]])
        he = jnp.concatenate([eps[None].astype(he.dtype), he[:-1]])
        dt = x.dtype
        x = x + jnp.tensordot(coef["corr"].astype(dt), hx, 1)
        x_next = (coef["a"].astype(dt) * x + jnp.tensordot(coef["b_x0"].astype(dt), hx, 1)
                  + jnp.tensordot(coef["b_eps"].astype(dt), he, 1))
        return x_next, hx, he, ms


jax.tree_util.register_dataclass(StepPlan, data_fields=["orders", "families"],
                                 meta_fields=["variant", "rho"])
