"""A solver whose per-step coefficient table is learned data (S4S / Bespoke-style).

``Corrected(base, scales)`` runs ``base`` with its coefficients ``C`` replaced by
``C * (1 + scales[name])`` for every learned field ``name`` (e.g. ``b [n, K]`` of a multistep
solver: ``x_{i+1} = a_i x_i + sum_j b_ij (1 + d_ij) D_{i-j}``). ``scales = 0`` is the base
solver exactly; zero weights stay zero, so the step pattern (history used, warm-up orders) is
the base solver's. ``scales`` are pytree leaves: a jitted sampler compiles once for all values,
and ``jax.grad`` differentiates through them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from ..schedules import Schedule
from ..solvers.base import Solver, Wrapped

Array = jax.Array

__all__ = ["Corrected", "learnable_fields", "TIME_FIELDS"]

#: coefficient fields that are times at which the model is evaluated (never scaled)
TIME_FIELDS = frozenset({"t", "t_next", "s", "t_hat"})


def learnable_fields(solver: Solver, schedule: Schedule, grid: Array) -> dict[str, tuple]:
    """``{name: shape}`` of the floating-point coefficient arrays of ``solver`` on ``grid``
    (top-level fields with leading axis ``n_steps``, times excluded)."""
    coefs = solver.coefficients(schedule, jnp.asarray(grid))
    if not (isinstance(coefs, tuple) and hasattr(coefs, "_fields")):
        return {}
    n = jnp.shape(grid)[0] - 1
    out = {}
    for name in coefs._fields:
        value = getattr(coefs, name)
        if (name not in TIME_FIELDS and isinstance(value, jax.Array)
                and jnp.issubdtype(value.dtype, jnp.floating) and value.ndim >= 1
                and value.shape[0] == n):
            out[name] = tuple(value.shape)
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class Corrected(Wrapped):
    """``base`` with learned relative corrections of its coefficients (module docstring).

    ``scales``: ``{field: array [n_steps, ...]}``, the shape of that coefficient field; fitted
    for one number of steps. Build the zero corrections with :meth:`identity`.
    """

    base: Solver
    scales: dict

    @classmethod
    def identity(cls, base: Solver, schedule: Schedule, grid: Array, dtype=None) -> "Corrected":
        """Zero corrections of every learnable field: the base solver itself."""
        dtype = dtype or jnp.result_type(float)
        fields = learnable_fields(base, schedule, grid)
        if not fields:
            raise ValueError(f"{type(base).__name__} has no coefficient table to correct (its "
                             "coefficients are not arrays with one row per step).")
        return cls(base, {k: jnp.zeros(v, dtype) for k, v in fields.items()})

    @property
    def n_steps(self) -> int:
        """The number of steps the corrections were fitted for."""
        return int(jnp.shape(next(iter(self.scales.values())))[0])

    @property
    def order(self) -> int:
        """The base solver's order (what ``scales = 0`` achieves; learned corrections are fitted
        to one grid size and do not keep a convergence order)."""
        return self.base.order

    def validate(self, schedule: Schedule, grid: Any) -> None:
        n = jnp.shape(grid)[0] - 1
        if n != self.n_steps:
            raise ValueError(f"Corrected: the coefficient corrections were fitted for "
                             f"{self.n_steps} steps but the grid has {n}; tune again for {n} "
                             "steps or sample with the tuned grid.")
        self.base.validate(schedule, grid)

    def coefficients(self, schedule: Schedule, grid: Array) -> Any:
        coefs = self.base.coefficients(schedule, grid)
        return coefs._replace(**{k: getattr(coefs, k) * (1 + v.astype(getattr(coefs, k).dtype))
                                 for k, v in self.scales.items()})



jax.tree_util.register_dataclass(Corrected, data_fields=["scales"], meta_fields=["base"])
