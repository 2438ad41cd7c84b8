"""Explicit Butcher tableaux as checked data: ``ButcherTableau(a, b, c)`` and the built-in ones.

A tableau ``(a, b, c)`` with ``S`` stages advances ``dy/dv = F(y, v)`` by ``h``:

    k_j = F(y + h sum_{m<j} a_jm k_m, v + c_j h),    y_{n+1} = y + h sum_j b_j k_j.

Its order is read off the Butcher order conditions up to 4. A new method is one table, e.g.
Ralston's ``ButcherTableau(a=[[0, 0], [2/3, 0]], b=[1/4, 3/4], c=[0, 2/3])``; run it with
:class:`jaxdist.solvers.RungeKutta`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["ButcherTableau", "EULER", "MIDPOINT", "HEUN", "RALSTON", "RK3", "RK4", "TABLEAUX"]


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
#: Ralston's second-order method (the smallest error bound of the two-stage methods)
RALSTON = ButcherTableau(a=[[0, 0], [2 / 3, 0]], b=[1 / 4, 3 / 4], c=[0, 2 / 3], name="ralston")
RK3 = ButcherTableau(a=[[0, 0, 0], [0.5, 0, 0], [-1, 2, 0]], b=[1 / 6, 2 / 3, 1 / 6],
                     c=[0, 0.5, 1], name="rk3")
RK4 = ButcherTableau(a=[[0, 0, 0, 0], [0.5, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 1, 0]],
                     b=[1 / 6, 1 / 3, 1 / 3, 1 / 6], c=[0, 0.5, 0.5, 1], name="rk4")
#: the built-in tableaux by name
TABLEAUX = {tab.name: tab for tab in (EULER, MIDPOINT, HEUN, RALSTON, RK3, RK4)}
