"""Solvers by name, for the CLI and benchmarks: ``by_name("dpm++2m")``.

Each entry builds a solver with the settings people use under that name. Add new solvers here
so ``jaxdist bench`` and ``jaxdist sample --solver`` pick them up.
"""

from __future__ import annotations

from typing import Callable

from .base import Solver
from .ddim import DDIM
from .dpm_solver import DPMSolver, DPMSolverPP

__all__ = ["SOLVERS", "by_name", "register"]

#: name -> factory of a solver (deterministic ODE solvers and, with ``stochastic``, SDE ones)
SOLVERS: dict[str, Callable[[], Solver]] = {
    "ddim": DDIM,
    "dpm-solver-2": lambda: DPMSolver(order=2),
    "dpm-solver-3": lambda: DPMSolver(order=3),
    "dpm++2s": lambda: DPMSolverPP(order=2, method="singlestep"),
    "dpm++2m": lambda: DPMSolverPP(order=2),
    "dpm++3m": lambda: DPMSolverPP(order=3),
}


def register(name: str, factory: Callable[[], Solver]) -> None:
    """Adds a solver under ``name`` (used by ``jaxdist bench`` and ``jaxdist sample``)."""
    SOLVERS[name] = factory


def by_name(name: str) -> Solver:
    """The solver registered as ``name``; the error lists the known names."""
    try:
        return SOLVERS[name]()
    except KeyError:
        raise ValueError(f"unknown solver {name!r}; known: {', '.join(sorted(SOLVERS))}") from None
