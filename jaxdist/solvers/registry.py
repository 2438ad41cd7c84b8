"""Solvers by name, for the CLI and benchmarks: ``by_name("dpm++2m")``.

Each entry builds a solver with the settings people use under that name. Add new solvers here
so ``jaxdist bench`` and ``jaxdist sample --solver`` pick them up.
"""

from __future__ import annotations

from typing import Callable

from .base import Solver
from .ddim import DDIM
from .dpm_solver import DPMSolver, DPMSolverPP
from .deis import DEIS, IPNDM
from .unipc import UniPC
from .adaptive import AdaptiveDPMSolver
from .edm import EulerEDM, HeunEDM
from .runge_kutta import EULER, MIDPOINT, RK3, RK4, RungeKutta
from .sde import DDPMAncestral, EulerMaruyama
from .sde_dpm_solver import SDEDPMSolverPP
from .edm_sde import EDMStochastic
from .langevin import LangevinCorrector, PredictorCorrector

__all__ = ["SOLVERS", "by_name", "register"]

#: name -> factory of a solver (deterministic ODE solvers and, with ``stochastic``, SDE ones)
SOLVERS: dict[str, Callable[[], Solver]] = {
    "ddim": DDIM,
    "dpm-solver-2": lambda: DPMSolver(order=2),
    "dpm-solver-3": lambda: DPMSolver(order=3),
    "dpm++2s": lambda: DPMSolverPP(order=2, method="singlestep"),
    "dpm++2m": lambda: DPMSolverPP(order=2),
    "dpm++3m": lambda: DPMSolverPP(order=3),
    # UniPC (bh2, data prediction, corrector), DEIS tAB, iPNDM
    "unipc": lambda: UniPC(order=2),
    "unipc-3": lambda: UniPC(order=3),
    "unipc-bh1": lambda: UniPC(order=2, variant="bh1"),
    "deis": lambda: DEIS(order=3),
    "deis-2": lambda: DEIS(order=2),
    "ipndm": lambda: IPNDM(order=4),
    "ipndm-v": lambda: IPNDM(order=4, variable_step=True),
    # EDM / k-diffusion Euler and Heun (2N - 1 evaluations), Runge-Kutta in the EDM variable
    "euler": EulerEDM,
    "heun": HeunEDM,
    "rk-midpoint": lambda: RungeKutta(MIDPOINT),
    "rk3": lambda: RungeKutta(RK3),
    "rk4": lambda: RungeKutta(RK4),
    "flow-euler": lambda: RungeKutta(EULER, variable="t"),  # FlowMatchEuler: Euler in t
    # adaptive DPM-Solver-12 / -23 (uses only the grid's end points; reports its own NFE)
    "dpm-adaptive": lambda: AdaptiveDPMSolver(order=2),
    "dpm-adaptive-23": lambda: AdaptiveDPMSolver(order=3),
    # stochastic samplers (need a key; `jaxdist bench --stochastic`)
    "euler-maruyama": lambda: EulerMaruyama(),
    "ddpm": lambda: DDPMAncestral(),
    "ddim-eta0.5": lambda: DDIM(eta=0.5),
    "dpm++1-sde": lambda: SDEDPMSolverPP(order=1),
    "dpm++2m-sde": lambda: SDEDPMSolverPP(order=2),
    "dpm++3m-sde": lambda: SDEDPMSolverPP(order=3),
    "edm-sde": lambda: EDMStochastic(),
    "pc-langevin": lambda: PredictorCorrector(EulerMaruyama(), LangevinCorrector(snr=0.16), 1),
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
