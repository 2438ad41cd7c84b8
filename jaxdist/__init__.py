"""jaxdist: samplers and solvers for diffusion and flow models, in pure functional JAX.

    import jaxdist as jd
    den = jd.Denoiser(fn, jd.schedules.VPLinear(), prediction="eps")
    grid = jd.grids.logsnr_uniform(den.schedule, 10)
    x = jd.sample(jd.solvers.DPMSolverPP(order=2), den, x_T, grid).x
"""

from . import grids as grids
from . import likelihood as likelihood
from . import mcmc as mcmc
from . import noise as noise
from . import guidance as guidance
from . import models as models
from . import objectives as objectives
from . import predictions as predictions
from . import schedules as schedules
from . import solvers as solvers
from . import testing as testing
from .denoiser import BaseDenoiser as BaseDenoiser
from .denoiser import ClipX0 as ClipX0
from .denoiser import Denoiser as Denoiser
from .denoiser import DenoiserTransform as DenoiserTransform
from .denoiser import DynamicThreshold as DynamicThreshold
from .denoiser import EDMPreconditioned as EDMPreconditioned
from .inversion import Inpaint as Inpaint
from .inversion import invert as invert
from .predictions import convert as convert
from .sample import SampleResult as SampleResult
from .sample import sample as sample

__version__ = "0.1.0"
