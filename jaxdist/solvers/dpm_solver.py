"""DPM-Solver (Lu et al. 2022a, noise prediction) and DPM-Solver++ (Lu et al. 2022b, data
prediction): exponential integrators of the probability-flow ODE in ``lambda = log(alpha/sigma)``
(half the log-SNR).

With ``h = lambda_t - lambda_s``, the exact solution of the PF-ODE is

* data prediction:  ``x_t = (sigma_t/sigma_s) x_s + sigma_t int_{lambda_s}^{lambda_t} e^l x0(l) dl``,
* noise prediction: ``x_t = (alpha_t/alpha_s) x_s - alpha_t int_{lambda_s}^{lambda_t} e^-l eps(l) dl``,

and the solvers approximate the model output by Taylor expansions in ``lambda`` from previous
steps (multistep: ``2M``, ``3M``) or from intermediate stages (singlestep: ``2S``, ``3S``).
Coefficients use the paper's formulas (``phi_1 = expm1(-h)``, ``phi_2 = phi_1/h + 1``,
``phi_3 = phi_2/h - 1/2`` for data prediction; signs flipped for noise prediction), written
as weights on the model outputs, so a step is one ``tensordot``. The first-order term uses the
exact identity ``alpha_t expm1(-h) = sigma_t alpha_s / sigma_s - alpha_t``, which stays exact for
steps from pure noise (``alpha_s = 0``) or to clean data (``sigma_t = 0``).

Every schedule works through its log-SNR (VP, VE, EDM, rectified flow).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..schedules import Schedule
from .base import (ExplicitStages, LinearMultistep, Solver, _check_order, half_log_snr,
                   multistep_orders, solver_dataclass)

Array = jax.Array

__all__ = ["DPMSolver", "DPMSolverPP", "DPMMultistep", "DPMSinglestep"]

_SOLVER_TYPES = {"midpoint": "midpoint", "dpmsolver": "midpoint", "heun": "heun", "taylor": "heun"}


def _first_order(prediction: str, schedule: Schedule, s: Array, u: Array):
    """``(ratio, c1)`` of the exact first-order step ``x_u = ratio x_s + c1 D_s``."""
    a_s, s_s, a_u, s_u = schedule.alpha(s), schedule.sigma(s), schedule.alpha(u), schedule.sigma(u)
    if prediction == "x0":
        return s_u / s_s, a_u - s_u * a_s / s_s
    return a_u / a_s, s_u - a_u * s_s / a_s


def _phis(prediction: str, schedule: Schedule, u: Array, h: Array):
    """``(p2, p3)`` such that the higher-order terms of a step to ``u`` are ``+ p2 D1 + p3 D2``.

    Data prediction: ``p2 = alpha_u phi_2``, ``p3 = -alpha_u phi_3`` with ``phi_1 = expm1(-h)``;
    noise prediction: ``p2 = -sigma_u phi_2``, ``p3 = -sigma_u phi_3`` with ``phi_1 = expm1(h)``,
    ``phi_2 = phi_1/h -+ 1``, ``phi_3 = phi_2/h - 1/2``.
    """
    if prediction == "x0":
        phi2 = jnp.expm1(-h) / h + 1.0
        a = schedule.alpha(u)
        return a * phi2, -a * (phi2 / h - 0.5)
    phi2 = jnp.expm1(h) / h - 1.0
    s = schedule.sigma(u)
    return -s * phi2, -s * (phi2 / h - 0.5)


@solver_dataclass
class DPMMultistep(LinearMultistep):
    """Multistep DPM-Solver(++) with static per-step ``orders`` (built by the public classes)."""

    prediction: str
    orders: tuple[int, ...]
    solver_type: str = "midpoint"
    #: weight of the second-derivative term of the third-order update (2 = Taylor-exact;
    #: 1 reproduces the reference implementations, which are second order).
    d2_weight: float = 2.0

    @property
    def order(self) -> int:
        return max(self.orders)

    @property
    def space(self) -> str:  # type: ignore[override]
        return self.prediction

    def weights(self, schedule, grid):
        lam = half_log_snr(schedule, grid)
        s, t = grid[:-1], grid[1:]
        h = lam[1:] - lam[:-1]
        # Step sizes of the previous two steps (dummies on warm-up steps, where they are unused).
        h1 = jnp.concatenate([h[:1], h[:-1]])
        h2 = jnp.concatenate([h[:1], h1[:-1]])
        r0, r1 = (h1 / h)[:, None], (h2 / h)[:, None]
        ratio, c1 = _first_order(self.prediction, schedule, s, t)
        p2, p3 = (p[:, None] for p in _phis(self.prediction, schedule, t, h))
        c1 = c1[:, None]
        e0, e1, e2 = jnp.eye(3, dtype=h.dtype)
        d1_0 = (e0 - e1) / r0
        if self.solver_type == "midpoint":
            b2 = c1 * e0 + 0.5 * c1 * d1_0
        else:
            b2 = c1 * e0 + p2 * d1_0
        d1_1 = (e1 - e2) / r1
        d1 = d1_0 + r0 / (r0 + r1) * (d1_0 - d1_1)
        d2 = (d1_0 - d1_1) / (r0 + r1)
        # d2 estimates h^2 x0''/2, so its Taylor weight is 2 p3. (The reference code of
        # DPM-Solver(++) and diffusers use p3, which makes "3M" second order; see the docs.)
        b3 = c1 * e0 + p2 * d1 + self.d2_weight * p3 * d2
        orders = jnp.asarray(self.orders)
        orders = jnp.where(t == 0, 1, orders)[:, None]  # a step to clean data is first order
        b = jnp.where(orders == 1, c1 * e0, jnp.where(orders == 2, b2, b3))
        return ratio, b[:, : self.history]


@solver_dataclass
class DPMSinglestep(ExplicitStages):
    """Singlestep DPM-Solver(++) of one ``order`` with stages at ``lambda_s + r_j h``
    (``r = 1/2`` for order 2, ``1/3, 2/3`` for order 3)."""

    prediction: str
    order: int = 1
    solver_type: str = "midpoint"
    #: if > 0, also keep a multistep history of this length in the carry (warm-up steps).
    history: int = 0

    @property
    def space(self) -> str:  # type: ignore[override]
        return self.prediction

    def init(self, x, ms):
        if self.history:
            return LinearMultistep.init(self, x, ms)
        return super().init(x, ms)

    def step(self, model, state, coef, key):
        if not self.history:
            return super().step(model, state, coef, key)
        x, hist, ms = state
        # Record the first stage (the model output at the grid time) for the multistep steps.
        record = _Recorder(model)
        x, ms = super().step(record, (x, ms), coef, key)
        x0, eps, _ = record.first
        d = x0 if self.prediction == "x0" else eps
        return x, jnp.concatenate([d[None].astype(hist.dtype), hist[:-1]]), ms

    def tableau(self, schedule, grid):
        s, t = grid[:-1], grid[1:]
        lam = half_log_snr(schedule, grid)
        lam_s, h = lam[:-1], lam[1:] - lam[:-1]
        ratio_t, c1_t = _first_order(self.prediction, schedule, s, t)
        one, zero = jnp.ones_like(h), jnp.zeros_like(h)
        k = self.order
        if k == 1:
            return s[:, None], jnp.stack([one, ratio_t], 1), jnp.stack([zero, c1_t], 1)[:, :, None]
        rs = (0.5,) if k == 2 else (1.0 / 3.0, 2.0 / 3.0)
        stage_t = [s] + [schedule.t_from_log_snr(2.0 * (lam_s + r * h)) for r in rs]
        first = [_first_order(self.prediction, schedule, s, u) for u in stage_t[1:]]
        c = jnp.stack([one] + [f[0] for f in first] + [ratio_t], 1)
        w = jnp.zeros(h.shape + (k + 1, k), h.dtype)
        for j, (_, c1_u) in enumerate(first, start=1):
            w = w.at[:, j, 0].set(c1_u)
        p2_t, _ = _phis(self.prediction, schedule, t, h)
        if k == 2:
            r1 = rs[0]
            # midpoint: + c1/(2 r1) (D1 - D0); heun: + p2/r1 (D1 - D0)
            coef = c1_t / (2 * r1) if self.solver_type == "midpoint" else p2_t / r1
            w = w.at[:, 2, 0].set(c1_t - coef).at[:, 2, 1].set(coef)
        else:
            r1, r2 = rs
            p22, _ = _phis(self.prediction, schedule, stage_t[2], r2 * h)
            inner = r2 / r1 * p22
            w = w.at[:, 2, 0].add(-inner).at[:, 2, 1].set(inner)
            outer = p2_t / r2
            w = w.at[:, 3, 0].set(c1_t - outer).at[:, 3, 2].set(outer)
        # A step to clean data (t = 0) falls back to the exact first-order update.
        final = (t == 0)[:, None, None] & (jnp.arange(k + 1) == k)[None, :, None]
        first_order_row = jnp.zeros_like(w).at[:, k, 0].set(c1_t)
        w = jnp.where(final, first_order_row, w)
        return jnp.stack(stage_t, 1), c, w


class _Recorder:
    """Wraps a model and keeps the output space's value of its first evaluation."""

    def __init__(self, model):
        self.model, self.schedule, self.first = model, model.schedule, None

    def __call__(self, x, t, ms):
        out = self.model(x, t, ms)
        if self.first is None:
            self.first = out
        return out


