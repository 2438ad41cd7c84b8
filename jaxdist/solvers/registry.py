"""Solvers by name, for the CLI, benchmarks and the contract test: ``by_name("dpm++2m")``.

Each entry of :data:`SOLVERS` builds a fixed-grid solver with the settings people use under that
name; :data:`ADAPTIVE` holds the adaptive ones (run with ``jd.sample_adaptive``). :data:`ALIASES`
maps k-diffusion / ComfyUI sampler names and diffusers scheduler class names to them; names are
matched ignoring case, spaces, ``_`` and ``-`` ("DPM++ 2M" = ``dpm++2m``), and an unknown name
gets a did-you-mean. Register a new solver with :func:`register`: ``jaxdist bench``,
``jaxdist sample --solver`` and the contract test (tests/solvers/test_contract.py) pick it up.
"""

from __future__ import annotations

import difflib
import re
from typing import Callable

from .adaptive import AdaptiveDPMSolver
from .ancestral import LCM, Ancestral, DPMSolverPPSDE
from .base import Solver
from .cfgpp import Renoised
from .ddim import DDIM
from .deis import DEIS, IPNDM
from .dpm_solver import DPMSolver, DPMSolverPP
from .edm import EulerEDM, HeunEDM, HeunPP2
from .edm_sde import EDMStochastic
from .er_sde import ERSDE
from .langevin import LangevinCorrector, PredictorCorrector
from .lms import LMS
from .plms import PLMS
from .res import GradientEstimation, RESMultistep
from .runge_kutta import RungeKutta
from .sa_solver import SASolver
from .sde import DDPMAncestral, EulerMaruyama
from .sde_dpm_solver import SDEDPMSolverPP
from .seeds import SEEDS
from .tableaux import EULER, RALSTON, RK3, RK4
from .unipc import UniPC

__all__ = ["SOLVERS", "ADAPTIVE", "ALIASES", "by_name", "register", "canonical_name", "all_names"]

