"""Adaptive DPM-Solver (Lu et al. 2022, Alg. 4 / Appendix C): DPM-Solver-12 and -23 with error
control, as one ``lax.while_loop``.

In ``lambda = log(alpha/sigma)`` a trial step ``h`` from ``lambda_s`` takes a lower-order update
``x_low`` and a higher-order one ``x_high`` sharing their model evaluations:

* DPM-Solver-12: ``x_low`` = DPM-Solver-1, ``x_high`` = singlestep DPM-Solver-2 (``r1 = 1/2``);
* DPM-Solver-23: ``x_low`` = DPM-Solver-2 (``r1 = 1/3``), ``x_high`` = DPM-Solver-3
  (``r1 = 1/3, r2 = 2/3``),

(the formulas of :mod:`jaxdist.solvers.dpm_solver`, noise or data prediction). With
``delta = max(atol, rtol max(|x_low|, |x_prev|))`` and
``E = max_batch sqrt(mean(((x_high - x_low) / delta)^2))`` the step is accepted when
``E <= 1`` (then ``x <- x_high``), and the next step is
``h <- min(theta h E^(-1/order), lambda_end - lambda_s)``. The model output at the accepted point
is evaluated once and reused by the next trial, so a trial costs ``order`` evaluations (its
first-stage output is cached across rejections). The loop stops at ``lambda_end`` or after
``max_steps`` trials; in the latter case one last unchecked ``x_high`` step reaches ``t_end``.

The solver chooses its own times, so it has its own entry point,
``jd.sample_adaptive(solver, denoiser, x_T, t_start, t_end) -> (SampleResult, AdaptiveInfo)``
(accepted and rejected trials and the NFE, as blackjax returns ``(state, info)``); ``t_end`` must
be ``> 0``. The while loop is not reverse-mode differentiable (use a fixed-grid solver under
``jax.grad``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..schedules import Schedule
from .base import ModelFn, ModelState, solver_dataclass
from .dpm_solver import DPMSolver, DPMSolverPP
from .primitives import check_order, concrete, first_order_coefficients, half_log_snr

Array = jax.Array

__all__ = ["AdaptiveDPMSolver", "AdaptiveInfo"]


class AdaptiveInfo(NamedTuple):
    """What an adaptive run did: accepted and rejected trial steps and model evaluations."""

    accepted: Array
    rejected: Array
    nfe: Array


@solver_dataclass
class AdaptiveDPMSolver:
    """DPM-Solver-12 (``order=2``) or -23 (``order=3``) with step-size control; run it with
    ``jd.sample_adaptive``.

    Defaults are the reference ones (``atol = 0.0078``, ``rtol = 0.05`` for data in ``[-1, 1]``,
    ``h_init = 0.05``, ``theta = 0.9``, stop within ``t_err = 1e-5`` of ``lambda_end``).
    ``prediction``: ``"x0"`` (DPM-Solver++ formulas; also steps from pure noise) or ``"eps"``
    (the paper's DPM-Solver). ``max_steps`` bounds the trials, so the NFE is at most
    ``order * (max_steps + 1) + 1``. ``order`` (set by ``order=``) is that of the higher-order
    update of each trial.
    """

    solver_order: int = 2
    rtol: float = 0.05
    atol: float = 0.0078
    prediction: str = "x0"
    h_init: float = 0.05
    theta: float = 0.9
    t_err: float = 1e-5
    max_steps: int = 1000

    def __post_init__(self):
        check_order("AdaptiveDPMSolver", self.solver_order, (2, 3))
        if self.prediction not in ("x0", "eps"):
            raise ValueError(f"AdaptiveDPMSolver: prediction={self.prediction!r}; use 'x0' or 'eps'.")
        for name in ("rtol", "atol", "h_init", "theta", "t_err"):
            if not getattr(self, name) > 0:
                raise ValueError(f"AdaptiveDPMSolver: {name}={getattr(self, name)!r} must be > 0.")
        if not (isinstance(self.max_steps, (int, np.integer)) and self.max_steps >= 1):
            raise ValueError(f"AdaptiveDPMSolver: max_steps={self.max_steps!r} must be an int >= 1.")

    @property
    def order(self) -> int:
        return self.solver_order

    @property
    def stochastic(self) -> bool:
        return False

    def validate(self, schedule: Schedule, t_start, t_end) -> None:
        """Checks concrete end points: ``t_end > 0``; noise prediction needs ``alpha(t_start) > 0``."""
        end, start = concrete(t_end), concrete(t_start)
        if end is not None and not float(end) > 0:
            raise ValueError(f"AdaptiveDPMSolver needs t_end > 0 (got {float(end)}); end at "
                             "t_min, e.g. t_end=schedule.t_min.")
        if (start is not None and end is not None) and not float(start) > float(end):
            raise ValueError(f"AdaptiveDPMSolver integrates from t_start={float(start)} down to "
                             f"t_end={float(end)}: t_start must be larger.")
        if start is not None and self.prediction == "eps" and float(schedule.alpha(start)) == 0.0:
            raise ValueError(f"AdaptiveDPMSolver(prediction='eps') cannot start where alpha = 0 "
                             f"(t_start={float(start)}); use prediction='x0' or start below t_max.")

    # -------------------------------------------------------------------------------------
    def _output(self, x0: Array, eps: Array) -> Array:
        return x0 if self.prediction == "x0" else eps

    def _trial(self, model, schedule, x: Array, d_s: Array, s: Array, t: Array, ms):
        """``(x_low, x_high, ms)`` of one trial step from time ``s`` to ``t``."""
        k = self.solver_order
        family = DPMSolverPP if self.prediction == "x0" else DPMSolver
        table = family(order=k, method="singlestep").singlestep_table(schedule, jnp.stack([s, t]), k)
        stage_t, c, w = table[0][0], table[1][0].astype(x.dtype), table[2][0].astype(x.dtype)
        outs = [d_s]
        for j in range(1, k):  # stages after the first (whose output d_s is cached)
            u = c[j - 1] * x + sum(w[j - 1, m] * outs[m] for m in range(j))
            x0, eps, ms = model(u, stage_t[j], ms)
            outs.append(self._output(x0, eps))
        x_high = c[k - 1] * x + sum(w[k - 1, m] * outs[m] for m in range(k))
        _, c1 = first_order_coefficients(self.prediction, schedule, s, t)
        c1 = c1.astype(x.dtype)
        x_low = c[k - 1] * x + c1 * outs[0]
        if k == 3:  # DPM-Solver-2 with r1 = 1/3 (midpoint form): + c1 / (2 r1) (D1 - D0)
            x_low = x_low + 1.5 * c1 * (outs[1] - outs[0])
        return x_low, x_high, ms

    def integrate(self, model: ModelFn, schedule: Schedule, x: Array, t_start: Array,
                  t_end: Array, ms: ModelState) -> tuple[Array, ModelState, AdaptiveInfo]:
        """Integrates from ``t_start`` to ``t_end`` with error control (see the module doc)."""
        lam_end = half_log_snr(schedule, t_end)
        dtype = lam_end.dtype
        x0, eps, ms = model(x, t_start, ms)
        order = float(self.solver_order)

        def time_of(lam):
            return jnp.where(lam >= lam_end, t_end, schedule.t_from_log_snr(2.0 * lam))

        def error(x_low, x_high, x_prev):
            delta = jnp.maximum(self.atol, self.rtol * jnp.maximum(jnp.abs(x_low), jnp.abs(x_prev)))
            r = ((x_high - x_low) / delta).reshape(x.shape[0], -1) if x.ndim > 1 else \
                ((x_high - x_low) / delta)[None]
            return jnp.max(jnp.sqrt(jnp.mean(r**2, axis=-1)))

        def cond(carry):
            *_, lam_s, _, n, _, _ = carry
            return (lam_end - lam_s > self.t_err) & (n < self.max_steps)

        def body(carry):
            x, x_prev, d_s, s, lam_s, h, n, accepted, ms = carry
            lam_t = jnp.minimum(lam_s + h, lam_end)
            t = time_of(lam_t)
            x_low, x_high, ms = self._trial(model, schedule, x, d_s, s, t, ms)
            err = jnp.maximum(error(x_low, x_high, x_prev), 1e-10)
            accept = err <= 1.0
            # The model output at the new point, unless it is the end (then nobody needs it).
            need = accept & (lam_end - lam_t > self.t_err)
            d_new, ms = jax.lax.cond(
                need, lambda ms: (lambda o: (self._output(o[0], o[1]), o[2]))(model(x_high, t, ms)),
                lambda ms: (d_s, ms), ms)
            x, x_prev = jnp.where(accept, x_high, x), jnp.where(accept, x_low, x_prev)
            s, lam_s = jnp.where(accept, t, s), jnp.where(accept, lam_t, lam_s)
            h = jnp.minimum(self.theta * h * err ** (-1.0 / order), lam_end - lam_s)
            return (x, x_prev, d_new, s, lam_s, h.astype(dtype), n + 1,
                    accepted + accept.astype(jnp.int32), ms)

        zero = jnp.zeros((), jnp.int32)
        carry = (x, x, self._output(x0, eps), jnp.asarray(t_start, dtype),
                 half_log_snr(schedule, t_start), jnp.asarray(self.h_init, dtype), zero, zero, ms)
        x, _, d_s, s, lam_s, _, n, accepted, ms = jax.lax.while_loop(cond, body, carry)

        def finish(args):  # max_steps used up: one unchecked higher-order step to t_end
            x, ms = args
            _, x_high, ms = self._trial(model, schedule, x, d_s, s, t_end, ms)
            return x_high, ms

        x, ms = jax.lax.cond(lam_end - lam_s > self.t_err, finish, lambda a: a, (x, ms))
        return x, ms, AdaptiveInfo(accepted, n - accepted, ms.nfe)
