"""CFG++ for data-prediction multistep solvers: re-noise with the denoiser's ``eps``.

DPM-Solver++ (multistep) integrates ``x_t = (sigma_t / sigma_s) x_s + [terms in x0_hat]``; it
never reads ``eps_hat``: the noise direction is implicit in ``x_s = alpha_s x0 + sigma_s eps``.
CFG++ re-noises a guided ``x0_g`` with the *unconditional* ``eps_u`` instead, i.e. it replaces
``x_s`` by the point ``x~_s = alpha_s x0_g + sigma_s eps_u`` before the update:

``x_t = (sigma_t / sigma_s) x~_s + [terms in x0_g]``
``    = [DPM-Solver++ update] + (sigma_t / sigma_s) (alpha_s x0 + sigma_s eps - x_s)``.

For the first-order step this is exactly DDIM-CFG++ ``x_t = alpha_t x0_g + sigma_t eps_u``; the
higher-order terms use the history of guided ``x0_g`` as usual (``history="guided"``), or of the
unconditional ``x0_u = (x_s - sigma_s eps_u) / alpha_s`` (``history="uncond"``: ComfyUI's
``sample_dpmpp_2m_cfg_pp``, ``x_t = x0_g + e^{-h} (x_s - x0_u) + (1 - e^{-h}) / (2 r)
(x0_g - x0_u')`` on VE, with ``DPMSolverPP(order=2, lower_order_final=False)``). With a consistent pair (any
ordinary denoiser) the correction is zero, so the wrapped solver equals the base solver.
Use it with :class:`~jaxdist.guidance.CFGPlusPlus`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from ..schedules import expand_to
from .base import Solver, Wrapped, solver_dataclass
from .ddim import DDIM
from .dpm_solver import DPMSolverPP
from .primitives import cfgpp_renoise

Array = jax.Array

__all__ = ["cfgpp_solver", "Renoised", "RenoisedState", "RenoisedCoefs"]


class _Capture:
    """Wraps a solver's model and keeps the pair of its (single) evaluation."""

    def __init__(self, model):
        self.model, self.schedule, self.out = model, model.schedule, None

    def __call__(self, x, t, ms):
        x0, eps, ms = self.model(x, t, ms)
        if self.out is None:
            self.out = (x0, eps)
        return x0, eps, ms


class RenoisedState(NamedTuple):
    """State of :class:`Renoised`: the base solver's state."""

    base: Any

    @property
    def x(self) -> Array:
        return self.base.x

    @property
    def model_state(self):
        return self.base.model_state


class RenoisedCoefs(NamedTuple):
    """The base solver's coefficients and ``alpha_s``, ``sigma_s``, ``sigma_t / sigma_s``."""

    base: Any
    alpha_s: Array
    sigma_s: Array
    ratio: Array


@solver_dataclass
class Renoised(Wrapped):
    """A data-prediction multistep solver whose step re-noises with the model's ``eps``
    (see the module docstring). Build it with :func:`cfgpp_solver`."""

    base: Solver
    history: str = "guided"

    def __post_init__(self):
        if self.history not in ("guided", "uncond"):
            raise ValueError(f"Renoised: history={self.history!r} must be 'guided' or 'uncond'.")

    def coefficients(self, schedule, grid):
        s, t = grid[:-1], grid[1:]
        return RenoisedCoefs(self.base.coefficients(schedule, grid), schedule.alpha(s),
                             schedule.sigma(s), schedule.sigma(t) / schedule.sigma(s))

    def init(self, x, model_state):
        return RenoisedState(self.base.init(x, model_state))

    def step(self, model, state, coefs, key):
        cap = _Capture(model)
        new = self.base.step(cap, state.base, coefs.base, key)
        x = state.base.x
        x0, eps = cap.out
        x_hat, x0_u = cfgpp_renoise(x, x0, eps, coefs.alpha_s, coefs.sigma_s)
        new = new._replace(x=new.x + expand_to(coefs.ratio, x).astype(x.dtype) * (x_hat - x))
        if self.history == "uncond" and new.history.shape[0]:
            # (where alpha = 0, x0_u is not recoverable from (x, eps): the guided x0 stays)
            new = new._replace(history=new.history.at[0].set(x0_u.astype(new.history.dtype)))
        return RenoisedState(new)

    def finish(self, state):
        return self.base.finish(state.base)


def cfgpp_solver(solver: Solver, history: str = "guided") -> Solver:
    """The solver to use with :class:`~jaxdist.guidance.CFGPlusPlus`.

    ``DDIM`` is returned unchanged (its update ``alpha x0 + sigma eps`` already re-noises with
    the returned ``eps``); ``DPMSolverPP(method="multistep", warmup="lower_order")`` of any order
    is wrapped in :class:`Renoised` (``history``: ``"guided"`` or ``"uncond"``, see the module
    docstring). Other solvers raise ``ValueError``.
    """
    if isinstance(solver, DDIM):
        return solver
    if isinstance(solver, DPMSolverPP) and solver.method == "multistep" \
            and solver.warmup == "lower_order":
        return Renoised(solver, history)
    raise ValueError(f"cfgpp_solver: {solver!r} is not supported; use DDIM() or "
                     "DPMSolverPP(method='multistep', warmup='lower_order') (any order).")
