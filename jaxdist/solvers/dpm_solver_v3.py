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

with ``g^(k)`` from the previous ``order - 1`` outputs: the polynomial through the points
(Vandermonde solve), or with ``predictor_pseudo=True`` the paper's "pseudo-order" estimates
``g^(k) ~ k! g[lambda_0, .., lambda_k]`` (Newton divided differences over the first ``k + 1``
points only: lower accuracy, more stable at large steps).

``corrector=True`` adds the paper's multistep corrector (no extra evaluation): once the model
has been evaluated at the predicted ``x_i``, ``x_i`` is recomputed by the same update from
``x_{i-1}`` with the points ``lambda_{i-1}, lambda_i, lambda_{i-2}, ..`` (as many as the
previous predictor step used, from 2 on), and ``f_i`` is kept.

Checked against the reference (thu-ml/DPM-Solver-v3, ``codebases/score_sde/samplers/
dpm_solver_v3.py``: ``multistep_predictor_update``, ``multistep_corrector_update``,
``compute_high_order_derivatives``, ``sample``; tests/solvers/test_dpm_solver_v3.py runs that
loop written in NumPy): the same update, written relative to ``lambda_s``. Differences: the
grid is not snapped to the statistics' grid (the statistics are interpolated linearly in
``lambda``; ``L``, ``S`` are their exact integrals, ``B`` the trapezoid rule on the
statistics' grid, the step integrals 24-point Gauss-Legendre). The reference's recipe for
CIFAR-10: ``order=3`` with the corrector up to 8 steps, ``predictor_pseudo=True,
lower_order_final=False`` at 5 steps, plain ``order=3`` at 9-10 steps.

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
from .base import Solver, push
from .primitives import boundary_bound, check_order, half_log_snr, multistep_orders

Array = jax.Array

__all__ = ["EMS", "DPMSolverV3", "V3Coefs", "V3State", "compute_ems"]

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


def _derivative_weights(r: Array, pseudo: bool) -> list[list[Array]]:
    """``D[k - 1][j] [n]`` with ``g^(k) ~ sum_j D[k - 1][j] g_j``, ``k = 1..p-1``, from the
    points' offsets ``r [n, p - 1]`` (``lambda_j - lambda_0``, ``j = 1..p-1``; ``r_0 = 0``):
    the interpolating polynomial's derivatives, or (``pseudo``) ``k!`` times the divided
    differences ``g[lambda_0, .., lambda_k]``."""
    m = r.shape[1]
    if not pseudo:
        rinv = _vandermonde_inverse(r)  # [n, k, j]
        rows = []
        for k in range(1, m + 1):
            d = [math.factorial(k) * rinv[:, k - 1, j] for j in range(m)]
            rows.append([-sum(d)] + d)
        return rows
    pts = jnp.concatenate([jnp.zeros_like(r[:, :1]), r], 1)  # [n, p]
    rows = []
    for k in range(1, m + 1):
        row = []
        for j in range(m + 1):
            if j > k:
                row.append(jnp.zeros_like(r[:, 0]))
                continue
            den = math.prod(pts[:, j] - pts[:, q] for q in range(k + 1) if q != j)
            row.append(math.factorial(k) / den)
        rows.append(row)
    return rows


class V3Coefs(NamedTuple):
    """``x_{i+1} = a x + sum_k w_k f_{i-k} + c`` (per feature); ``l`` at ``t_i`` builds
    ``f_i = (sigma eps - l x) / alpha``; the corrector ``x_i <- ac x_{i-1} + sum_k wc_k f_{i-k}
    + cc`` where ``correct`` (after ``f_i`` is computed)."""

    t: Array
    t_next: Array
    a: Array
    w: Array
    c: Array
    l: Array
    correct: Array
    ac: Array
    wc: Array
    cc: Array


class V3State(NamedTuple):
    """State of :class:`DPMSolverV3`: ``x_prev`` is the previous step's start (the corrector's
    base), ``history`` the outputs ``f``, newest first."""

    x: Array
    x_prev: Array
    history: Array
    model_state: Any


