"""The solver interface and the two step shapes most solvers share.

A solver is a frozen, hashable dataclass with an ``order`` and four pure functions:

* ``coefficients(schedule, grid)``: every per-step number, as arrays with a leading axis of
  ``n_steps``, computed once outside the loop (and differentiable in ``grid``);
* ``init(x, model_state)``: the loop carry (no model evaluation);
* ``step(model, state, coef, key)``: one step, with no Python branching on traced values;
* ``finish(state)``: the sample and the model state.

``jd.sample`` owns the loop (``Solver.run``: one ``lax.scan`` per run of equal static
configuration, see ``plan``). ``model(x, t, ms) -> (x0_hat, eps_hat, ms)`` is the denoiser with
its evaluation counter and state threaded through ``ms`` (a :class:`ModelState`).

Two reusable step shapes:

* :class:`LinearMultistep`: ``x_{i+1} = a_i x_i + sum_j b_ij D_{i-j}`` over a history of model
  outputs ``D`` (data or noise predictions). DPM-Solver(++) multistep, DEIS and iPNDM are tables
  ``(a, b)``.
* :class:`ExplicitStages`: singlestep methods with stage points
  ``u_j = c_j x + sum_{m<j} w_jm D_m`` evaluated at stage times ``s_j``; the update is the row
  after the last stage. Singlestep DPM-Solver(++) and Runge-Kutta tableaux are such tables.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..schedules import Schedule, expand_to

Array = jax.Array

__all__ = [
    "ModelState",
    "Solver",
    "LinearMultistep",
    "ExplicitStages",
    "LAMBDA_CLIP",
    "clipped_log_snr",
    "half_log_snr",
    "output_in_space",
    "multistep_orders",
    "solver_dataclass",
]

#: log-SNR values are clipped to +-LAMBDA_CLIP inside coefficient formulas only, so that steps
#: from pure noise (lambda = -inf) or to clean data (lambda = +inf) stay finite.
LAMBDA_CLIP = 40.0


class ModelState(NamedTuple):
    """What evaluations of the denoiser carry through a sampler: the count and its state."""

    nfe: Array
    den: Any = ()


ModelFn = Callable[[Array, Array, ModelState], tuple[Array, Array, ModelState]]


def solver_dataclass(cls):
    """Frozen, hashable dataclass registered as a static pytree node (usable as a jit static)."""
    return jax.tree_util.register_static(dataclasses.dataclass(frozen=True)(cls))


def clipped_log_snr(schedule: Schedule, t: Array) -> Array:
    """``lambda(t)`` clipped to ``[-LAMBDA_CLIP, LAMBDA_CLIP]`` (infinite only at ``t = 0`` or
    where ``alpha = 0``)."""
    return jnp.clip(schedule.log_snr(t), -LAMBDA_CLIP, LAMBDA_CLIP)


def half_log_snr(schedule: Schedule, t: Array) -> Array:
    """DPM-Solver's ``lambda = log(alpha / sigma)`` (half the log-SNR), clipped like
    :func:`clipped_log_snr`. Exponential-integrator step sizes are ``h = lambda_t - lambda_s``."""
    return 0.5 * clipped_log_snr(schedule, t)


def output_in_space(space: str, x0: Array, eps: Array, x: Array, t: Array,
                    schedule: Schedule) -> Array:
    """The model output a solver integrates: ``x0``, ``eps`` or the PF-ODE velocity
    ``dx/dt = alpha'(t) x0 + sigma'(t) eps``."""
    if space == "x0":
        return x0
    if space == "eps":
        return eps
    if space == "velocity":
        return expand_to(schedule.d_alpha(t), x) * x0 + expand_to(schedule.d_sigma(t), x) * eps
    raise ValueError(f"space={space!r} must be 'x0', 'eps' or 'velocity'.")


def multistep_orders(n_steps: int, order: int, lower_order_final: bool) -> np.ndarray:
    """Static per-step orders of a multistep method: warm-up ``1, 2, ..`` and, with
    ``lower_order_final``, ``.., 2, 1`` on the last steps (``min(order, steps left)``)."""
    i = np.arange(n_steps)
    orders = np.minimum(order, i + 1)
    if lower_order_final:
        orders = np.minimum(orders, n_steps - i)
    return orders.astype(np.int32)


def _check_order(name: str, order: int, allowed: tuple[int, ...]) -> None:
    if order not in allowed:
        raise ValueError(f"{name}: order={order!r} is out of range; use one of {allowed}.")


class Solver(abc.ABC):
    """Base class of every solver (see the module docstring for the contract)."""

    #: stochastic solvers need a ``key`` and declare ``strong_order`` / ``weak_order``.
    stochastic: ClassVar[bool] = False

    @property
    @abc.abstractmethod
    def order(self) -> int:
        """Global order of convergence of the (deterministic) method."""

    def validate(self, schedule: Schedule, grid: Array) -> None:
        """Trace-time checks beyond the generic grid checks (override to add)."""

    def plan(self, n_steps: int, grid: Array) -> list[tuple[int, "Solver"]]:
        """Runs of ``(n_steps_in_run, solver)`` with static configuration; one ``lax.scan`` each."""
        return [(n_steps, self)]

    def coefficients(self, schedule: Schedule, grid: Array) -> Any:
        """Per-step arrays for the whole grid (leading axis ``len(grid) - 1``); ``run`` slices
        out the steps of each run of the plan."""
        raise NotImplementedError

    def init(self, x: Array, ms: ModelState) -> Any:
        """The initial loop carry."""
        raise NotImplementedError

    def step(self, model: ModelFn, state: Any, coef: Any, key: Array | None) -> Any:
        """One step from ``coef['t']`` to ``coef['t_next']``."""
        raise NotImplementedError

    def finish(self, state: Any) -> tuple[Array, ModelState]:
        """``(x, model_state)`` from the final carry."""
        return state[0], state[-1]

    def current(self, state: Any) -> Array:
        """The current sample in the carry (for trajectories and checks)."""
        return state[0]

    def run(self, model: ModelFn, schedule: Schedule, x: Array, grid: Array, key: Array | None,
            ms: ModelState, *, save_trajectory: bool = False, remat: bool = False):
        """Integrates from ``grid[0]`` to ``grid[-1]``; returns ``(x, ms, trajectory | None)``."""
        n_steps = grid.shape[0] - 1
        keys = None if key is None else jax.random.split(key, n_steps)
        plan = self.plan(n_steps, grid)
        state = plan[0][1].init(x, ms)
        saved = [x[None]] if save_trajectory else None
        start = 0
        for length, solver in plan:
            # Coefficients see the whole grid (multistep ones need earlier step sizes).
            coefs = jax.tree.map(lambda c, a=start, b=start + length: c[a:b],
                                 solver.coefficients(schedule, grid))
            step_keys = None if keys is None else keys[start:start + length]

            def body(carry, inputs, solver=solver):
                coef, k = inputs
                carry = solver.step(model, carry, coef, k)
                return carry, (solver.current(carry) if save_trajectory else None)

            if remat:
                body = jax.checkpoint(body)
            state, traj = jax.lax.scan(body, state, (coefs, step_keys))
            if save_trajectory:
                saved.append(traj)
            start += length
        x_out, ms = plan[-1][1].finish(state)
        return x_out, ms, (jnp.concatenate(saved) if save_trajectory else None)


def _step_times(grid: Array) -> dict[str, Array]:
    return {"t": grid[:-1], "t_next": grid[1:]}


class LinearMultistep(Solver):
    """``x_{i+1} = a_i x_i + sum_j b_ij D_{i-j}``, ``D`` the model output in ``space``.

    Subclasses set ``space`` and implement ``weights(schedule, grid) -> (a [n], b [n, K])``.
    The carry is ``(x, history [K, *x.shape], model_state)``, newest first.
    """

    space: ClassVar[str] = "x0"

    @property
    def history(self) -> int:
        return self.order

    @abc.abstractmethod
    def weights(self, schedule: Schedule, grid: Array) -> tuple[Array, Array]:
        """``a [n_steps]`` and ``b [n_steps, history]``."""

    def coefficients(self, schedule, grid):
        a, b = self.weights(schedule, grid)
        return {**_step_times(grid), "a": a, "b": b}

    def init(self, x, ms):
        return x, jnp.zeros((self.history,) + x.shape, x.dtype), ms

    def step(self, model, state, coef, key):
        x, hist, ms = state
        x0, eps, ms = model(x, coef["t"], ms)
        d = output_in_space(self.space, x0, eps, x, coef["t"], model.schedule)
        hist = jnp.concatenate([d[None].astype(hist.dtype), hist[:-1]])
        x_next = coef["a"].astype(x.dtype) * x + jnp.tensordot(coef["b"].astype(x.dtype), hist, 1)
        return x_next, hist, ms


class ExplicitStages(Solver):
    """Singlestep methods written as a table of stages.

    For stage ``j = 0..S-1`` at time ``s_j`` (``s_0 = t``): ``u_j = c_j x + sum_{m<j} w_jm D_m``,
    ``D_j = model(u_j, s_j)`` in ``space``; the new state is row ``S``. Subclasses implement
    ``tableau(schedule, grid) -> (s [n, S], c [n, S+1], w [n, S+1, S])``.
    """

    space: ClassVar[str] = "x0"

    @abc.abstractmethod
    def tableau(self, schedule: Schedule, grid: Array) -> tuple[Array, Array, Array]:
        """Stage times ``s``, state weights ``c`` and stage weights ``w``."""

    def coefficients(self, schedule, grid):
        s, c, w = self.tableau(schedule, grid)
        return {**_step_times(grid), "s": s, "c": c, "w": w}

    def init(self, x, ms):
        return x, ms

    def step(self, model, state, coef, key):
        x, ms = state
        c, w = coef["c"].astype(x.dtype), coef["w"].astype(x.dtype)
        n_stages = coef["s"].shape[0]
        outputs = []
        for j in range(n_stages + 1):  # static unroll over stages
            u = c[j] * x
            for m, d in enumerate(outputs):
                u = u + w[j, m] * d
            if j == n_stages:
                return u, ms
            x0, eps, ms = model(u, coef["s"][j], ms)
            outputs.append(output_in_space(self.space, x0, eps, u, coef["s"][j], model.schedule))
        raise AssertionError("unreachable")
