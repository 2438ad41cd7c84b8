"""The solver contract and the two step shapes most solvers share.

A solver is a frozen, hashable dataclass with metadata and four pure functions::

    coefs = solver.coefficients(schedule, grid)      # arrays, leading axis n_steps
    state = solver.init(x_T, model_state)            # a NamedTuple: x, model_state, ...
    state = solver.step(model, state, coefs_at(coefs, i), key)   # step grid[i] -> grid[i+1]
    x, model_state = solver.finish(state)
    solver.order, solver.nfe(n_steps), solver.stochastic, solver.strong_order, solver.weak_order

``jd.sample`` owns the loop (``lax.scan``). ``model(x, t, ms) -> (x0_hat, eps_hat, ms)`` is the
denoiser with its evaluation counter and state threaded through ``ms`` (a :class:`ModelState`).

Everything static about a run is a table computed from ``n_steps`` and the solver's settings,
never from grid values, so ``jit`` and eager runs take the same steps and model evaluations on
every grid. A solver whose steps differ in the number of model evaluations (singlestep warm-up,
EDM's final Euler step) puts the per-step count in its coefficients as ``stages``, a NumPy
integer table; ``jd.sample`` scans each run of equal ``stages`` separately and :func:`coefs_at`
hands the step a Python ``int``.

Two reusable step shapes:

* :class:`LinearMultistep`: ``x_{i+1} = a_i x_i + sum_j b_ij D_{i-j}`` over a history of model
  outputs ``D`` (data or noise predictions, newest first). DPM-Solver++ SDE, UniPC, DEIS and
  iPNDM are tables ``(a, b)``.
* :class:`ExplicitStages`: stage points ``u_j = c_j x + sum_{m<j} w_jm D_m + sum_k v_jk H_k``
  evaluated at stage times ``s_j``, the update being the row after the last stage; ``H`` is an
  optional history of first-stage outputs of earlier steps. Singlestep and multistep
  DPM-Solver(++), Euler/Heun and Runge-Kutta tableaux are such tables.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..schedules import Schedule
from .primitives import output_in_space

Array = jax.Array

__all__ = [
    "ModelState", "SolverState", "MultistepState", "StepTimes", "MultistepCoefs", "StageCoefs",
    "Solver", "Wrapped", "LinearMultistep", "ExplicitStages", "solver_dataclass", "coefs_at", "set_stages",
    "stage_table", "ModelFn",
]


class ModelState(NamedTuple):
    """What evaluations of the denoiser carry through a sampler: the count and its state."""

    nfe: Array
    den: Any = ()


ModelFn = Callable[[Array, Array, ModelState], tuple[Array, Array, ModelState]]


class SolverState(NamedTuple):
    """State of a one-step method: the sample and the model state."""

    x: Array
    model_state: ModelState


class MultistepState(NamedTuple):
    """State of a method with memory: ``history [K, *x.shape]`` holds earlier model outputs,
    newest first."""

    x: Array
    history: Array
    model_state: ModelState


class StepTimes(NamedTuple):
    """Coefficients of a solver that needs only the step's times."""

    t: Array
    t_next: Array


class MultistepCoefs(NamedTuple):
    """:class:`LinearMultistep` coefficients: ``x_next = a x + b . history``."""

    t: Array
    t_next: Array
    a: Array
    b: Array


class StageCoefs(NamedTuple):
    """:class:`ExplicitStages` coefficients (leading axis ``n_steps``; ``S`` stages, ``K``
    history entries): stage times ``s [n, S]``; rows ``r = 0..S-1`` of ``c [n, S]``,
    ``w [n, S, S]``, ``v [n, S, K]`` build stage ``r + 1`` (row ``S - 1``: the update);
    ``stages [n]`` (NumPy, static): model evaluations of each step."""

    t: Array
    t_next: Array
    s: Array
    c: Array
    w: Array
    v: Array
    stages: Any


def solver_dataclass(cls):
    """Frozen, hashable dataclass registered as a static pytree node (usable as a jit static).

    A class whose method order is the field ``solver_order`` also takes it as ``order=`` (the
    name people use: ``DPMSolverPP(order=3)``); its ``order`` attribute is the global
    convergence order that its settings achieve.
    """
    cls = dataclasses.dataclass(frozen=True)(cls)
    if "solver_order" in {f.name for f in dataclasses.fields(cls)}:
        init = cls.__init__

        @functools.wraps(init)
        def __init__(self, *args, order: int | None = None, **kwargs):
            if order is not None:
                kwargs["solver_order"] = order
            init(self, *args, **kwargs)

        cls.__init__ = __init__
    return jax.tree_util.register_static(cls)


