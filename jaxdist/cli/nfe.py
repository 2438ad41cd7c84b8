"""Model evaluations of a run: how many steps fit a budget of ``--nfe`` evaluations.

:func:`run_within_budget` runs a sampler at the largest step count whose model evaluations fit
the budget, from the solver's exact count ``solver.nfe(n_steps)`` (:func:`steps_for_nfe`).
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

__all__ = ["steps_for_nfe", "run_within_budget"]

T = TypeVar("T")


def steps_for_nfe(solver: Any, budget: int) -> int:
    """The largest step count ``n`` with ``solver.nfe(n) <= budget`` (at least 1)."""
    if int(budget) < 1:
        raise ValueError(f"nfe={budget} must be a positive number of model evaluations.")
    lo, hi = 1, int(budget) + 1  # nfe(n) >= n: no more than `budget` steps fit
    while hi - lo > 1:  # bisection on the non-decreasing nfe(n): nfe(lo) <= budget < nfe(hi)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if solver.nfe(mid) <= budget else (lo, mid)
    return lo


def run_within_budget(solver: Any, budget: int,
                      run: Callable[[int], tuple[T, int]]) -> tuple[T, int]:
    """``run(n_steps) -> (output, nfe_used)`` at the largest ``n_steps`` within ``budget``
    model evaluations; returns ``(output, nfe_used)`` of that run."""
    if int(budget) < 1:
        raise ValueError(f"nfe={budget} must be a positive number of model evaluations.")
    if not callable(getattr(solver, "nfe", None)):
        from .options import CLIError

        raise CLIError(f"{type(solver).__name__} chooses its own steps (no NFE budget): sample it "
                       "with 'jaxdist sample --solver dpm-adaptive' (its tolerances set the cost)")
    return run(steps_for_nfe(solver, budget))
