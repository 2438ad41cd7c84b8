"""DPM-Solver-v3 (Zheng et al. 2023): a multistep exponential integrator whose parameterisation
comes from empirical model statistics (EMS) ``l, s, b`` of the model on a log-SNR grid.

With ``lambda = log(alpha / sigma)``, the noise prediction ``eps`` and the statistics (per
feature, functions of ``lambda``), the model is rewritten as

    f(x, lambda) = (sigma eps - l x) / alpha,    g = e^{-S} f - B,
    L = int l dlambda,  S = int s dlambda,  B = int e^{-S} b dlambda,

and the probability-flow ODE solved exactly in ``x`` with ``g`` Taylor-expanded in ``lambda``
from the step's start ``s`` (all integrals from ``lambda_s``; ``dL = L(lambda) - L(lambda_s)``):

    x_t = (alpha_t/alpha_s) e^{-dL_t} x_s - alpha_t e^{-dL_t} [ sum_k K_k g^(k)_s + int_s^t
          e^{dL + dS} dB dlambda ],     K_k = int_s^t e^{dL + dS} (lambda - lambda_s)^k / k! dlambda,

with ``g^(k)`` from the previous ``order - 1`` outputs (the Vandermonde solve of the reference's
``compute_high_order_derivatives``, ``pseudo=False``). Checked against the reference
(thu-ml/DPM-Solver-v3, ``codebases/score_sde/samplers/dpm_solver_v3.py``,
``DPM_Solver_v3.multistep_predictor_update``, ``get_g``, ``weighted_cumsumexp_trapezoid``):
the same update, written relative to ``lambda_s``. Differences: the grid is not snapped to the
statistics' grid (the statistics are interpolated linearly in ``lambda``; ``L``, ``S`` are their
exact integrals, ``B`` the trapezoid rule on the statistics' grid, the step integrals 24-point
Gauss-Legendre), and the corrector and "pseudo-order" options are not implemented.

Degenerate statistics (``l = 1, s = b = 0``, :meth:`EMS.degenerate`) give ``f = -x0_hat`` and
DPM-Solver++ multistep with Taylor differences (``DPMSolverPP(solver_type="heun")``; the
reference README's "DPM-Solver++", there up to its trapezoid rule).

EMS (:func:`compute_ems`, the paper's Eqs. for the first-order-optimal parameterisation, from
``x_lambda = alpha x0 + sigma z``; the repository has no EMS code to check against):
``l = E[diag(sigma d eps/dx)]`` (Hutchinson, Rademacher probes through ``jax.jvp``), and
``s, b`` the per-feature least-squares fit ``f^(1) ~ s f + b`` of the total derivative
``f^(1) = df/dlambda`` along the ODE (a JVP in ``(x, lambda)``):
``s = Cov(f^(1), f) / Var(f)``, ``b = E f^(1) - s E f``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..schedules import expand_to
from .base import MultistepState, Solver, push
from .primitives import boundary_bound, check_order, half_log_snr, multistep_orders

Array = jax.Array

__all__ = ["EMS", "DPMSolverV3", "V3Coefs", "compute_ems"]

_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(24)


class EMS(NamedTuple):
    """Empirical model statistics on an increasing half-log-SNR grid ``lambdas [M]``:
    ``l, s, b [M, *feature_shape]``."""

    lambdas: Array
    l: Array
    s: Array
    b: Array

    @classmethod
    def degenerate(cls, lambdas: Any, feature_shape: tuple[int, ...]) -> "EMS":
        """``l = 1, s = b = 0``: DPM-Solver++ (module docstring)."""
        lam = jnp.asarray(lambdas)
        shape = (lam.shape[0],) + tuple(feature_shape)
        return cls(lam, jnp.ones(shape, lam.dtype), jnp.zeros(shape, lam.dtype),
                   jnp.zeros(shape, lam.dtype))


def _locate(knots: Array, q: Array) -> tuple[Array, Array, Array]:
    """Segment index ``i``, offset ``q - knots[i]`` and weight of ``knots[i + 1]`` of the
    clamped ``q``."""
    qc = jnp.clip(q, knots[0], knots[-1])
    i = jnp.clip(jnp.searchsorted(knots, qc, side="right", method="compare_all") - 1, 0,
                 knots.shape[0] - 2)
    d = qc - knots[i]
    return i, d, d / (knots[i + 1] - knots[i])


def _bcast(w: Array, vals: Array) -> Array:
    return w.reshape(w.shape + (1,) * (vals.ndim - 1))


def _interp(knots: Array, vals: Array, q: Array) -> Array:
    """Piecewise-linear ``vals [M, *F]`` at ``q [...]`` (constant outside): ``[..., *F]``."""
    i, _, w = _locate(knots, q)
    w = _bcast(w, vals)
    return vals[i] * (1 - w) + vals[i + 1] * w


class _Integral:
    """``q -> int_{knots[0]}^q`` of the piecewise-linear ``vals`` (exact; constant extension
    of ``vals`` outside the grid)."""

    def __init__(self, knots: Array, vals: Array):
        seg = 0.5 * _bcast(knots[1:] - knots[:-1], vals) * (vals[1:] + vals[:-1])
        self.knots, self.vals = knots, vals
        self.cum = jnp.concatenate([jnp.zeros_like(vals[:1]), jnp.cumsum(seg, 0)])

    def __call__(self, q: Array) -> Array:
        knots, vals = self.knots, self.vals
        i, d, w = _locate(knots, q)
        w = _bcast(w, vals)
        mid = vals[i] * (1 - w) + vals[i + 1] * w
        inside = self.cum[i] + 0.5 * _bcast(d, vals) * (vals[i] + mid)
        lo = _bcast(jnp.minimum(q - knots[0], 0.0), vals) * vals[0]
        hi = _bcast(jnp.maximum(q - knots[-1], 0.0), vals) * vals[-1]
        return inside + lo + hi


def _vandermonde_inverse(r: Array) -> Array:
    """Inverse of ``V[n, i, k] = r[n, i]^(k + 1)`` for 1 or 2 points (closed form)."""
    if r.shape[1] == 1:
        return (1.0 / r)[:, :, None]
    a, b = r[:, 0], r[:, 1]
    det = a * b * (b - a)  # det [[a, a^2], [b, b^2]]
    inv = jnp.stack([jnp.stack([b**2, -a**2], 1), jnp.stack([-b, a], 1)], 1)
    return inv / det[:, None, None]


class V3Coefs(NamedTuple):
    """``x_{i+1} = a x + sum_k w_k f_{i-k} + c`` (per feature); ``l`` at ``t_i`` builds
    ``f_i = (sigma eps - l x) / alpha``."""

    t: Array
    t_next: Array
    a: Array
    w: Array
    c: Array
    l: Array


@dataclasses.dataclass(frozen=True, eq=False, init=False)
class DPMSolverV3(Solver):
    """DPM-Solver-v3 multistep predictor (module docstring).

    Args:
      stats: :class:`EMS` (data: pytree leaves; one compilation for all values).
      solver_order: 1, 2 or 3 (``order=`` is accepted too); warm-up ``1, 2, ..``.
      lower_order_final: last steps of orders ``.., 2, 1``.

    ``order``: global order, bounded by the warm-up and final steps as DPM-Solver++'s
    (``order=3`` gives 2 in the limit). Grids must end above ``t = 0``. NFE = steps.
    """

    stats: EMS
    solver_order: int = 2
    lower_order_final: bool = True

    def __init__(self, stats: EMS, solver_order: int = 2, lower_order_final: bool = True, *,
                 order: int | None = None):
        object.__setattr__(self, "stats", stats)
        object.__setattr__(self, "solver_order", int(order) if order is not None else solver_order)
        object.__setattr__(self, "lower_order_final", lower_order_final)
        check_order("DPMSolverV3", self.solver_order, (1, 2, 3))
        if isinstance(stats, EMS) and hasattr(stats.lambdas, "ndim"):
            lam = stats.lambdas
            if lam.ndim != 1 or lam.shape[0] < 2:
                raise ValueError(f"DPMSolverV3: stats.lambdas must be a 1-D grid of >= 2 "
                                 f"log-SNRs, got shape {lam.shape}.")
            for name in ("l", "s", "b"):
                arr = getattr(stats, name)
                if hasattr(arr, "shape") and arr.shape[:1] != lam.shape:
                    raise ValueError(f"DPMSolverV3: stats.{name} has shape {arr.shape}; its "
                                     f"leading axis must match stats.lambdas ({lam.shape[0]}).")
        elif not isinstance(stats, EMS) and hasattr(stats, "shape"):
            raise ValueError("DPMSolverV3: stats must be a jd.solvers.EMS (compute_ems).")

    @property
    def order(self) -> int:
        orders = multistep_orders(16, self.solver_order, self.lower_order_final)
        return boundary_bound(self.solver_order, [int(k) for k in orders
                                                  if k < self.solver_order])

    @property
    def history(self) -> int:
        return self.solver_order

    def validate(self, schedule, grid):
        from .primitives import concrete

        g = concrete(grid)
        if g is not None and g[-1] == 0:
            raise ValueError("DPMSolverV3: the grid must end above t = 0 (at t_min): the "
                             "statistics' parameterisation has no step to clean data.")

    def coefficients(self, schedule, grid):
        st = self.stats
        dt = grid.dtype
        knots = jnp.asarray(st.lambdas, dt)
        l_t, s_t, b_t = (jnp.asarray(v, dt) for v in (st.l, st.s, st.b))
        feat = l_t.ndim - 1
        ex = (slice(None),) + (None,) * feat
        lam = half_log_snr(schedule, grid)
        n = grid.shape[0] - 1
        K = self.solver_order
        orders = multistep_orders(n, K, self.lower_order_final)
        L, S = _Integral(knots, l_t), _Integral(knots, s_t)
        # B(lambda) = int e^{-S} b on the statistics' grid (trapezoid), then linear in between
        B_knots = _Integral(knots, jnp.exp(-S.cum) * b_t).cum

        def B(q):
            return _interp(knots, B_knots, q)

        alpha = schedule.alpha(grid)
        lam_s, lam_t = lam[:-1], lam[1:]
        h = lam_t - lam_s
        # quadrature nodes of each step [n, Q]
        u = lam_s[:, None] + 0.5 * h[:, None] * (jnp.asarray(_GL_NODES, dt) + 1.0)
        wq = 0.5 * h[:, None] * jnp.asarray(_GL_WEIGHTS, dt)
        L_s, S_s, B_s = L(lam_s), S(lam_s), B(lam_s)  # [n, *F]
        dLq = L(u) - L_s[:, None]
        dSq = S(u) - S_s[:, None]
        dBq = jnp.exp(S_s)[:, None] * (B(u) - B_s[:, None])  # int_s^u e^{-dS} b
        e = jnp.exp(dLq + dSq)  # [n, Q, *F]
        wqx = wq.reshape(wq.shape + (1,) * feat)
        tau = (u - lam_s[:, None]).reshape(u.shape + (1,) * feat)
        Kk = [jnp.sum(wqx * e * tau**k / math.factorial(k), 1) for k in range(K)]  # [n, *F]
        term3 = jnp.sum(wqx * e * dBq, 1)
        dL_t = L(lam_t) - L_s
        pre = -expand_to(alpha[1:], dL_t) * jnp.exp(-dL_t)  # -alpha_t e^{-dL_t}
        a = expand_to(alpha[1:] / alpha[:-1], dL_t) * jnp.exp(-dL_t)
        # history points lambda_{i-j}, j = 0..K-1 (clamped at the start; unused there)
        idx = np.arange(n)
        hist_lam = jnp.stack([lam[np.maximum(idx - j, 0)] for j in range(K)], 1)  # [n, K]
        dS_j = jnp.stack([S(hist_lam[:, j]) - S_s for j in range(K)], 1)  # [n, K, *F]
        dB_j = jnp.stack([jnp.exp(S_s) * (B(hist_lam[:, j]) - B_s) for j in range(K)], 1)
        # omega_j: weights on g_j of sum_k K_k g^(k), for each static order p
        w_all, c_all = [], []
        for p in range(1, K + 1):
            om = [Kk[0]] + [jnp.zeros_like(Kk[0])] * (K - 1)
            if p > 1:
                r = (hist_lam[:, 1:p] - lam_s[:, None])  # [n, p-1]
                safe = jnp.where(jnp.asarray(idx >= p - 1)[:, None], r,
                                 -jnp.arange(1, p, dtype=dt) * jnp.abs(h[:, None]))
                rinv = _vandermonde_inverse(safe)  # [n, k, i]
                for i in range(1, p):
                    wi = sum(Kk[k] * math.factorial(k) * expand_to(rinv[:, k - 1, i - 1], Kk[k])
                             for k in range(1, p))
                    om[i] = wi
                    om[0] = om[0] - wi
            om = jnp.stack(om, 1)  # [n, K, *F]
            w_all.append(pre[:, None] * om * jnp.exp(-dS_j))
            c_all.append(pre * (term3 - jnp.sum(om * dB_j, 1)))
        pick = jnp.asarray(orders)
        w, c = w_all[0], c_all[0]
        for p in range(2, K + 1):
            w = jnp.where((pick == p)[(slice(None),) + (None,) * (feat + 1)], w_all[p - 1], w)
            c = jnp.where((pick == p)[ex], c_all[p - 1], c)
        return V3Coefs(grid[:-1], grid[1:], a, w, c, _interp(knots, l_t, lam_s))

    def init(self, x, model_state):
        return MultistepState(x, jnp.zeros((self.history,) + x.shape, x.dtype), model_state)

    def step(self, model, state, coefs, key):
        x, hist, ms = state
        dt = x.dtype
        _, eps, ms = model(x, coefs.t, ms)
        sched = model.schedule
        f = (sched.sigma(coefs.t) * eps - coefs.l.astype(dt) * x) / sched.alpha(coefs.t)
        hist = push(hist, f)
        x_next = coefs.a.astype(dt) * x + jnp.sum(coefs.w.astype(dt)[:, None] * hist, 0) \
            + coefs.c.astype(dt)
        return MultistepState(x_next, hist, ms)


jax.tree_util.register_dataclass(DPMSolverV3, data_fields=["stats"],
                                 meta_fields=["solver_order", "lower_order_final"])


def compute_ems(denoiser: Any, schedule: Any, x0_samples: Array, lambdas: Array,
                key: Array, n_probes: int = 1, eps_var: float = 1e-12) -> EMS:
    """The EMS of ``denoiser`` at the half-log-SNRs ``lambdas [M]`` (increasing) from data
    samples ``x0_samples [N, *F]`` (module docstring); ``n_probes`` Rademacher probes per sample
    for ``l``; ``eps_var`` regularises ``Var(f)`` where ``f`` does not vary (``s -> 0``)."""
    x0 = jnp.asarray(x0_samples)
    lam = jnp.asarray(lambdas, x0.dtype)
    if lam.ndim != 1 or lam.shape[0] < 2 or not bool(jnp.all(jnp.diff(lam) > 0)):
        raise ValueError("compute_ems: lambdas must be an increasing 1-D grid of >= 2 "
                         "half-log-SNRs (log(alpha / sigma)).")
    if x0.ndim < 2 or x0.shape[0] < 2:
        raise ValueError(f"compute_ems: x0_samples must be a batch [N >= 2, ...], got shape "
                         f"{x0.shape}.")

    def t_of(lmb):
        return schedule.t_from_log_snr(2.0 * lmb)

    def eps_fn(x, lmb):
        return denoiser(x, t_of(lmb))[1]

    keys = jax.random.split(key, lam.shape[0])

    def l_at(lmb, k):
        kz, kv = jax.random.split(k)
        t = t_of(lmb)
        a, s = schedule.alpha(t), schedule.sigma(t)
        x = a * x0 + s * jax.random.normal(kz, x0.shape, x0.dtype)
        tot = jnp.zeros_like(x0[0])
        for j in range(n_probes):
            v = jax.random.rademacher(jax.random.fold_in(kv, j), x0.shape, x0.dtype)
            jv = jax.jvp(lambda y: eps_fn(y, lmb), (x,), (v,))[1]
            tot = tot + jnp.mean(s * v * jv, 0)
        return tot / n_probes

    l_tab = jax.lax.map(lambda a: l_at(*a), (lam, keys))

    def log_alpha(lmb):
        return jnp.log(schedule.alpha(t_of(lmb)))

    def sb_at(lmb, k):
        t = t_of(lmb)
        a, s = schedule.alpha(t), schedule.sigma(t)
        x = a * x0 + s * jax.random.normal(jax.random.split(k)[0], x0.shape, x0.dtype)

        def f_fn(y, m):
            tm = t_of(m)
            return (schedule.sigma(tm) * eps_fn(y, m) - _interp(lam, l_tab, m) * y) / \
                schedule.alpha(tm)

        dlog_a = jax.jvp(log_alpha, (lmb,), (jnp.ones_like(lmb),))[1]
        dx = dlog_a * x - s * eps_fn(x, lmb)  # the PF-ODE in lambda
        f, df = jax.jvp(f_fn, (x, lmb), (dx, jnp.ones_like(lmb)))
        fm, dfm = jnp.mean(f, 0), jnp.mean(df, 0)
        cov = jnp.mean((f - fm) * (df - dfm), 0)
        var = jnp.mean((f - fm) ** 2, 0)
        s_hat = cov / (var + eps_var)
        return s_hat, dfm - s_hat * fm

    s_tab, b_tab = jax.lax.map(lambda a: sb_at(*a), (lam, keys))
    return EMS(lam, l_tab, s_tab, b_tab)