#: name -> factory of a fixed-grid solver (deterministic ODE solvers, then stochastic ones)
SOLVERS: dict[str, Callable[[], Solver]] = {
    "ddim": DDIM,
    "dpm-solver-2": lambda: DPMSolver(order=2),
    "dpm-solver-3": lambda: DPMSolver(order=3),
    "dpm++2s": lambda: DPMSolverPP(order=2, method="singlestep"),
    "dpm++2m": lambda: DPMSolverPP(order=2),
    # diffusers' warm-up and final steps (order 2 in the limit) with the Taylor-exact update
    "dpm++3m": lambda: DPMSolverPP(order=3),
    # a singlestep first step and no lower-order final steps: global order 3 (NFE n + 1)
    "dpm++3m-o3": lambda: DPMSolverPP(order=3, warmup="singlestep", lower_order_final=False),
    # UniPC (bh2, data prediction, corrector), DEIS tAB, iPNDM
    "unipc": lambda: UniPC(order=2),
    "unipc-3": lambda: UniPC(order=3),
    "unipc-bh1": lambda: UniPC(order=2, variant="bh1"),
    "deis": lambda: DEIS(order=3),
    "deis-2": lambda: DEIS(order=2),
    "ipndm": lambda: IPNDM(order=4),
    "ipndm-v": lambda: IPNDM(order=4, variable_step=True),
    # k-diffusion's / diffusers' linear multistep in sigma (the last step integrates to 0)
    "lms": LMS,
    # diffusers' PNDMScheduler(skip_prk_steps=True): Heun first step, then fixed AB4 (NFE n + 1)
    "plms": PLMS,
    # EDM / k-diffusion Euler and Heun (2N - 1 evaluations), Runge-Kutta in the EDM variable
    "euler": EulerEDM,
    "heun": HeunEDM,
    # (the midpoint rule in sigma is superconvergent on the Gaussian oracle: Ralston is tested)
    "rk-ralston": lambda: RungeKutta(RALSTON),
    "rk3": lambda: RungeKutta(RK3),
    "rk4": lambda: RungeKutta(RK4),
    "flow-euler": lambda: RungeKutta(EULER, variable="t"),  # FlowMatchEuler: Euler in t
    # stochastic samplers (need a key; `jaxdist bench --stochastic`)
    "euler-maruyama": EulerMaruyama,
    "ddpm": DDPMAncestral,
    "ddim-eta0.5": lambda: DDIM(eta=0.5),
    "dpm++1-sde": lambda: SDEDPMSolverPP(order=1),
    "dpm++2m-sde": lambda: SDEDPMSolverPP(order=2),
    "dpm++2m-sde-heun": lambda: SDEDPMSolverPP(order=2, solver_type="heun"),
    "dpm++3m-sde": lambda: SDEDPMSolverPP(order=3),
    "edm-sde": EDMStochastic,
    "pc-langevin": lambda: PredictorCorrector(EulerMaruyama(), LangevinCorrector(snr=0.16), 1),
    # ComfyUI's newer named samplers (comfy-names): RES 2M, gradient estimation, ER-SDE, SEEDS,
    # SA-Solver, with ComfyUI's default settings
    "res-multistep": RESMultistep,
    "gradient-estimation": GradientEstimation,
    "res-multistep-ancestral": lambda: RESMultistep(eta=1.0),
    "er-sde": ERSDE,
    "seeds-2": lambda: SEEDS(stage_count=2),
    "seeds-3": lambda: SEEDS(stage_count=3),
    "sa-solver": SASolver,
    # k-diffusion / ComfyUI named samplers (kdiff-names): dpm_2 (Euler last step), heunpp2,
    # the ancestral samplers, dpmpp_sde and lcm
    "dpm2": lambda: DPMSolver(order=2, method="singlestep", lower_order_final=True),
    "heunpp2": HeunPP2,
    "euler-ancestral": lambda: Ancestral("euler"),
    "dpm2-ancestral": lambda: Ancestral("dpm2"),
    "dpm++2s-ancestral": lambda: Ancestral("dpm++2s"),
    "dpm++sde": DPMSolverPPSDE,
    "lcm": LCM,
    # k-diffusion's dpm_fast on the caller's grid: orders 3, .., 3, 2, 1
    "dpm-fast": lambda: DPMSolver(order=3, method="singlestep", lower_order_final=True),
    # ComfyUI's _cfg_pp forms: for jd.guidance.CFGPlusPlus's pair (with a plain denoiser they
    # are the base samplers)
    "res-multistep-cfg-pp": lambda: RESMultistep(cfg_pp=True),
    "res-multistep-ancestral-cfg-pp": lambda: RESMultistep(eta=1.0, cfg_pp=True),
    "gradient-estimation-cfg-pp": lambda: GradientEstimation(cfg_pp=True),
    "dpm++2s-ancestral-cfg-pp": lambda: Ancestral("dpm++2s", cfg_pp=True),
    # ComfyUI's sample_dpmpp_2m_cfg_pp: its history holds the unconditional x0
    "dpm++2m-cfg-pp": lambda: Renoised(DPMSolverPP(order=2, lower_order_final=False), "uncond"),
}

#: adaptive solvers (they choose their own steps: ``jd.sample_adaptive``)
ADAPTIVE: dict[str, Callable[[], AdaptiveDPMSolver]] = {
    "dpm-adaptive": lambda: AdaptiveDPMSolver(order=2),
    "dpm-adaptive-23": lambda: AdaptiveDPMSolver(order=3),
}

