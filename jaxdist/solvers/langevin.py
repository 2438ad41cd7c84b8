"""Predictor-corrector sampling (Song et al. 2021) and annealed Langevin dynamics.

A corrector moves ``x`` at a fixed time ``t`` with Langevin steps on ``p_t``:

    x <- x + eps score(x, t) + sqrt(2 eps) z,    score = -eps_hat / sigma(t).

* :class:`LangevinCorrector`: ``eps = 2 (snr ||z|| / ||score||)^2``, the step size from a target
  signal-to-noise ratio (score-SDE's ``LangevinCorrector``). With ``batch_norm=True`` (default, as
  score-SDE) both norms are averaged over the batch, which keeps the step finite where one
  example's score vanishes but couples the examples of a batch; ``batch_norm=False`` uses
  per-example norms (batch-independent, but unstable at the modes of a distribution).
* :class:`AnnealedLangevinCorrector`: ``eps = 2 (snr sigma(t))^2`` (score-SDE's ``ald``,
  Song & Ermon 2019's ``eps_i ∝ sigma_i^2``).

:class:`PredictorCorrector` runs, at each grid time ``t_i`` (``i < n``), ``n_corrector_steps``
corrector steps and then any predictor's step to ``t_{i+1}`` (score-SDE's ``pc_sampler`` order),
each corrector step one model evaluation; the corrector never runs at the final time, so grids
that end at ``t = 0`` work. :func:`annealed_langevin` is annealed Langevin dynamics: no
predictor, correctors down a grid of noise levels. The corrector is
an MCMC move with a fixed SNR, not a convergent discretisation, so PC samplers declare no
strong or weak order; the tests check their output distribution.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ..noise import normal_like
from ..schedules import expand_to
from .base import Solver, SolverState, StepTimes, solver_dataclass

Array = jax.Array

__all__ = ["LangevinCorrector", "AnnealedLangevinCorrector", "PredictorCorrector", "NoPredictor",
           "annealed_langevin", "PCState", "PCCoefs"]


def _norm(v: Array) -> Array:
    return jnp.sqrt(jnp.sum(v.reshape(v.shape[0], -1) ** 2, axis=1))


class _Corrector:
    """A Langevin move at time ``t``; subclasses define ``step_size(score, z, t, schedule)``."""

    snr: float

    def __post_init__(self):
        if not self.snr > 0:
            raise ValueError(f"{type(self).__name__}: snr={self.snr} must be > 0 "
                             "(score-SDE uses 0.16 for VE, 0.01 to 0.2 for VP).")

    def step_size(self, score: Array, z: Array, t: Array, schedule) -> Array:
        raise NotImplementedError

    def correct(self, model, x: Array, ms, t: Array, key: Array):
        """One Langevin step on ``p_t``; returns ``(x, ms)``."""
        _, eps, ms = model(x, t, ms)
        score = -eps / expand_to(model.schedule.sigma(t), x).astype(x.dtype)
        z = normal_like(key, x)
        step = expand_to(self.step_size(score, z, t, model.schedule), x).astype(x.dtype)
        return x + step * score + jnp.sqrt(2.0 * step) * z, ms


@solver_dataclass
class LangevinCorrector(_Corrector):
    """``eps = 2 (snr ||z|| / ||score||)^2`` (score-SDE's Langevin corrector); norms averaged over
    the batch unless ``batch_norm=False``."""

    snr: float = 0.16
    batch_norm: bool = True

    def step_size(self, score, z, t, schedule):
        nz, ns = _norm(z), _norm(score)
        if self.batch_norm:
            nz, ns = jnp.mean(nz), jnp.mean(ns)
        return 2.0 * (self.snr * nz / jnp.maximum(ns, 1e-30)) ** 2


@solver_dataclass
class AnnealedLangevinCorrector(_Corrector):
    """``eps = 2 (snr sigma(t))^2`` (annealed Langevin dynamics, score-SDE's ``ald``)."""

    snr: float = 0.16

    def step_size(self, score, z, t, schedule):
        return 2.0 * (self.snr * schedule.sigma(t)) ** 2


@solver_dataclass
class NoPredictor(Solver):
    """Moves time without changing ``x`` (for corrector-only samplers); no model evaluation."""

    @property
    def order(self) -> int:
        return 0

    def nfe(self, n_steps):
        return 0

    def coefficients(self, schedule, grid):
        return StepTimes(grid[:-1], grid[1:])

    def init(self, x, model_state):
        return SolverState(x, model_state)

    def step(self, model, state, coefs, key):
        return state


class PCState(NamedTuple):
    """State of a :class:`PredictorCorrector`: the predictor's own state."""

    predictor: Any

    @property
    def x(self) -> Array:
        return self.predictor.x

    @property
    def model_state(self):
        return self.predictor.model_state


class PCCoefs(NamedTuple):
    """The predictor's coefficients and the corrector's times ``t``."""

    predictor: Any
    t: Array


@solver_dataclass
class PredictorCorrector(Solver):
    """At each grid time: ``n_corrector_steps`` of ``corrector``, then the ``predictor``'s step.

    Any solver can predict; its state is kept whole in :class:`PCState`. NFE = the predictor's
    + ``n_corrector_steps`` per step.
    """

    predictor: Solver
    corrector: Any = LangevinCorrector()
    n_corrector_steps: int = 1

    def __post_init__(self):
        if not isinstance(self.predictor, Solver):
            raise TypeError(f"PredictorCorrector: predictor must be a jd.solvers solver, got "
                            f"{type(self.predictor).__name__}.")
        if not hasattr(self.corrector, "correct"):
            raise TypeError("PredictorCorrector: corrector must be a LangevinCorrector or "
                            "AnnealedLangevinCorrector.")
        if not (isinstance(self.n_corrector_steps, int) and self.n_corrector_steps >= 0):
            raise ValueError(f"n_corrector_steps={self.n_corrector_steps!r} must be an int >= 0.")

    @property
    def order(self) -> int:
        """Not a convergent discretisation (a fixed-SNR MCMC move): the predictor's order is
        reported; the tests check the output distribution."""
        return self.predictor.order

    @property
    def stochastic(self) -> bool:
        return True

    def nfe(self, n_steps):
        return self.predictor.nfe(n_steps) + int(n_steps) * self.n_corrector_steps

    def validate(self, schedule, grid):
        self.predictor.validate(schedule, grid)

    def coefficients(self, schedule, grid):
        return PCCoefs(self.predictor.coefficients(schedule, grid), grid[:-1])

    def init(self, x, model_state):
        return PCState(self.predictor.init(x, model_state))

    def step(self, model, state, coefs, key):
        k_pred, k_corr = jax.random.split(key)
        inner = state.predictor
        x, ms = inner.x, inner.model_state
        for j in range(self.n_corrector_steps):  # static unroll
            x, ms = self.corrector.correct(model, x, ms, coefs.t, jax.random.fold_in(k_corr, j))
        inner = inner._replace(x=x, model_state=ms)
        return PCState(self.predictor.step(model, inner, coefs.predictor, k_pred))

    def finish(self, state):
        return self.predictor.finish(state.predictor)


def annealed_langevin(snr: float = 0.16, n_steps_each: int = 5) -> PredictorCorrector:
    """Annealed Langevin dynamics (Song & Ermon 2019): ``n_steps_each`` Langevin steps with
    ``eps = 2 (snr sigma(t))^2`` at every noise level of the grid but the last (end the grid
    with one more, smaller level, e.g. 0)."""
    return PredictorCorrector(NoPredictor(), AnnealedLangevinCorrector(snr), n_steps_each)