def set_stages(coefs: Any, stages: Any) -> Any:
    """``coefs`` with every ``stages`` field (nested NamedTuples included) set to ``stages``."""
    if not (isinstance(coefs, tuple) and hasattr(coefs, "_fields")):
        return coefs
    fields = {name: set_stages(getattr(coefs, name), stages) for name in coefs._fields}
    if "stages" in fields:
        fields["stages"] = stages
    return type(coefs)(**fields)


def stage_table(coefs: Any) -> np.ndarray | None:
    """The static per-step ``stages`` table of ``coefs`` (the outermost one), or ``None``."""
    if not (isinstance(coefs, tuple) and hasattr(coefs, "_fields")):
        return None
    if "stages" in coefs._fields and coefs.stages is not None:
        return np.asarray(coefs.stages)
    for name in coefs._fields:
        found = stage_table(getattr(coefs, name))
        if found is not None:
            return found
    return None


def coefs_at(coefs: Any, i: int) -> Any:
    """The coefficients of step ``i`` (what ``solver.step`` takes), for loops written by hand::

        coefs = solver.coefficients(schedule, grid)
        for i in range(len(grid) - 1):
            state = solver.step(model, state, coefs_at(coefs, i), key)
    """
    table = stage_table(coefs)
    arrays = set_stages(coefs, None)
    out = jax.tree.map(lambda c: c[i], arrays)
    return out if table is None else set_stages(out, int(table[i]))


class Solver(abc.ABC):
    """Base class of every fixed-grid solver (see the module docstring for the contract)."""

    @property
    @abc.abstractmethod
    def order(self) -> int:
        """Global order of convergence with these settings (what the order test measures);
        for stochastic solvers, their weak order."""

    #: whether ``jd.sample`` accepts a grid ending in a zero-length step for this solver
    #: (diffusers' repeated ``sigma_min``; only solvers whose last step there is meaningful)
    accepts_zero_final_step = False

    @property
    def stochastic(self) -> bool:
        """Whether ``step`` draws noise (then ``jd.sample`` needs a ``key``)."""
        return False

    #: the strong and weak orders a stochastic solver claims (what its SDE tests measure);
    #: ``strong_order`` / ``weak_order`` return them while ``stochastic``, else ``None``
    claimed_strong_order: float | None = None
    claimed_weak_order: float | None = None

    @property
    def strong_order(self) -> float | None:
        """Strong order of a stochastic solver (``None``: deterministic settings, or not a
        convergent discretisation)."""
        return self.claimed_strong_order if self.stochastic else None

    @property
    def weak_order(self) -> float | None:
        """Weak order of a stochastic solver (``None``: deterministic settings, or not a
        convergent discretisation)."""
        return self.claimed_weak_order if self.stochastic else None

    def nfe(self, n_steps: int) -> int:
        """Model evaluations of a run of ``n_steps`` steps (exact)."""
        return int(n_steps)

    def validate(self, schedule: Schedule, grid: Array) -> None:
        """Trace-time checks beyond the generic grid checks (override to add)."""

    @abc.abstractmethod
    def coefficients(self, schedule: Schedule, grid: Array) -> Any:
        """Per-step coefficients: a NamedTuple of arrays with leading axis ``len(grid) - 1``."""

    @abc.abstractmethod
    def init(self, x: Array, model_state: ModelState) -> Any:
        """The initial state (a NamedTuple with fields ``x`` and ``model_state``)."""

    @abc.abstractmethod
    def step(self, model: ModelFn, state: Any, coefs: Any, key: Array | None) -> Any:
        """One step from ``coefs.t`` to ``coefs.t_next``."""

    def finish(self, state: Any) -> tuple[Array, ModelState]:
        """``(x, model_state)`` of the final state."""
        return state.x, state.model_state


class Wrapped(Solver):
    """A solver built around another one, ``self.base`` (a dataclass field of the subclass):
    every part of the contract is the base's unless the wrapper overrides it (``TimeShift``,
    ``tune.Corrected``, CFG++'s ``Renoised``)."""

    base: Solver

    @property
    def order(self) -> int:
        return self.base.order

    @property
    def stochastic(self) -> bool:
        return self.base.stochastic

    @property
    def strong_order(self) -> float | None:
        return self.base.strong_order

    @property
    def weak_order(self) -> float | None:
        return self.base.weak_order

    @property
    def accepts_zero_final_step(self) -> bool:  # type: ignore[override]
        return self.base.accepts_zero_final_step

    def nfe(self, n_steps: int) -> int:
        return self.base.nfe(n_steps)

    def validate(self, schedule: Schedule, grid: Array) -> None:
        self.base.validate(schedule, grid)

    def coefficients(self, schedule: Schedule, grid: Array) -> Any:
        return self.base.coefficients(schedule, grid)

    def init(self, x: Array, model_state: ModelState) -> Any:
        return self.base.init(x, model_state)

    def step(self, model: ModelFn, state: Any, coefs: Any, key: Array | None) -> Any:
        return self.base.step(model, state, coefs, key)

    def finish(self, state: Any) -> Any:
        return self.base.finish(state)


