"""SEEDS-2 and SEEDS-3 (Gonzalez et al. 2023): stochastic explicit exponential derivative-free
singlestep solvers in data prediction, as ComfyUI's ``seeds_2`` / ``seeds_3``, on any schedule.

In ``lambda = log(alpha / sigma)`` (half the log-SNR), step ``t -> t'``, ``h = lambda' - lambda``,
``h_eta = (1 + eta) h``, stages at ``lambda_j = lambda + r_j h`` (``r_0 = 0 < r_1 < .. < 1``), each
stage (and the update, ``r = 1``) is

    u_j = (sigma_j / sigma) e^{-eta r_j h} x + alpha_j sum_m a_jm D_m + sigma_j s_noise N_j,

with ``D_m = x0_hat(u_m, lambda_m)`` and the noise ``N_j`` the exact Ornstein-Uhlenbeck transport of
the previous stage's,
``N_j = e^{-eta (r_j - r_{j-1}) h} N_{j-1} + sqrt(1 - e^{-2 eta (r_j - r_{j-1}) h}) z_j``,
``z_j`` one standard normal per sub-interval ``(lambda_{j-1}, lambda_j)``. The weights (``phi_k`` as in
:func:`~jaxdist.solvers.primitives.phi_functions`, ``E_k(r) = r h_eta phi_k(-r h_eta)``):

* SEEDS-2 (``r_1 = r``): ``a_10 = E_1(r)``; update ``E_1(1) ((1 - 1/(2r)) D_0 + D_1 / (2r))``;
* SEEDS-3 (``r_1, r_2``): ``a_2 = (r_2 / r_1) E_2(r_2) [on D_1]``, ``E_1(r_2) - that [on D_0]``;
  update ``E_2(1) / r_2 [on D_2]``, ``E_1(1) - that [on D_0]``.

``eta = 0`` is deterministic and equals DPM-Solver++(2S) / DPM-Solver++(3S) with the same stage
ratios. With ``denoise_final`` (default) the last step takes one evaluation, the first-order step
``x' = (sigma' / sigma) e^{-eta h} x + alpha' E_1(1) D_0 + sigma' s_noise sqrt(1 - e^{-2 eta h}) z``,
which on a step to ``t = 0`` returns ``alpha_0 x0_hat`` (ComfyUI's denoising step); ComfyUI takes a
full step there when the grid ends at ``t > 0``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..noise import standard_normal
from .base import Solver, SolverState, solver_dataclass
from .primitives import concrete, half_log_snr, phi_functions, safe_sqrt

Array = jax.Array

__all__ = ["SEEDS", "StochasticStageCoefs"]



class StochasticStageCoefs(NamedTuple):
    """Per step (leading axis ``n``; ``S`` stages): stage times ``s [n, S + 1]`` (``s_S = t'``);
    rows ``r = 0..S-1`` build stage ``r + 1`` (row ``S - 1``: the update): ``c [n, S]``,
    ``w [n, S, S]`` on the stage outputs, ``g [n, S, S]`` on the sub-interval normals;
    ``stages [n]`` (NumPy, static): evaluations of each step."""

    t: Array
    t_next: Array
    s: Array
    c: Array
    w: Array
    g: Array
    stages: Any


@solver_dataclass
class SEEDS(Solver):
    """SEEDS with ``stage_count`` 2 or 3 (module docstring).

    Attributes:
      stage_count: 2 (``seeds_2``) or 3 (``seeds_3``).
      eta: 1 = the reverse SDE (ComfyUI's default), 0 = the probability-flow ODE.
      s_noise: scale of the injected noise.
      r: stage ratios (``(0.5,)`` for SEEDS-2; ``(1/3, 2/3)`` for SEEDS-3); ``None``: those.
      denoise_final: the last step is a one-evaluation first-order step (module docstring).
      noise: optional noise source (e.g. ``jd.noise.BrownianPath``).

    ``order`` (deterministic, ``eta = 0``): ``stage_count``, bounded by 2 with ``denoise_final`` (a
    first-order last step). Stochastic (``order`` = weak order): weak order 1 claimed, the lower
    bound of what exact moments on Gaussian data give at 16-64 log-SNR-uniform steps (SEEDS-2
    1.83; SEEDS-3 1.12 with full steps, 2.95 with ``denoise_final``: ComfyUI's stage noise does
    not keep SEEDS-3 above first order); strong order 1 (additive noise).
    """

    stage_count: int = 2
    eta: float = 1.0
    s_noise: float = 1.0
    r: tuple | None = None
    denoise_final: bool = True
    noise: Any = None

    def __post_init__(self):
        if self.stage_count not in (2, 3) or isinstance(self.stage_count, bool):
            raise ValueError(f"SEEDS: stage_count={self.stage_count!r} must be 2 or 3.")
        if not self.eta >= 0:
            raise ValueError(f"SEEDS: eta={self.eta} must be >= 0.")
        if not self.s_noise >= 0:
            raise ValueError(f"SEEDS: s_noise={self.s_noise} must be >= 0.")
        r = self.ratios
        if len(r) != self.stage_count - 1 or not all(a < b for a, b in zip((0.0,) + r, r + (1.0,))):
            raise ValueError(f"SEEDS: r={self.r!r} must be {self.stage_count - 1} increasing stage "
                             "ratios in (0, 1).")
        if self.r is not None:
            object.__setattr__(self, "r", tuple(float(v) for v in self.r))

    @property
    def ratios(self) -> tuple:
        if self.r is not None:
            return tuple(float(v) for v in self.r)
        return (0.5,) if self.stage_count == 2 else (1.0 / 3.0, 2.0 / 3.0)

    @property
    def order(self) -> int:
        if self.stochastic:
            return 1
        return min(self.stage_count, 2) if self.denoise_final else self.stage_count

    claimed_strong_order = 1.0
    claimed_weak_order = 1.0

    @property
    def stochastic(self) -> bool:
        return self.eta > 0 and self.s_noise > 0



    def stages_per_step(self, n_steps: int) -> np.ndarray:
        stages = np.full(n_steps, self.stage_count, np.int32)
        if self.denoise_final and n_steps:
            stages[-1] = 1
        return stages

    def nfe(self, n_steps):
        return int(np.sum(self.stages_per_step(int(n_steps))))

    def validate(self, schedule, grid):
        last = concrete(jnp.asarray(grid)[-1])
        if not self.denoise_final and last is not None and float(last) == 0.0:
            raise ValueError("SEEDS(denoise_final=False) cannot take a full step to t = 0 (the "
                             "stages would evaluate the model at infinite log-SNR); use "
                             "denoise_final=True or end the grid at t > 0.")

    def coefficients(self, schedule, grid):
        t, t_next = grid[:-1], grid[1:]
        n, S = t.shape[0], self.stage_count
        lam, lam_next = half_log_snr(schedule, t), half_log_snr(schedule, t_next)
        h = lam_next - lam
        he = (1.0 + self.eta) * h
        r = np.asarray((0.0,) + self.ratios + (1.0,))
        lam_j = lam[:, None] + r[None, 1:] * h[:, None]  # [n, S]: stages 1..S-1, then t'
        t_j = jnp.concatenate([schedule.t_from_log_snr(2.0 * lam_j[:, :-1]), t_next[:, None]], 1)
        s = jnp.concatenate([t[:, None], t_j], 1)  # [n, S + 1]
        alpha_j, sigma_j = schedule.alpha(t_j), schedule.sigma(t_j)
        sigma = schedule.sigma(t)

        def e(k, ratio):  # E_k(ratio) = ratio h_eta phi_k(-ratio h_eta), [n]
            z = ratio * he
            if k == 1:
                return -jnp.expm1(-z)
            return z * phi_functions(-z, 2)[1]

        w_rows = jnp.zeros((n, S, S), h.dtype)
        if S == 2:
            fac = 1.0 / (2.0 * r[1])
            w_rows = w_rows.at[:, 0, 0].set(e(1, r[1]))
            w_rows = w_rows.at[:, 1, 0].set(e(1, 1.0) * (1.0 - fac)).at[:, 1, 1].set(e(1, 1.0) * fac)
        else:
            a32 = r[2] / r[1] * e(2, r[2])
            b3 = e(2, 1.0) / r[2]
            w_rows = w_rows.at[:, 0, 0].set(e(1, r[1]))
            w_rows = w_rows.at[:, 1, 0].set(e(1, r[2]) - a32).at[:, 1, 1].set(a32)
            w_rows = w_rows.at[:, 2, 0].set(e(1, 1.0) - b3).at[:, 2, 2].set(b3)
        w_rows = alpha_j[:, :, None] * w_rows
        c = sigma_j / sigma[:, None] * jnp.exp(-self.eta * r[None, 1:] * h[:, None])
        # noise: N_j = sum_k g_jk z_k, transported e^{-eta dr h} from stage to stage
        dr = np.diff(r)  # [S]
        g = jnp.zeros((n, S, S), h.dtype)
        for j in range(S):
            for k in range(j + 1):
                decay = jnp.exp(-self.eta * (r[j + 1] - r[k + 1]) * h)
                g = g.at[:, j, k].set(decay * safe_sqrt(-jnp.expm1(-2.0 * self.eta * dr[k] * h)))
        g = (self.s_noise * sigma_j)[:, :, None] * g
        # the one-evaluation last step (first order; alpha_0 x0_hat exactly on a step to t = 0)
        if self.denoise_final:
            final = t_next[-1] == 0
            one_w = jnp.where(final, alpha_j[-1, -1], alpha_j[-1, -1] * e(1, 1.0)[-1])
            c = c.at[-1, -1].set(sigma_j[-1, -1] / sigma[-1] * jnp.exp(-self.eta * h[-1]))
            w_last = jnp.zeros((S,), h.dtype).at[0].set(one_w)
            w_rows = w_rows.at[-1, -1].set(w_last)
            g_last = jnp.zeros((S,), h.dtype).at[0].set(
                self.s_noise * sigma_j[-1, -1] * safe_sqrt(-jnp.expm1(-2.0 * self.eta * h[-1])))
            g = g.at[-1, -1].set(g_last)
            s = s.at[-1, 1].set(t_next[-1])
        return StochasticStageCoefs(t, t_next, s, c, w_rows, g, self.stages_per_step(n))

    def init(self, x, model_state):
        return SolverState(x, model_state)

    def step(self, model, state, coefs, key):
        x, ms = state
        dt = x.dtype
        c, w, g = coefs.c.astype(dt), coefs.w.astype(dt), coefs.g.astype(dt)
        n_eval = int(coefs.stages) if coefs.stages is not None else self.stage_count
        last = self.stage_count - 1
        keys = jax.random.split(key, n_eval) if (self.stochastic and key is not None) else [None] * n_eval
        zs = []
        outputs = []
        u = x
        for j in range(n_eval + 1):  # static unroll: evaluated stages, then the update row
            if j > 0:
                row = last if j == n_eval else j - 1
                if self.stochastic:
                    hi = coefs.s[j] if j < n_eval else coefs.t_next
                    zs.append(standard_normal(self.noise, keys[j - 1], x, coefs.s[j - 1], hi))
                u = c[row] * x
                for m, d in enumerate(outputs):
                    u = u + w[row, m] * d
                for k, z in enumerate(zs):
                    u = u + g[row, k] * z
            if j == n_eval:
                break
            x0, _, ms = model(u, coefs.s[j], ms)
            outputs.append(x0)
        return SolverState(u, ms)
