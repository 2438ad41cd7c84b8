"""k-diffusion's / ComfyUI's ancestral samplers, DPM++ SDE and LCM, on every schedule.

All are written in the EDM variables of the schedule: noise level ``s = sigma / alpha`` and
``x~ = x / alpha`` (for k-diffusion's VE schedule ``alpha = 1``, ``s = sigma``), which is how
ComfyUI runs k-diffusion's samplers on VP models.

**Ancestral step** ``t -> t_next`` (:class:`Ancestral`): a deterministic step to a lower level
``s_down`` followed by fresh noise back up to ``s_next``:

    x~_next = x~_down + s_noise * s_up * z,     s_down^2 + s_up^2 = s_next^2,

* ``split="kdiffusion"`` (``get_ancestral_step``): ``s_up = min(s_next, eta sqrt(s_next^2
  (s^2 - s_next^2) / s^2))``; ``eta = 1`` gives ``s_down = s_next^2 / s`` (DDPM's posterior).
* ``split="tcd"`` (diffusers' ``TCDScheduler``, ``gamma = eta``): ``t_down`` at the model's
  timestep ``floor((1 - eta) k_next)`` (``k_next`` the model time of ``t_next``: integer
  timesteps of ``VPDiscrete``), then forward noise to ``t_next``, ``s_up^2 = s_next^2 -
  s_down^2``.
* ``split="rf"`` (ComfyUI's ``*_RF`` samplers, rectified flow ``x = (1 - t) x0 + t eps``):
  ``t_down = t_next (1 + (t_next / t - 1) eta)``, ``s_down = t_down / (1 - t_down)``, then
  ``x_next = (alpha_next / alpha_down) x_down + s_noise sqrt(t_next^2 - (t_down alpha_next /
  alpha_down)^2) z``; ``dpm2`` takes its steps in ``(t, x)`` itself there
  (``sample_dpm_2_ancestral_RF``): the same formulas with ``t`` in place of ``s`` and ``x`` in
  place of ``x~``, stage ``t_m = sqrt(t t_down)``.

The deterministic part (``D_j`` data predictions, exponential-integrator form, finite from pure
noise for ``euler`` and ``dpm++2s``):

* ``euler``: ``x~_down = (s_down / s) x~ + (1 - s_down / s) D_0`` (``sample_euler_ancestral``;
  with ``split="kdiffusion"`` it equals ``DDIM(eta)`` for ``eta <= 1``), computed as
  ``x~_down = x0_hat + s_down eps_hat``, which with ``jd.guidance.CFGPlusPlus`` is ComfyUI's
  ``euler_ancestral_cfg_pp`` (equal for a consistent pair);
* ``dpm2``: stage ``s_m = sqrt(s s_down)``, ``u~ = x~ + (s_m - s) d_0``,
  ``x~_down = x~ + (s_down - s) d_1`` with ``d = (x~ - D) / s`` (``sample_dpm_2_ancestral``);
* ``dpm++2s``: stage at the log-SNR midpoint of ``s`` and ``s_down``, ``u~`` the Euler step to
  it, ``x~_down = (s_down / s) x~ + (1 - s_down / s) D_1`` (``sample_dpmpp_2s_ancestral``).

``cfg_pp=True`` (ComfyUI's ``dpmpp_2s_ancestral_cfg_pp`` and its ``_RF`` form), for the pair
``(D_g, eps_u)`` of ``jd.guidance.CFGPlusPlus``: every stage uses the unconditional
``D_u = x~ - s eps_u``, and the step adds the guidance ``D_g - D_u`` of its first evaluation,
``x~_next = x~_down[D_u] + s_noise s_up z + (D_g - D_u)``; for ``euler`` this is again ComfyUI's
``euler_ancestral_cfg_pp``. With a consistent pair it is the base sampler.

As in k-diffusion the last step is an Euler step (one evaluation; on a grid ending at ``t = 0``
it returns ``alpha_0 D_0``): it is static (from ``n_steps``), so on a grid ending at ``t > 0``
the last step is also Euler, where k-diffusion would take a two-stage step.

**DPM++ SDE** (:class:`DPMSolverPPSDE`, ``sample_dpmpp_sde``, SDE-DPM-Solver++(2S), ``r = 1/2``):
from ``s`` an ancestral Euler step (``split="kdiffusion"``) to the log-SNR midpoint ``s_1`` with
noise ``z_1`` gives the stage ``u``; then an ancestral Euler step from ``x`` to ``s_next`` with
``D_1 = D(u, s_1)`` and noise ``z_2``, where ``z_1``, ``z_2`` are the normalised increments of one
Brownian motion over ``[t_1, t]`` and ``[t_next, t]`` (a :class:`~jaxdist.noise.BrownianPath`, or a
Brownian bridge from two fresh normals when ``noise`` is None).

**LCM** (:class:`LCM`, ``sample_lcm``): ``x_next = alpha_next D(x, t) + s_noise sigma_next z``,
exact in law for an exact consistency function ``D``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..noise import standard_normal
from ..schedules import RectifiedFlow, expand_to
from .base import ExplicitStages, Solver, SolverState, solver_dataclass
from .primitives import (cfgpp_renoise, check_alpha_start, clipped_log_snr,
                         first_order_coefficients, safe_sqrt)

Array = jax.Array

__all__ = ["Ancestral", "AncestralCoefs", "DPMSolverPPSDE", "DPMPPSDECoefs", "LCM", "LCMCoefs",
           "ancestral_split"]

_METHODS = ("euler", "dpm2", "dpm++2s")
_SPLITS = ("kdiffusion", "rf", "tcd")



def _edm_sigma(schedule, t: Array) -> Array:
    """``s = sigma / alpha`` (``inf`` where ``alpha = 0``)."""
    return schedule.sigma(t) / schedule.alpha(t)


def _t_of_edm_sigma(schedule, s: Array, fallback: Array) -> Array:
    """The time whose ``sigma / alpha`` is ``s > 0``; ``fallback`` where ``s = 0``."""
    safe = jnp.where(s > 0, s, 1.0)
    return jnp.where(s > 0, schedule.t_from_log_snr(-2.0 * jnp.log(safe)), fallback)


def ancestral_split(schedule, t: Array, t_next: Array, eta: float,
                    split: str = "kdiffusion") -> tuple[Array, Array]:
    """``(t_down, s_up)``: the time of the deterministic target ``s_down`` and the EDM noise
    level added back (see the module docstring); ``eta = 0`` gives ``(t_next, 0)``."""
    s, s_next = _edm_sigma(schedule, t), _edm_sigma(schedule, t_next)
    if eta == 0:
        return t_next, jnp.zeros_like(s_next)
    if split == "rf":
        t_down = t_next * (1.0 + (t_next / t - 1.0) * eta)
        s_down = t_down / (1.0 - t_down)
        s_up = safe_sqrt(s_next**2 - s_down**2)
        return jnp.where(t_next > 0, t_down, t_next), jnp.where(t_next > 0, s_up, 0.0)
    if split == "tcd":  # TCD's gamma = eta: down to timestep floor((1 - eta) k_next)
        k_down = jnp.floor((1.0 - eta) * schedule.model_time(t_next) + 1e-6)
        t_down = jnp.minimum(schedule.t_from_model_time(k_down), t_next)
        s_up = safe_sqrt(s_next**2 - _edm_sigma(schedule, t_down) ** 2)
        return t_down, s_up
    ratio = jnp.where(jnp.isinf(s), 0.0, s_next**2 / jnp.where(jnp.isinf(s), 1.0, s) ** 2)
    s_up = jnp.minimum(s_next, eta * s_next * safe_sqrt(1.0 - ratio))
    s_down = safe_sqrt(s_next**2 - s_up**2)
    return _t_of_edm_sigma(schedule, s_down, jnp.zeros_like(t_next)), s_up  # s_down = 0: t = 0


def _check_common(name: str, eta: float, s_noise: float, split: str) -> None:
    if not eta >= 0:
        raise ValueError(f"{name}: eta={eta} must be >= 0.")
    if not s_noise >= 0:
        raise ValueError(f"{name}: s_noise={s_noise} must be >= 0.")
    if split not in _SPLITS:
        raise ValueError(f"{name}: split={split!r}; use one of {_SPLITS}.")


def _check_rf(name: str, split: str, schedule) -> None:
    if split == "rf" and not isinstance(schedule, RectifiedFlow):
        raise ValueError(f"{name}: split='rf' is ComfyUI's rectified-flow form; the schedule is "
                         f"{type(schedule).__name__}, use split='kdiffusion'.")


class AncestralCoefs(NamedTuple):
    """:class:`~jaxdist.solvers.base.StageCoefs` (the update row already scaled by
    ``alpha_next / alpha_down``) and ``noise_scale = s_noise alpha_next s_up``."""

    t: Array
    t_next: Array
    s: Array
    c: Array
    w: Array
    v: Array
    stages: Any
    noise_scale: Array
    x0_scale: Array
    eps_scale: Array


@solver_dataclass
class Ancestral(ExplicitStages):
    """k-diffusion's ancestral samplers (see the module docstring for the update equations).

    Attributes:
      method: ``"euler"`` (``euler_ancestral``), ``"dpm2"`` (``dpm_2_ancestral``) or
        ``"dpm++2s"`` (``dpmpp_2s_ancestral``).
      eta: noise amount (0: the deterministic sampler; 1: k-diffusion's default).
      s_noise: scale of the added noise (k-diffusion's ``s_noise``; 1 keeps the marginals).
      split: ``"kdiffusion"``, ``"rf"`` (ComfyUI's rectified-flow form; RectifiedFlow only) or
        ``"tcd"`` (diffusers' TCD, ``eta`` = its ``gamma``; ``method="euler"``).
      noise: optional noise source (``jd.noise``).
      cfg_pp: ComfyUI's CFG++ form (module docstring; use with ``jd.guidance.CFGPlusPlus``).

    Evaluations: 1 per step (``euler``), 2 per step and 1 on the last (the others). Order: 1 for
    ``euler``, 2 for the others, deterministic (``eta = 0``) or, with ``eta > 0``, weak (exact
    moments on Gaussian data, tests/solvers/test_ancestral.py; ``None`` when ``s_noise != 1``,
    which changes the marginals). The strong order is not claimed (``None``).
    """

    method: str = "euler"
    eta: float = 1.0
    s_noise: float = 1.0
    split: str = "kdiffusion"
    noise: Any = None
    cfg_pp: bool = False
    space = "x0"

    def __post_init__(self):
        name = type(self).__name__
        if self.method not in _METHODS:
            raise ValueError(f"{name}: method={self.method!r}; use one of {_METHODS}.")
        _check_common(name, self.eta, self.s_noise, self.split)
        if self.split == "tcd" and (self.method != "euler" or not self.eta <= 1):
            raise ValueError(f"{name}: split='tcd' takes method='euler' and eta (gamma) <= 1.")

    @property
    def order(self) -> int:
        return 1 if self.method == "euler" else 2

    @property
    def stochastic(self) -> bool:
        return self.eta > 0 and self.s_noise > 0

    @property
    def weak_order(self) -> float | None:
        return float(self.order) if self.stochastic and self.s_noise == 1.0 else None

    @property
    def n_stages(self) -> int:
        return 1 if self.method == "euler" else 2

    def stages_per_step(self, n_steps):
        stages = np.full(n_steps, self.n_stages, np.int32)
        if n_steps:
            stages[-1] = 1
        return stages

    def validate(self, schedule, grid):
        _check_rf(type(self).__name__, self.split, schedule)
        if self.method == "dpm2" and self.split != "rf":
            check_alpha_start(type(self).__name__ + "(method='dpm2')", schedule, grid)

    def stage_table(self, schedule, grid):
        raise NotImplementedError  # coefficients() builds the table with the noise scale

    def coefficients(self, schedule, grid):
        t, t_next = grid[:-1], grid[1:]
        n = t.shape[0]
        t_down, s_up = ancestral_split(schedule, t, t_next, self.eta, self.split)
        a_next, a_down = schedule.alpha(t_next), schedule.alpha(t_down)
        up = a_next / a_down  # alpha_next / alpha_down: back to x at t_next
        ratio_d, c1_d = first_order_coefficients("x0", schedule, t, t_down)  # Euler to s_down
        S = self.n_stages
        if self.method == "euler":
            c = (up * ratio_d)[:, None]
            w = (up * c1_d)[:, None, None]
            times = t[:, None]
        else:
            # dpm2 steps in (s, x~); on the RF split in (t, x) itself (sigma = t, no alpha factor)
            rf = self.split == "rf"
            level = schedule.sigma if rf else (lambda v: _edm_sigma(schedule, v))
            s, s_d = level(t), level(t_down)
            lam, lam_d = clipped_log_snr(schedule, t), clipped_log_snr(schedule, t_down)
            if self.method == "dpm2":
                s_m = safe_sqrt(s * s_d)
                t_m = s_m if rf else _t_of_edm_sigma(schedule, s_m, t_down)
            else:  # (clipped: a step from pure noise keeps a finite stage)
                t_m = schedule.t_from_log_snr(0.5 * (lam + lam_d))
            ratio_m, c1_m = first_order_coefficients("x0", schedule, t, t_m)
            if self.method == "dpm2":
                # (s_m = 0 only on a last step to t = 0, where these weights are unused)
                s_m = jnp.where(s_d > 0, level(t_m), 1.0)
                # x~_down = (s_d/s) x~ + (s_d - s)(s - s_m)/(s s_m) D_0 - (s_d - s)/s_m D_1
                scale = 1.0 if rf else a_down
                w0 = scale * (s_d - s) * (s - s_m) / (s * s_m)
                w1 = -scale * (s_d - s) / s_m
            else:
                w0, w1 = jnp.zeros_like(c1_d), c1_d
            last = jnp.asarray(self.stages_per_step(n) == 1)
            c = jnp.stack([ratio_m, up * ratio_d], 1)
            w = jnp.zeros((n, S, S), c.dtype).at[:, 0, 0].set(c1_m)
            w = w.at[:, 1, 0].set(up * jnp.where(last, c1_d, w0))
            w = w.at[:, 1, 1].set(up * jnp.where(last, 0.0, w1))
            times = jnp.stack([t, t_m], 1)
        v = jnp.zeros((n, S, 0), c.dtype)
        noise_scale = self.s_noise * a_next * s_up
        # euler in DDIM form: alpha_next (x0_hat + s_down eps_hat)
        eps_scale = a_next * _edm_sigma(schedule, t_down)
        return AncestralCoefs(t, t_next, times, c, w, v, self.stages_per_step(n), noise_scale,
                              a_next, jnp.where(t_down == 0, 0.0, eps_scale))

    def step(self, model, state, coefs, key):
        e = lambda v: expand_to(v, state.x).astype(state.x.dtype)  # noqa: E731
        if self.cfg_pp:
            model = _Unconditional(model)
        if self.method == "euler":
            x, ms = state
            x0, eps, ms = model(x, coefs.t, ms)
            x = e(coefs.x0_scale) * x0 + e(coefs.eps_scale) * eps
        else:
            x, ms = super().step(model, state, coefs, key)
        if self.stochastic:
            z = standard_normal(self.noise, key, x, coefs.t, coefs.t_next)
            x = x + e(coefs.noise_scale) * z
        if self.cfg_pp:  # + alpha_next (D_g - D_u) of the step's first evaluation
            x = x + e(coefs.x0_scale) * model.guidance
        return SolverState(x, ms)


class _Unconditional:
    """A solver's model with CFG++'s pair ``(x0_g, eps_u)`` turned into ``(x0_u, eps_u)``;
    ``guidance`` keeps ``x0_g - x0_u`` of the first evaluation."""

    def __init__(self, model):
        self.model, self.schedule, self.guidance = model, model.schedule, None

    def __call__(self, x, t, ms):
        x0, eps, ms = self.model(x, t, ms)
        x0_u = cfgpp_renoise(x, x0, eps, self.schedule.alpha(t), self.schedule.sigma(t))[1]
        if self.guidance is None:
            self.guidance = x0 - x0_u
        return x0_u, eps, ms


class DPMPPSDECoefs(NamedTuple):
    """Per step: stage time ``t_1``; stage ``u = c_1 x + w_1 D_0 + n_1 z_1``; update
    ``x_next = c_2 x + w_2 D_1 + n_2 z_2`` (``w_0``: weight of ``D_0`` on the Euler last
    step); ``stages`` static."""

    t: Array
    t_next: Array
    t_1: Array
    c_1: Array
    w_1: Array
    n_1: Array
    c_2: Array
    w_0: Array
    w_2: Array
    n_2: Array
    stages: Any


@solver_dataclass
class DPMSolverPPSDE(Solver):
    """k-diffusion's ``sample_dpmpp_sde`` (SDE-DPM-Solver++(2S), ``r = 1/2``; see the module
    docstring), on every schedule in the EDM variables as ComfyUI.

    Attributes:
      eta: noise amount (1: k-diffusion's default; 0: deterministic DPM-Solver++(2S)).
      s_noise: noise scale.
      noise: optional noise source; a :class:`~jaxdist.noise.BrownianPath` makes both stages'
        noise increments of one Brownian motion (strong convergence); ``None``: fresh normals,
        the second built as the Brownian bridge of the first.

    Two evaluations per step, one on the (Euler) last step. Order 2 (deterministic with
    ``eta = 0``; with ``eta > 0`` the weak order, exact moments on Gaussian data); strong order
    0.5 claimed on a Brownian path (measured slope 0.73 from 8 to 32 steps against 128,
    tests/solvers/test_ancestral.py).
    """

    eta: float = 1.0
    s_noise: float = 1.0
    noise: Any = None

    def __post_init__(self):
        _check_common(type(self).__name__, self.eta, self.s_noise, "kdiffusion")

    @property
    def order(self) -> int:
        return 2

    @property
    def stochastic(self) -> bool:
        return self.eta > 0 and self.s_noise > 0

    @property
    def strong_order(self) -> float | None:
        return 0.5 if self.stochastic and self.s_noise == 1.0 else None

    @property
    def weak_order(self) -> float | None:
        return 2.0 if self.stochastic and self.s_noise == 1.0 else None

    def nfe(self, n_steps):
        return max(2 * int(n_steps) - 1, 0)

    def _stages(self, n: int) -> np.ndarray:
        stages = np.full(n, 2, np.int32)
        if n:
            stages[-1] = 1
        return stages

    def coefficients(self, schedule, grid):
        t, t_next = grid[:-1], grid[1:]
        lam = clipped_log_snr(schedule, grid)
        t_1 = schedule.t_from_log_snr(0.5 * (lam[:-1] + lam[1:]))
        out = []
        for end in (t_1, t_next):
            t_down, s_up = ancestral_split(schedule, t, end, self.eta)
            up = schedule.alpha(end) / schedule.alpha(t_down)
            ratio, c1 = first_order_coefficients("x0", schedule, t, t_down)
            out.append((up * ratio, up * c1, self.s_noise * schedule.alpha(end) * s_up))
        (c_1, w_1, n_1), (c_2, w_2, n_2) = out
        last = jnp.asarray(self._stages(t.shape[0]) == 1)
        ratio0, c10 = first_order_coefficients("x0", schedule, t, t_next)
        c_2 = jnp.where(last, ratio0, c_2)
        w_0, w_2 = jnp.where(last, c10, 0.0), jnp.where(last, 0.0, w_2)
        n_2 = jnp.where(last, 0.0, n_2)
        return DPMPPSDECoefs(t, t_next, t_1, c_1, w_1, n_1, c_2, w_0, w_2, n_2,
                             self._stages(t.shape[0]))

    def init(self, x, model_state):
        return SolverState(x, model_state)

    def _noises(self, key, x, coefs):
        if self.noise is not None:
            return (self.noise.sample(key, x, coefs.t, coefs.t_1),
                    self.noise.sample(key, x, coefs.t, coefs.t_next))
        k1, k2 = jax.random.split(key)
        n1 = standard_normal(None, k1, x, coefs.t, coefs.t_1)
        n2 = standard_normal(None, k2, x, coefs.t, coefs.t_next)
        d1, d2 = jnp.abs(coefs.t - coefs.t_1), jnp.abs(coefs.t_1 - coefs.t_next)
        total = jnp.maximum(d1 + d2, jnp.finfo(x.dtype).tiny)
        return n1, ((jnp.sqrt(d1) * n1 + jnp.sqrt(d2) * n2) / jnp.sqrt(total)).astype(x.dtype)

    def step(self, model, state, coefs, key):
        x, ms = state
        dt = x.dtype
        e = lambda v: expand_to(v, x).astype(dt)  # noqa: E731
        x0, _, ms = model(x, coefs.t, ms)
        if int(coefs.stages) == 1:
            return SolverState(e(coefs.c_2) * x + e(coefs.w_0) * x0, ms)
        z1, z2 = self._noises(key, x, coefs) if self.stochastic else (0.0, 0.0)
        u = e(coefs.c_1) * x + e(coefs.w_1) * x0 + e(coefs.n_1) * z1
        x1, _, ms = model(u, coefs.t_1, ms)
        return SolverState(e(coefs.c_2) * x + e(coefs.w_2) * x1 + e(coefs.n_2) * z2, ms)


class LCMCoefs(NamedTuple):
    """``x_next = alpha_next x0_hat + noise_scale z``."""

    t: Array
    t_next: Array
    alpha_next: Array
    noise_scale: Array


@solver_dataclass
class LCM(Solver):
    """Consistency-model multistep sampling (``sample_lcm``, diffusers' ``LCMScheduler``):
    ``x_next = alpha_next x0_hat(x, t) + s_noise sigma_next z``. One evaluation per step; for an
    exact consistency function the output has the data law on every grid (it is not the
    discretisation of an equation: ``order`` is nominal, strong/weak order ``None``)."""

    s_noise: float = 1.0
    noise: Any = None

    def __post_init__(self):
        if not self.s_noise >= 0:
            raise ValueError(f"LCM: s_noise={self.s_noise} must be >= 0.")

    @property
    def order(self) -> int:
        return 1

    @property
    def stochastic(self) -> bool:
        return self.s_noise > 0

    def coefficients(self, schedule, grid):
        t, t_next = grid[:-1], grid[1:]
        return LCMCoefs(t, t_next, schedule.alpha(t_next), self.s_noise * schedule.sigma(t_next))

    def init(self, x, model_state):
        return SolverState(x, model_state)

    def step(self, model, state, coefs, key):
        x, ms = state
        x0, _, ms = model(x, coefs.t, ms)
        x_next = expand_to(coefs.alpha_next, x).astype(x.dtype) * x0
        if self.stochastic:
            z = standard_normal(self.noise, key, x, coefs.t, coefs.t_next)
            x_next = x_next + expand_to(coefs.noise_scale, x).astype(x.dtype) * z
        return SolverState(x_next, ms)