def _plan_singlestep(solver, prediction: str, n_steps: int, grid) -> list[tuple[int, Solver]]:
    orders = np.full(n_steps, solver.order)
    if solver.lower_order_final:
        orders = np.minimum(orders, n_steps - np.arange(n_steps))
    try:
        if float(np.asarray(grid)[-1]) == 0.0:
            orders[-1] = 1  # no point spending stages on a step to clean data
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        pass
    runs: list[tuple[int, Solver]] = []
    for k in orders:
        sub = DPMSinglestep(prediction, int(k), solver.solver_type)
        if runs and runs[-1][1] == sub:
            runs[-1] = (runs[-1][0] + 1, sub)
        else:
            runs.append((1, sub))
    return runs


class _DPMFamily(Solver):
    """Shared front end of :class:`DPMSolver` and :class:`DPMSolverPP`."""

    prediction = "x0"

    def __post_init__(self):
        name = type(self).__name__
        _check_order(name, self.order, (1, 2, 3))
        if self.method not in ("multistep", "singlestep"):
            raise ValueError(f"{name}: method={self.method!r}; use 'multistep' or 'singlestep'.")
        if self.warmup not in ("lower_order", "singlestep"):
            raise ValueError(f"{name}: warmup={self.warmup!r}; use 'lower_order' or 'singlestep'.")
        if self.solver_type not in _SOLVER_TYPES:
            raise ValueError(f"{name}: solver_type={self.solver_type!r}; use one of "
                             f"{sorted(_SOLVER_TYPES)}.")
        object.__setattr__(self, "solver_type", _SOLVER_TYPES[self.solver_type])

    @property
    def nfe_per_step(self) -> int:
        return 1 if self.method == "multistep" else self.order

    def plan(self, n_steps, grid):
        if self.method == "singlestep":
            return _plan_singlestep(self, self.prediction, n_steps, grid)
        orders = tuple(int(o) for o in multistep_orders(n_steps, self.order,
                                                          self.lower_order_final))
        multistep = DPMMultistep(self.prediction, orders, self.solver_type)
        if self.warmup == "singlestep" and self.order == 3 and n_steps > 1:
            # A second-order first step (local error O(h^3)) keeps the global order at 3.
            first = DPMSinglestep(self.prediction, 2, self.solver_type, history=multistep.history)
            return [(1, first), (n_steps - 1, multistep)]
        return [(n_steps, multistep)]

    def validate(self, schedule, grid):
        if self.prediction == "eps":
            try:
                a0 = float(schedule.alpha(jnp.asarray(grid)[0]))
            except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
                return
            if a0 == 0.0:
                raise ValueError(
                    f"{type(self).__name__} (noise prediction) cannot start where alpha = 0 "
                    f"(grid[0]={float(grid[0])}); start the grid below t_max or use DPMSolverPP.")

    # The public classes only plan; the work is done by the solvers in the plan.
    def coefficients(self, schedule, grid):
        raise NotImplementedError("use plan(): the work is done by DPMMultistep/DPMSinglestep")

    def init(self, x, ms):
        raise NotImplementedError

    def step(self, model, state, coef, key):
        raise NotImplementedError


