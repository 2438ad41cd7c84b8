"""Per-step plans as data: one compiled sampler for any mix of solver families and orders.

:class:`StepPlan` takes, per step, an ``order`` (1-3) and a ``family`` code as *arrays* (pytree
leaves, so traced under ``jax.jit``): changing the plan does not recompile. Every family's
weights are computed for every order over the whole grid (:func:`unipc_tables`,
:func:`deis_tables`, DPM-Solver++ multistep weights, Euler) and the plan selects one row per
step with ``jnp.where``. The carry keeps histories of both ``x0_hat`` and ``eps_hat``, so one step

    x <- x + c_i . X0                                   (UniC, if step i-1 was UniPC)
    x_{i+1} = a_i x + b_i . X0 + e_i . EPS              (X0, EPS: newest-first histories)

covers all families (the correction and the update are merged into one table ``b + a c``):

* ``"dpm++"`` (code 0): DPM-Solver++ multistep, data prediction, ``a = sigma_t/sigma_s``;
* ``"unipc"`` (1): UniP + UniC (``variant``, data prediction), ``a = sigma_t/sigma_s``;
* ``"deis"`` (2): DEIS tAB, noise prediction, ``a = alpha_t/alpha_s``;
* ``"euler"`` (3): explicit Euler on the PF-ODE in the grid's time, ``a = 1``,
  ``b_0 = (t_{i+1} - t_i) alpha'(t_i)``, ``e_0 = (t_{i+1} - t_i) sigma'(t_i)`` (order forced to 1).

Orders are clipped to ``[1, min(3, i + 1)]`` (history available at step ``i``) and to 1 on a step
to ``t = 0``. NFE = number of steps.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .base import ModelState, Solver, push
from .deis import deis_tables
from .dpm_solver import multistep_weights
from .primitives import first_order_coefficients, multistep_orders, select_by_order
from .unipc import unipc_tables

Array = jax.Array

__all__ = ["StepPlan", "FAMILIES", "PlanState", "PlanCoefs"]

#: family name -> integer code used in :attr:`StepPlan.families`
FAMILIES = {"dpm++": 0, "unipc": 1, "deis": 2, "euler": 3}
_DPMPP, _UNIPC, _DEIS, _EULER = (FAMILIES[k] for k in ("dpm++", "unipc", "deis", "euler"))
_MAX_ORDER = 3
_X0_HISTORY = _MAX_ORDER + 1  # UniC-3 uses four data predictions
_EPS_HISTORY = _MAX_ORDER


class PlanState(NamedTuple):
    """State of a :class:`StepPlan`: histories of both model outputs, newest first."""

    x: Array
    x0_history: Array
    eps_history: Array
    model_state: ModelState


class PlanCoefs(NamedTuple):
    """``x_next = a x + b_x0 . X0 + b_eps . EPS`` (UniC of the previous step merged in)."""

    t: Array
    t_next: Array
    a: Array
    b_x0: Array
    b_eps: Array


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
        """Global order of the (concrete) plan: its typical local accuracy, bounded by one more
        than its lowest (boundary) step's accuracy. UniPC steps followed by another step are
        corrected (accuracy ``order + 1``)."""
        try:
            orders, fams = np.asarray(self.orders), np.asarray(self.families)
        except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
            raise ValueError("StepPlan.order needs concrete orders and families (it is traced "
                             "here).") from None
        n = orders.shape[0]
        eff = np.clip(orders, 1, np.minimum(_MAX_ORDER, np.arange(n) + 1))
        eff = np.where(fams == _EULER, 1, eff)
        local = eff + ((fams == _UNIPC) & (np.arange(n) < n - 1))
        return int(min(np.median(local), 1 + local.min()))

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
        if fams.min() < 0 or fams.max() > _EULER:
            raise ValueError(f"StepPlan.families must be codes in {FAMILIES}; got {fams}.")
        if np.any((fams == _DEIS)) and float(schedule.alpha(jnp.asarray(grid)[0])) == 0.0:
            raise ValueError("StepPlan: DEIS (noise prediction) cannot start where alpha = 0; "
                             "start the grid below t_max.")

    # -- coefficients --------------------------------------------------------------------
    def effective_orders(self, grid: Array) -> Array:
        """The orders actually used: clipped to the available history, 1 for Euler and for a
        step to ``t = 0``."""
        n = grid.shape[0] - 1
        orders = jnp.clip(jnp.asarray(self.orders), 1, jnp.minimum(_MAX_ORDER, jnp.arange(n) + 1))
        return jnp.where((grid[1:] == 0) | (jnp.asarray(self.families) == _EULER), 1, orders)

    def coefficients(self, schedule, grid):
        n = grid.shape[0] - 1
        s, t = grid[:-1], grid[1:]
        fam = jnp.asarray(self.families)[:, None]
        orders = self.effective_orders(grid)
        ratio_x0, _ = first_order_coefficients("x0", schedule, s, t)
        ratio_eps, _ = first_order_coefficients("eps", schedule, s, t)
        dpm = [multistep_weights("x0", schedule, grid, np.full(n, k))[1] for k in range(1, _MAX_ORDER + 1)]
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
        b_x0 = jnp.where(fam == _DPMPP, b_dpm, jnp.where(fam == _UNIPC, b_uni,
                                                         jnp.where(fam == _EULER, euler_x0, zx)))
        b_eps = jnp.where(fam == _DEIS, select_by_order(orders, deis, _EPS_HISTORY),
                          jnp.where(fam == _EULER, euler_eps, ze))
        f = fam[:, 0]
        a = jnp.where(f == _DEIS, ratio_eps, jnp.where(f == _EULER, jnp.ones_like(ratio_x0), ratio_x0))
        corr = jnp.where(fam == _UNIPC, select_by_order(orders, [u[2] for u in uni], _X0_HISTORY),
                         zx)
        corr = jnp.concatenate([jnp.zeros_like(corr[:1]), corr[:-1]])  # UniC of step i-1
        return PlanCoefs(s, t, a, b_x0 + a[:, None] * corr, b_eps)

    # -- loop ----------------------------------------------------------------------------
    def init(self, x, model_state):
        return PlanState(x, jnp.zeros((_X0_HISTORY,) + x.shape, x.dtype),
                         jnp.zeros((_EPS_HISTORY,) + x.shape, x.dtype), model_state)

    def step(self, model, state, coefs, key):
        x, hx, he, ms = state
        x0, eps, ms = model(x, coefs.t, ms)
        hx, he = push(hx, x0), push(he, eps)
        dt = x.dtype
        x_next = (coefs.a.astype(dt) * x + jnp.tensordot(coefs.b_x0.astype(dt), hx, 1)
                  + jnp.tensordot(coefs.b_eps.astype(dt), he, 1))
        return PlanState(x_next, hx, he, ms)


jax.tree_util.register_dataclass(StepPlan, data_fields=["orders", "families"],
                                 meta_fields=["variant", "rho"])
