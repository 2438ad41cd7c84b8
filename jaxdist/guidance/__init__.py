"""Guidance as denoiser transformations: every solver gets it for free.

    g = jd.guidance.CFG(den, scale=4.0, null_cond={"y": NULL})
    x = jd.sample(jd.solvers.DPMSolverPP(), g, x_T, grid, cond={"y": labels}).x

* :class:`CFG`, :class:`APG` (momentum in the sampler carry), :class:`CFGPlusPlus` with
  :func:`cfgpp_solver`; all take ``interval=(lo, hi)`` in noise level ``sigma/alpha`` and skip
  the unconditional evaluation outside it (:func:`guided_until` + :func:`switch_time` give
  adaptive guidance that switches to conditional-only steps after a chosen step).
* :class:`Guided`: ``positive + w (positive - negative)`` (autoguidance, perturbed-model
  guidance); :class:`WithCond` fixes conditioning.
* :class:`ClassifierGuidance` with :func:`calibrated_log_prob` (off-the-shelf classifiers).
"""

from ._common import batched_pairs as batched_pairs
from ._common import guided_until as guided_until
from ._common import null_conditioning as null_conditioning
from ._common import switch_time as switch_time
from .cfg import APG as APG
from .cfg import CFG as CFG
from .cfg import CFGPlusPlus as CFGPlusPlus
from .cfg import Guided as Guided
from .cfg import WithCond as WithCond
from ..solvers.cfgpp import Renoised as Renoised
from ..solvers.cfgpp import cfgpp_solver as cfgpp_solver
from .classifier import ClassifierGuidance as ClassifierGuidance
from .classifier import calibrated_log_prob as calibrated_log_prob

__all__ = ["CFG", "APG", "CFGPlusPlus", "Guided", "WithCond", "ClassifierGuidance",
           "calibrated_log_prob", "cfgpp_solver", "Renoised", "guided_until", "switch_time",
           "null_conditioning", "batched_pairs"]