class _Integrals:
    """``L = int l``, ``S = int s`` (exact) and ``B = int e^{-S} b`` (trapezoid on the
    statistics' grid, linear in between) as functions of ``lambda``."""

    def __init__(self, stats: EMS, dtype):
        self.knots = jnp.asarray(stats.lambdas, dtype)
        self.l_tab, s_tab, b_tab = (jnp.asarray(v, dtype) for v in (stats.l, stats.s, stats.b))
        self.L, self.S = _Integral(self.knots, self.l_tab), _Integral(self.knots, s_tab)
        self.B_knots = _Integral(self.knots, jnp.exp(-self.S.cum) * b_tab).cum
        self.feat = self.l_tab.ndim - 1

    def B(self, q: Array) -> Array:
        return _interp(self.knots, self.B_knots, q)


def _update_weights(ig: _Integrals, alpha_s: Array, alpha_t: Array, pts: Array,
                    lam_t: Array, orders: np.ndarray, pseudo: bool):
    """``x_t = a x_s + sum_j w_j f_j + c`` per step for points ``pts [n, P]`` (``pts[:, 0] =
    lambda_s``, the base), using the first ``orders[i]`` points at step ``i`` (module
    docstring): ``a [n, *F]``, ``w [n, P, *F]``, ``c [n, *F]``."""
    dt, feat = pts.dtype, ig.feat
    lam_s = pts[:, 0]
    h = lam_t - lam_s
    u = lam_s[:, None] + 0.5 * h[:, None] * (jnp.asarray(_GL_NODES, dt) + 1.0)  # [n, Q]
    wq = (0.5 * h[:, None] * jnp.asarray(_GL_WEIGHTS, dt)).reshape(u.shape + (1,) * feat)
    L_s, S_s, B_s = ig.L(lam_s), ig.S(lam_s), ig.B(lam_s)  # [n, *F]
    e = jnp.exp(ig.L(u) - L_s[:, None] + ig.S(u) - S_s[:, None])  # [n, Q, *F]
    tau = (u - lam_s[:, None]).reshape(u.shape + (1,) * feat)
    P = pts.shape[1]
    Kk = [jnp.sum(wq * e * tau**k / math.factorial(k), 1) for k in range(P)]  # [n, *F]
    dBq = jnp.exp(S_s)[:, None] * (ig.B(u) - B_s[:, None])  # int_s^u e^{-dS} b
    term3 = jnp.sum(wq * e * dBq, 1)
    dL_t = ig.L(lam_t) - L_s
    pre = -expand_to(alpha_t, dL_t) * jnp.exp(-dL_t)  # -alpha_t e^{-dL_t}
    a = expand_to(alpha_t / alpha_s, dL_t) * jnp.exp(-dL_t)
    dS_j = jnp.stack([ig.S(pts[:, j]) - S_s for j in range(P)], 1)  # [n, P, *F]
    dB_j = jnp.stack([jnp.exp(S_s) * (ig.B(pts[:, j]) - B_s) for j in range(P)], 1)
    w_by_order, c_by_order = [], []
    for p in range(1, P + 1):
        om = [Kk[0]] + [jnp.zeros_like(Kk[0])] * (P - 1)
        if p > 1:
            r = pts[:, 1:p] - lam_s[:, None]
            # rows that do not use p points get distinct stand-in offsets (no 0 / 0)
            safe = jnp.where(jnp.asarray(orders >= p)[:, None], r, -jnp.arange(1, p, dtype=dt))
            D = _derivative_weights(safe, pseudo)
            for j in range(p):
                om[j] = om[j] + sum(Kk[k] * expand_to(D[k - 1][j], Kk[k]) for k in range(1, p))
        om = jnp.stack(om, 1)  # [n, P, *F]
        w_by_order.append(pre[:, None] * om * jnp.exp(-dS_j))
        c_by_order.append(pre * (term3 - jnp.sum(om * dB_j, 1)))
    pick = jnp.asarray(orders)
    w, c = w_by_order[0], c_by_order[0]
    for p in range(2, P + 1):
        w = jnp.where((pick == p)[(slice(None),) + (None,) * (feat + 1)], w_by_order[p - 1], w)
        c = jnp.where((pick == p)[(slice(None),) + (None,) * feat], c_by_order[p - 1], c)
    return a, w, c


