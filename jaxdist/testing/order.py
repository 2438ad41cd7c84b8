"""Empirical order of convergence: the slope of ``log(error)`` against ``log(step size)``.

``measure_order`` runs a solver at several step counts against an exact (or reference) solution
and fits the slope; tests assert it is within a tolerance of ``solver.order``. Users import it to
test their own samplers the same way.
"""

from __future__ import annotations

import warnings
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

__all__ = ["empirical_order", "measure_order", "OrderResult"]


def empirical_order(step_counts: Sequence[int], errors: Sequence[float], *,
                    floor: float = 1e-13, last: int | None = None) -> float:
    """Least-squares slope of ``log(error)`` against ``log(1 / n_steps)``.

    Points with ``error <= floor`` (round-off) are dropped; ``last`` keeps only the last (finest)
    that many of the remaining points (the asymptotic window). Needs at least two points.
    """
    n = np.asarray(step_counts, dtype=np.float64)
    e = np.asarray(errors, dtype=np.float64)
    if n.shape != e.shape or n.ndim != 1:
        raise ValueError("step_counts and errors must be 1-D sequences of the same length.")
    keep = np.isfinite(e) & (e > floor)
    n, e = n[keep], e[keep]
    if last is not None:
        n, e = n[-last:], e[-last:]
    if n.size < 2:
        raise ValueError("need at least two errors above the round-off floor to fit an order.")
    slope = np.polyfit(np.log(1.0 / n), np.log(e), 1)[0]
    return float(slope)


def _warn_if_low_precision(**arrays) -> None:
    low = {name: jnp.result_type(a) for name, a in arrays.items()
           if jnp.result_type(a).itemsize < 8}
    if low:
        found = ", ".join(f"{name} is {dtype}" for name, dtype in low.items())
        warnings.warn(f"measure_order runs in low precision ({found}): round-off limits the "
                      "measured order (DPM++ 2M measured 1.30 in float32, 2.20 in float64). Enable "
                      "float64 with jax.config.update('jax_enable_x64', True) and build x_T then.",
                      UserWarning, stacklevel=3)


class OrderResult(NamedTuple):
    order: float
    step_counts: tuple[int, ...]
    errors: tuple[float, ...]
    nfe: tuple[int, ...]


def measure_order(solver, denoiser, x_T: Array, step_counts: Sequence[int],
                  grid_fn: Callable[[int], Array], exact: Callable[[Array], Array], *,
                  last: int | None = None, floor: float = 1e-13) -> OrderResult:
    """Runs ``jd.sample(solver, denoiser, x_T, grid_fn(n))`` for each ``n`` in ``step_counts``
    and fits the order of ``max |x - exact(grid)|``.

    Run it in float64 (``jax.config.update("jax_enable_x64", True)`` before building ``x_T``):
    in float32 round-off flattens the error curve (DPM-Solver++(2M) measured 1.30 in float32
    against 2.20 in float64), so a float32 ``x_T`` or grid gives a ``UserWarning``.
    """
    from ..sample import sample

    errors, nfes = [], []
    for n in step_counts:
        grid = grid_fn(int(n))
        if not errors:
            _warn_if_low_precision(x_T=x_T, grid=grid)
        res = sample(solver, denoiser, x_T, grid)
        errors.append(float(jnp.max(jnp.abs(res.x - exact(grid)))))
        nfes.append(int(res.nfe))
    order = empirical_order(step_counts, errors, floor=floor, last=last)
    return OrderResult(order, tuple(int(n) for n in step_counts), tuple(errors), tuple(nfes))