def push(history: Array, d: Array) -> Array:
    """``history`` with ``d`` prepended and the oldest entry dropped."""
    return jnp.concatenate([d[None].astype(history.dtype), history[:-1]])


class LinearMultistep(Solver):
    """``x_{i+1} = a_i x_i + sum_j b_ij D_{i-j}``, ``D`` the model output in ``space``.

    Subclasses set ``space`` and implement ``weights(schedule, grid) -> (a [n], b [n, K])``
    (``K = history``). The state is a :class:`MultistepState`.
    """

    space = "x0"

    @property
    def history(self) -> int:
        """Number of model outputs the update uses (``K``)."""
        return self.solver_order  # type: ignore[attr-defined]

    @abc.abstractmethod
    def weights(self, schedule: Schedule, grid: Array) -> tuple[Array, Array]:
        """``a [n_steps]`` and ``b [n_steps, history]``."""

    def coefficients(self, schedule, grid):
        a, b = self.weights(schedule, grid)
        return MultistepCoefs(grid[:-1], grid[1:], a, b)

    def init(self, x, model_state):
        return MultistepState(x, jnp.zeros((self.history,) + x.shape, x.dtype), model_state)

    def step(self, model, state, coefs, key):
        x, hist, ms = state
        x0, eps, ms = model(x, coefs.t, ms)
        hist = push(hist, output_in_space(self.space, x0, eps, x, coefs.t, model.schedule))
        x_next = coefs.a.astype(x.dtype) * x + jnp.tensordot(coefs.b.astype(x.dtype), hist, 1)
        return MultistepState(x_next, hist, ms)


class ExplicitStages(Solver):
    """Methods written as a table of stages, optionally with a history of earlier steps.

    For stage ``j = 0..S-1`` at time ``s_j`` (``s_0 = t``, ``u_0 = x``):
    ``u_j = c_j x + sum_{m<j} w_jm D_m + sum_k v_jk H_k``, ``D_j = model(u_j, s_j)`` in
    ``space``; the new state is the row after the last evaluated stage (row ``S``, whose weights
    on unevaluated stages are zero). ``H [K]`` holds ``D_0`` of the previous ``K`` steps.
    Subclasses implement ``stage_table(schedule, grid) -> (s [n, S], c [n, S], w [n, S, S],
    v [n, S, K])`` (rows for stages ``1..S-1``, then the update) and, when the number of
    evaluations varies by step, ``stages_per_step(n_steps) -> int array [n]``.
    """

    space = "x0"
    #: length ``K`` of the history of first-stage outputs (0: a one-step method)
    history = 0

    @abc.abstractmethod
    def stage_table(self, schedule: Schedule, grid: Array) -> tuple[Array, Array, Array, Array]:
        """Stage times ``s`` and the weights ``c``, ``w``, ``v`` (see the class docstring)."""

    def stages_per_step(self, n_steps: int) -> np.ndarray:
        """Static number of model evaluations of each step (default: every stage)."""
        return np.full(n_steps, self.n_stages, np.int32)

    @property
    def n_stages(self) -> int:
        """``S``, the most stages a step evaluates."""
        return 1

    def nfe(self, n_steps):
        return int(np.sum(self.stages_per_step(int(n_steps))))

    def coefficients(self, schedule, grid):
        s, c, w, v = self.stage_table(schedule, grid)
        return StageCoefs(grid[:-1], grid[1:], s, c, w, v, self.stages_per_step(grid.shape[0] - 1))

    def init(self, x, model_state):
        if self.history:
            return MultistepState(x, jnp.zeros((self.history,) + x.shape, x.dtype), model_state)
        return SolverState(x, model_state)

    def step(self, model, state, coefs, key):
        x, ms = state.x, state.model_state
        hist = state.history if self.history else None
        dt = x.dtype
        c, w, v = coefs.c.astype(dt), coefs.w.astype(dt), coefs.v.astype(dt)
        n_eval = int(coefs.stages) if coefs.stages is not None else self.n_stages
        last = c.shape[0] - 1  # the update row
        outputs = []
        u = x
        for j in range(n_eval + 1):  # static unroll over the evaluated stages, then the update
            if j > 0:
                row = last if j == n_eval else j - 1
                u = c[row] * x
                for m, d in enumerate(outputs):
                    u = u + w[row, m] * d
                if hist is not None:
                    u = u + jnp.tensordot(v[row], hist, 1)
            if j == n_eval:
                break
            x0, eps, ms = model(u, coefs.s[j], ms)
            outputs.append(output_in_space(self.space, x0, eps, u, coefs.s[j], model.schedule))
        if hist is not None:
            return MultistepState(u, push(hist, outputs[0]), ms)
        return SolverState(u, ms)
