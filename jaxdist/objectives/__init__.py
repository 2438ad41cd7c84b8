"""Training objectives as pure functions ``loss(params, key, batch) -> (scalar, aux)``.

``make_objective(name, apply_fn, schedule=None, **options)`` (:mod:`.registry`) builds one by name:

==========  =====================================================  ==========================
name        objective                                              default schedule / output
==========  =====================================================  ==========================
``dsm``     denoising score matching (:mod:`.dsm`)                  ``VPLinear`` / ``eps``
``edm``     EDM: preconditioned ``F``, log-normal noise, EDM weight  ``EDM`` / ``edm``
``fm``      flow matching, independent coupling (:mod:`.flow_matching`)  ``RectifiedFlow`` / ``velocity``
``ot-fm``   flow matching with exact minibatch OT pairs (:mod:`.ot`)  ``RectifiedFlow`` / ``velocity``
``ict``     improved consistency training (:mod:`.consistency`)     ``EDM`` / ``consistency``
``cd``      consistency distillation from a teacher denoiser        ``EDM`` / ``consistency``
``ssm``     sliced score matching (:mod:`.sliced`)                  none / ``score``
==========  =====================================================  ==========================

``batch = {"x": [B, ...]}`` plus, where used: ``"noise"`` (reflow pairs for ``fm``), ``"cond"``
(dict of model keywords), ``"step"`` (``ict`` curriculum), ``"ema_params"`` (``ict``/``cd`` target
network; default ``stop_gradient(params)``), ``"teacher_params"`` (``cd`` with a teacher factory).
``aux`` always has ``per_example`` losses ``[B]`` and x0-scale ``weights`` ``[B]``.
"""

from . import consistency as consistency
from . import dmd as dmd
from . import meanflow as meanflow
from . import scm as scm
from . import score_distillation as score_distillation
from . import shortcut as shortcut
from . import trigflow as trigflow
from . import dsm as dsm
from . import flow_matching as flow_matching
from . import ot as ot
from . import sliced as sliced
from . import weighting as weighting
from .consistency import ConsistencyDenoiser as ConsistencyDenoiser
from .consistency import consistency_sample as consistency_sample
from .consistency import make_cd_loss as make_cd_loss
from .consistency import make_ict_loss as make_ict_loss
from .dsm import make_dsm_loss as make_dsm_loss
from .flow_matching import make_fm_loss as make_fm_loss
from .flow_matching import reflow_pairs as reflow_pairs
from .ot import ot_permutation as ot_permutation
from .registry import OBJECTIVES as OBJECTIVES
from .registry import Objective as Objective
from .registry import make_objective as make_objective
from .sliced import make_ssm_loss as make_ssm_loss

__all__ = ["Objective", "make_objective", "OBJECTIVES", "make_dsm_loss", "make_fm_loss",
           "make_ict_loss", "make_cd_loss", "make_ssm_loss", "reflow_pairs", "ot_permutation",
           "consistency_sample", "ConsistencyDenoiser"]