#: other libraries' names -> jaxdist's (k-diffusion / ComfyUI samplers, diffusers schedulers)
ALIASES: dict[str, str] = {
    "dpmpp_2m": "dpm++2m", "dpmpp_2s": "dpm++2s", "dpmpp_3m": "dpm++3m",
    "dpmpp_2m_sde": "dpm++2m-sde", "dpmpp_3m_sde": "dpm++3m-sde", "dpm_2": "dpm2",
    "ipndm_v": "ipndm-v", "uni_pc": "unipc", "uni_pc_bh2": "unipc", "uni_pc_bh1": "unipc-bh1",
    "dpm_adaptive": "dpm-adaptive", "dpmpp_2s_ancestral_cfg_pp": "dpm++2s-ancestral-cfg-pp",
    "dpmpp_2m_cfg_pp": "dpm++2m-cfg-pp", "dpmpp_2m_sde_heun": "dpm++2m-sde-heun",
    # ComfyUI's _gpu forms draw the same Brownian noise on the GPU: the same samplers here
    "dpmpp_sde_gpu": "dpm++sde", "dpmpp_2m_sde_gpu": "dpm++2m-sde",
    "dpmpp_2m_sde_heun_gpu": "dpm++2m-sde-heun", "dpmpp_3m_sde_gpu": "dpm++3m-sde",
    "DDIMScheduler": "ddim", "DDPMScheduler": "ddpm", "DPMSolverMultistepScheduler": "dpm++2m",
    "UniPCMultistepScheduler": "unipc", "EulerDiscreteScheduler": "euler",
    "HeunDiscreteScheduler": "heun", "FlowMatchEulerDiscreteScheduler": "flow-euler",
    # ComfyUI's newer named samplers (comfy-names)
    "res_multistep": "res-multistep", "res_multistep_ancestral": "res-multistep-ancestral",
    "gradient_estimation": "gradient-estimation", "er_sde": "er-sde", "seeds_2": "seeds-2",
    "seeds_3": "seeds-3", "sa_solver": "sa-solver",
    # k-diffusion / ComfyUI / diffusers names (kdiff-names); the _cfg_pp forms are these
    # solvers with jd.guidance.CFGPlusPlus (euler: DDIM)
    "euler_ancestral": "euler-ancestral", "dpm_2_ancestral": "dpm2-ancestral",
    "dpmpp_2s_ancestral": "dpm++2s-ancestral", "dpmpp_sde": "dpm++sde",
    "euler_cfg_pp": "ddim", "euler_ancestral_cfg_pp": "euler-ancestral",
    "EulerAncestralDiscreteScheduler": "euler-ancestral", "EDMEulerScheduler": "euler",
    # diffusers' k-diffusion ports, PLMS and LCM (from_diffusers_scheduler translates configs)
    "LMSDiscreteScheduler": "lms", "KDPM2DiscreteScheduler": "dpm2",
    "KDPM2AncestralDiscreteScheduler": "dpm2-ancestral", "PNDMScheduler": "plms",
    "LCMScheduler": "lcm",
}


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]", "", str(name).lower())


def all_names() -> list[str]:
    """Every accepted name: jaxdist's (fixed-grid and adaptive) and the aliases."""
    return sorted(SOLVERS) + sorted(ADAPTIVE) + sorted(ALIASES)


def canonical_name(name: str) -> str:
    """The jaxdist name of ``name`` (a jaxdist name or an alias, case/space/_/- insensitive).

    Raises ``ValueError`` with the closest known names for an unknown one."""
    table = {_key(n): n for n in list(SOLVERS) + list(ADAPTIVE)}
    table.update({_key(a): target for a, target in ALIASES.items()})
    found = table.get(_key(name))
    if found is not None:
        return found
    keys = difflib.get_close_matches(_key(name), list(table), n=8, cutoff=0.6)
    close = list(dict.fromkeys(table[k] for k in keys))[:3]  # aliases of one solver count once
    hint = (f"; did you mean {' or '.join(map(repr, close))}?" if close else
            f"; known: {', '.join(sorted(SOLVERS) + sorted(ADAPTIVE))}")
    raise ValueError(f"unknown solver {name!r}{hint} ('jaxdist solvers' lists every name)")


def register(name: str, factory: Callable[[], Solver]) -> None:
    """Adds a fixed-grid solver under ``name`` (then benchmarked, sampled and contract-tested)."""
    SOLVERS[name] = factory


def by_name(name: str) -> Solver | AdaptiveDPMSolver:
    """The solver registered as ``name`` (or an alias of it); the error suggests close names."""
    canonical = canonical_name(name)
    return (SOLVERS.get(canonical) or ADAPTIVE[canonical])()
