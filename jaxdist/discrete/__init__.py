"""Discrete diffusion: masked (absorbing) and uniform processes, exact samplers, NELBO objectives.

    import jaxdist as jd
    process = jd.discrete.MaskedProcess(vocab_size=3)
    out = jd.discrete.sample(jd.discrete.FirstHitting(), process, fn, key, (16, 4))
    out.tokens, out.nfe
    nats, stderr, bpt = jd.discrete.nelbo(process, fn, tokens, key, n_samples=64)

The network contract: ``fn(tokens [b, L] int32, t [b]) -> logits [b, L, V]`` of the clean tokens
(``V = vocab_size``; the masked process adds the mask id ``V`` to the noisy tokens only).
"""

from .categorical import categorical as categorical
from .categorical import gumbel as gumbel
from .categorical import top_p_filter as top_p_filter
from .data import MarkovChain as MarkovChain
from .data import markov_chain as markov_chain
from .objectives import NELBO as NELBO
from .objectives import make_discrete_loss as make_discrete_loss
from .objectives import mdlm_terms as mdlm_terms
from .objectives import nelbo as nelbo
from .objectives import radd_terms as radd_terms
from .objectives import score_entropy as score_entropy
from .objectives import score_entropy_terms as score_entropy_terms
from .processes import DiscreteProcess as DiscreteProcess
from .processes import MaskedProcess as MaskedProcess
from .processes import UniformProcess as UniformProcess
from .samplers import SAMPLERS as SAMPLERS
from .samplers import Analytic as Analytic
from .samplers import Ancestral as Ancestral
from .samplers import DiscreteSample as DiscreteSample
from .samplers import EntropyBounded as EntropyBounded
from .samplers import FirstHitting as FirstHitting
from .samplers import TauLeaping as TauLeaping
from .samplers import sample as sample
from .schedules import CosineSchedule as CosineSchedule
from .schedules import DiscreteSchedule as DiscreteSchedule
from .schedules import LinearSchedule as LinearSchedule
from .schedules import LogLinearSchedule as LogLinearSchedule
from .schedules import PolynomialSchedule as PolynomialSchedule
from .schedules import get_schedule as get_schedule

__all__ = ["MaskedProcess", "UniformProcess", "DiscreteProcess", "LinearSchedule",
           "CosineSchedule", "PolynomialSchedule", "LogLinearSchedule", "DiscreteSchedule",
           "get_schedule", "Ancestral", "TauLeaping", "Analytic", "FirstHitting", "EntropyBounded",
           "SAMPLERS",
           "DiscreteSample", "sample", "categorical", "gumbel", "top_p_filter", "nelbo", "NELBO",
           "mdlm_terms", "radd_terms", "score_entropy_terms", "score_entropy",
           "make_discrete_loss", "MarkovChain", "markov_chain"]
