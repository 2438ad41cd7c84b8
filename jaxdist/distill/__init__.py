"""Few-step generation: the multi-network distillation state and its two-time-scale step.

The losses live beside the other objectives (:mod:`jaxdist.objectives.dmd`,
:mod:`~jaxdist.objectives.score_distillation`, :mod:`~jaxdist.objectives.scm`,
:mod:`~jaxdist.objectives.meanflow`, :mod:`~jaxdist.objectives.shortcut`,
:mod:`~jaxdist.objectives.trigflow`); this package trains them:
:class:`DistillState`, :func:`init_distill_state`, :func:`make_distill_step` (generator, fake
score, discriminator and their optimiser states as one arrays-only pytree; ``n_critic`` critic
updates per generator update). Checkpointed runs on the built-in data sets (``jaxdist distill``)
are in :mod:`jaxdist.cli.distill_runs`.
"""

from .state import DistillState as DistillState
from .state import init_distill_state as init_distill_state
from .state import make_distill_step as make_distill_step

__all__ = ["DistillState", "init_distill_state", "make_distill_step"]