@dataclasses.dataclass(frozen=True, eq=False, init=False)
class DPMSolverV3(Solver):
    """DPM-Solver-v3 multistep predictor, with the optional corrector (module docstring).

    Args:
      stats: :class:`EMS` (data: pytree leaves; one compilation for all values).
      solver_order: 1, 2 or 3 (``order=`` is accepted too); warm-up ``1, 2, ..``.
      lower_order_final: last steps of orders ``.., 2, 1``.
      predictor_pseudo: the predictor's derivatives by divided differences ("pseudo-order").
      corrector: the multistep corrector (same NFE).

    ``order``: global order, bounded by the warm-up and final steps as DPM-Solver++'s
    (``order=3`` gives 2 in the limit). Grids must end above ``t = 0``. NFE = steps.
    """

    stats: EMS
    solver_order: int = 2
    lower_order_final: bool = True
    predictor_pseudo: bool = False
    corrector: bool = False

    def __init__(self, stats: EMS, solver_order: int = 2, lower_order_final: bool = True,
                 predictor_pseudo: bool = False, corrector: bool = False, *,
                 order: int | None = None):
        object.__setattr__(self, "stats", stats)
        object.__setattr__(self, "solver_order", int(order) if order is not None else solver_order)
        object.__setattr__(self, "lower_order_final", bool(lower_order_final))
        object.__setattr__(self, "predictor_pseudo", bool(predictor_pseudo))
        object.__setattr__(self, "corrector", bool(corrector))
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
        ig = _Integrals(self.stats, grid.dtype)
        lam = half_log_snr(schedule, grid)
        alpha = schedule.alpha(grid)
        n, K = grid.shape[0] - 1, self.solver_order
        idx = np.arange(n)
        orders = multistep_orders(n, K, self.lower_order_final)
        # predictor at step i: points lambda_i, lambda_{i-1}, .. (clamped where unused)
        pts = jnp.stack([lam[np.maximum(idx - j, 0)] for j in range(K)], 1)
        a, w, c = _update_weights(ig, alpha[:-1], alpha[1:], pts, lam[1:], orders,
                                  self.predictor_pseudo)
        # corrector at step i (of x_i from x_{i-1}): points lambda_{i-1}, lambda_i,
        # lambda_{i-2}, .. = history slots 1, 0, 2, .., as many as step i - 1's predictor used
        prev = np.maximum(idx - 1, 0)
        c_orders = np.where(idx >= 1, orders[prev], 1) if self.corrector else np.ones(n, int)
        c_pts = jnp.stack([lam[prev], lam[idx]] + [lam[np.maximum(idx - j, 0)]
                                                   for j in range(2, K)], 1)[:, :max(K, 2)]
        ac, wc, cc = _update_weights(ig, alpha[prev], alpha[idx], c_pts, lam[idx], c_orders,
                                     False)
        # to history slots: point 0 is slot 1, point 1 is slot 0
        wc = jnp.concatenate([wc[:, 1:2], wc[:, :1], wc[:, 2:]], 1)[:, :K]
        correct = jnp.asarray(c_orders > 1)
        return V3Coefs(grid[:-1], grid[1:], a, w, c, _interp(ig.knots, ig.l_tab, lam[:-1]),
                       correct, ac, wc, cc)

    def init(self, x, model_state):
        return V3State(x, x, jnp.zeros((self.history,) + x.shape, x.dtype), model_state)

    def step(self, model, state, coefs, key):
        x, x_prev, hist, ms = state
        dt = x.dtype
        _, eps, ms = model(x, coefs.t, ms)
        sched = model.schedule
        f = (sched.sigma(coefs.t) * eps - coefs.l.astype(dt) * x) / sched.alpha(coefs.t)
        hist = push(hist, f)
        if self.corrector:
            fixed = coefs.ac.astype(dt) * x_prev + jnp.sum(coefs.wc.astype(dt)[:, None] * hist,
                                                           0) + coefs.cc.astype(dt)
            x = jnp.where(coefs.correct, fixed, x)
        x_next = coefs.a.astype(dt) * x + jnp.sum(coefs.w.astype(dt)[:, None] * hist, 0) \
            + coefs.c.astype(dt)
        return V3State(x_next, x, hist, ms)


jax.tree_util.register_dataclass(DPMSolverV3, data_fields=["stats"],
                                 meta_fields=["solver_order", "lower_order_final",
                                              "predictor_pseudo", "corrector"])


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
