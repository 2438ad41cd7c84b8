"""ODE and SDE solvers. One module per family; every solver has an ``order``.

Base class and the shared step shapes: :mod:`jaxdist.solvers.base`.
"""

from .base import ExplicitStages as ExplicitStages
from .base import LinearMultistep as LinearMultistep
from .base import ModelState as ModelState
from .base import Solver as Solver
from .ddim import DDIM as DDIM
from .dpm_solver import DPMSolver as DPMSolver
from .dpm_solver import DPMSolverPP as DPMSolverPP
# UniPC, DEIS, iPNDM and per-step plans as data
from .unipc import UniPC as UniPC
from .deis import DEIS as DEIS
from .deis import IPNDM as IPNDM
from .plans import StepPlan as StepPlan
# EDM Euler/Heun, Runge-Kutta tableaux, adaptive DPM-Solver, diffusers configs
from .edm import Euler as Euler
from .edm import EulerEDM as EulerEDM
from .edm import Heun as Heun
from .edm import HeunEDM as HeunEDM
from .runge_kutta import EULER as EULER
from .runge_kutta import HEUN as HEUN
from .runge_kutta import MIDPOINT as MIDPOINT
from .runge_kutta import RK3 as RK3
from .runge_kutta import RK4 as RK4
from .runge_kutta import ButcherTableau as ButcherTableau
from .runge_kutta import RungeKutta as RungeKutta
from .adaptive import AdaptiveDPMSolver as AdaptiveDPMSolver
# stochastic samplers: reverse SDE, SDE-DPM-Solver++, EDM churn, predictor-corrector
from .sde import DDPMAncestral as DDPMAncestral
from .sde import EulerMaruyama as EulerMaruyama
from .sde_dpm_solver import SDEDPMSolverPP as SDEDPMSolverPP
from .edm_sde import EDMStochastic as EDMStochastic
from .langevin import AnnealedLangevinCorrector as AnnealedLangevinCorrector
from .langevin import LangevinCorrector as LangevinCorrector
from .langevin import NoPredictor as NoPredictor
from .langevin import PredictorCorrector as PredictorCorrector
from .langevin import annealed_langevin as annealed_langevin
from .diffusers_compat import from_diffusers_scheduler as from_diffusers_scheduler
from . import registry as registry
