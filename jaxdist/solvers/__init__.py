"""ODE and SDE solvers. One module per family; every solver has ``order`` and ``nfe(n_steps)``.

The contract and the two shared step shapes: :mod:`jaxdist.solvers.base`; shared numerical
primitives (phi functions, first-order step, checks): :mod:`jaxdist.solvers.primitives`; names
for the CLI: :mod:`jaxdist.solvers.registry`. To add a solver, copy :mod:`jaxdist.solvers.ddim`
and register it: the contract test (tests/solvers/test_contract.py) then checks it.
"""

from . import registry as registry
from . import tableaux as tableaux
from .adaptive import AdaptiveDPMSolver as AdaptiveDPMSolver
from .adaptive import AdaptiveInfo as AdaptiveInfo
from .ancestral import LCM as LCM
from .ancestral import Ancestral as Ancestral
from .ancestral import DPMSolverPPSDE as DPMSolverPPSDE
from .base import ExplicitStages as ExplicitStages
from .base import LinearMultistep as LinearMultistep
from .base import ModelState as ModelState
from .base import MultistepState as MultistepState
from .base import Solver as Solver
from .base import SolverState as SolverState
from .base import coefs_at as coefs_at
from .cfgpp import Renoised as Renoised
from .cfgpp import cfgpp_solver as cfgpp_solver
from .ddim import DDIM as DDIM
from .deis import DEIS as DEIS
from .deis import IPNDM as IPNDM
from .diffusers_compat import from_diffusers_scheduler as from_diffusers_scheduler
from .diffusers_compat import denoiser_from_diffusers as denoiser_from_diffusers
from .dpm_solver import DPMSolver as DPMSolver
from .dpm_solver import DPMSolverPP as DPMSolverPP
from .edm import Euler as Euler
from .edm import EulerEDM as EulerEDM
from .edm import Heun as Heun
from .edm import HeunEDM as HeunEDM
from .edm import HeunPP2 as HeunPP2
from .edm_sde import EDMStochastic as EDMStochastic
from .langevin import AnnealedLangevinCorrector as AnnealedLangevinCorrector
from .langevin import LangevinCorrector as LangevinCorrector
from .langevin import NoPredictor as NoPredictor
from .langevin import PredictorCorrector as PredictorCorrector
from .langevin import annealed_langevin as annealed_langevin
from .lms import LMS as LMS
from .plms import PLMS as PLMS
from .plans import StepPlan as StepPlan
from .runge_kutta import RungeKutta as RungeKutta
from .sde import DDPMAncestral as DDPMAncestral
from .sde import EulerMaruyama as EulerMaruyama
from .sde_dpm_solver import SDEDPMSolverPP as SDEDPMSolverPP
from .tableaux import ButcherTableau as ButcherTableau
from .unipc import UniPC as UniPC
# ComfyUI's newer named samplers (comfy-names)
from .er_sde import ERSDE as ERSDE
from .res import GradientEstimation as GradientEstimation
from .res import RESMultistep as RESMultistep
from .sa_solver import SASolver as SASolver
from .seeds import SEEDS as SEEDS

# seeds' solvers (issue 13 item 3: Time-Shift, DC-Solver, DPM-Solver-v3)
from . import time_shift as time_shift
from .time_shift import TimeShift as TimeShift
from . import dc_solver as dc_solver
from .dc_solver import DCSolver as DCSolver
from . import dpm_solver_v3 as dpm_solver_v3
from .dpm_solver_v3 import EMS as EMS
from .dpm_solver_v3 import DPMSolverV3 as DPMSolverV3
from .dpm_solver_v3 import compute_ems as compute_ems

__all__ = [
    "Solver", "ExplicitStages", "LinearMultistep", "ModelState", "SolverState", "MultistepState",
    "coefs_at", "DDIM", "DPMSolver", "DPMSolverPP", "UniPC", "DEIS", "IPNDM", "StepPlan",
    "Euler", "EulerEDM", "Heun", "HeunEDM", "ButcherTableau", "RungeKutta", "AdaptiveDPMSolver",
    "AdaptiveInfo", "DDPMAncestral", "EulerMaruyama", "SDEDPMSolverPP", "EDMStochastic",
    "AnnealedLangevinCorrector", "LangevinCorrector", "NoPredictor", "PredictorCorrector",
    "annealed_langevin", "from_diffusers_scheduler", "denoiser_from_diffusers", "registry",
    "tableaux",
    # seeds' solvers (issue 13 item 3)
    "time_shift", "TimeShift", "dc_solver", "DCSolver",
    "dpm_solver_v3", "DPMSolverV3", "EMS", "compute_ems",
    # ComfyUI's newer named samplers (comfy-names)
    "RESMultistep", "GradientEstimation", "ERSDE", "SEEDS", "SASolver",
    # kdiff-names
    "Ancestral", "DPMSolverPPSDE", "LCM", "HeunPP2", "LMS", "PLMS",
    # CFG++ for data-prediction multistep solvers
    "Renoised", "cfgpp_solver",
]