@solver_dataclass
class DPMSolverPP(_DPMFamily):
    """DPM-Solver++ (data prediction). ``order=2, method="multistep"`` is "DPM++ 2M";
    ``order=3`` multistep is "3M"; ``method="singlestep"`` gives "2S"/"3S".

    ``lower_order_final``: the last ``order - 1`` steps use orders ``.., 2, 1``
    (``min(order, steps left)``), at every step count. A step to ``t = 0`` is always first
    order and returns ``x0_hat``. ``solver_type``: ``"midpoint"`` (DPM-Solver's ``dpmsolver``)
    or ``"heun"`` (``taylor``) for the second-order terms.

    ``warmup`` (multistep): ``"lower_order"`` starts with orders ``1, 2, ..`` at one evaluation
    per step, as diffusers and DPM-Solver do; its first-order first step bounds the global
    order of 3M by 2 in the limit. ``"singlestep"`` takes the first 3M step with singlestep
    DPM-Solver(++)-2 (one extra evaluation) and keeps the global order 3.
    """

    order: int = 2
    method: str = "multistep"
    solver_type: str = "midpoint"
    lower_order_final: bool = True
    warmup: str = "lower_order"
    prediction = "x0"


@solver_dataclass
class DPMSolver(_DPMFamily):
    """DPM-Solver (noise prediction): ``method="singlestep"`` (DPM-Solver-1/2/3, ``order`` model
    evaluations per step) or ``"multistep"`` (orders 2-3). Same options as :class:`DPMSolverPP`.
    """

    order: int = 2
    method: str = "singlestep"
    solver_type: str = "midpoint"
    lower_order_final: bool = False
    warmup: str = "lower_order"
    prediction = "eps"
