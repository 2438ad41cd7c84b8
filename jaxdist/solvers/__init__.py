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
from . import registry as registry
