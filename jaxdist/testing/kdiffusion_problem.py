"""k-diffusion's samplers side by side with jaxdist: the shared problem and the jaxdist runs.

An exact denoiser (a 2-D Gaussian mixture, :data:`MIXTURE`, on the EDM / k-diffusion VE
schedule ``x = x0 + sigma eps``) in float64, Karras sigmas (``get_sigmas_karras(n, 0.002, 80,
rho=7)`` and 0 = ``jd.grids.karras(EDM, n, final_zero=True)``), ``x_T = 80 z``, and for the
stochastic samplers one table of standard normals per step (:class:`NoiseTable`), given to
k-diffusion as its ``noise_sampler`` and to jaxdist as the solver's noise source, so the two
paths can be compared draw for draw. ``benchmarks/parity_kdiffusion.py`` writes k-diffusion's
results to ``tests/golden/parity_kdiffusion.json``; :func:`run` computes jaxdist's.

:data:`SAMPLERS` maps each k-diffusion ``sample_*`` (with its options) to the jaxdist solver;
:data:`NOT_EXPRESSIBLE` lists the others with the reason.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["MIXTURE", "SIGMA_MIN", "SIGMA_MAX", "SAMPLERS", "NOT_EXPRESSIBLE", "NoiseTable",
           "grid_for", "run"]

#: (weights, means [k, 2], diagonal variances [k, 2]) of the data distribution
MIXTURE = ([0.5, 0.3, 0.2], [[-1.0, 0.5], [1.5, -0.5], [0.0, 2.0]],
           [[0.09, 0.04], [0.16, 0.09], [0.04, 0.25]])
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0


@dataclasses.dataclass(frozen=True, eq=False)
class NoiseTable:
    """A noise source (``jd.noise``) that returns ``table[i]`` on the step from ``grid[i]``:
    the same draws k-diffusion's ``noise_sampler`` hands out, step by step."""

    grid: np.ndarray   # [n + 1] times
    table: np.ndarray  # [n, *x.shape] standard normals
    #: optional [n, *x.shape]: the draws of a step's inner stage (``t_next`` not on the grid),
    #: as DPM++ SDE's first noise call
    stage: np.ndarray | None = None

    def sample(self, key, x, t, t_next):
        del key
        grid = jnp.asarray(self.grid, x.dtype)
        i = jnp.argmin(jnp.abs(grid[:-1] - t))
        out = jnp.asarray(self.table, x.dtype)[i]
        if self.stage is None:
            return out
        on_grid = jnp.abs(grid[i + 1] - t_next) <= 1e-12 * jnp.abs(grid[i])
        return jnp.where(on_grid, out, jnp.asarray(self.stage, x.dtype)[i])


def _solvers():
    from ..solvers import (DDIM, LMS, Ancestral, DPMSolver, DPMSolverPP, DPMSolverPPSDE, EulerEDM,
                           HeunEDM, SDEDPMSolverPP)

    return {
        # name: (k-diffusion function, its options, jaxdist solver factory(noise), grid kind)
        "euler": ("sample_euler", {}, lambda noise: EulerEDM(), "karras"),
        "heun": ("sample_heun", {}, lambda noise: HeunEDM(), "karras"),
        "dpmpp_2m": ("sample_dpmpp_2m", {},
                     lambda noise: DPMSolverPP(order=2, lower_order_final=False), "karras"),
        "dpmpp_2m_sde_eta0": ("sample_dpmpp_2m_sde", {"eta": 0.0},
                              lambda noise: SDEDPMSolverPP(order=2, eta=0.0,
                                                           lower_order_final=False), "karras"),
        "dpmpp_2m_sde": ("sample_dpmpp_2m_sde", {"eta": 1.0},
                         lambda noise: SDEDPMSolverPP(order=2, eta=1.0, lower_order_final=False,
                                                      noise=noise), "karras"),
        "dpmpp_2m_sde_heun": ("sample_dpmpp_2m_sde", {"eta": 1.0, "solver_type": "heun"},
                              lambda noise: SDEDPMSolverPP(order=2, eta=1.0, solver_type="heun",
                                                           lower_order_final=False, noise=noise),
                              "karras"),
        "dpmpp_3m_sde_eta0": ("sample_dpmpp_3m_sde", {"eta": 0.0},
                              lambda noise: SDEDPMSolverPP(order=3, eta=0.0, solver_type="heun",
                                                           lower_order_final=False), "karras"),
        "dpmpp_3m_sde": ("sample_dpmpp_3m_sde", {"eta": 1.0},
                         lambda noise: SDEDPMSolverPP(order=3, eta=1.0, solver_type="heun",
                                                      lower_order_final=False, noise=noise),
                         "karras"),
        "euler_ancestral": ("sample_euler_ancestral", {"eta": 1.0},
                            lambda noise: DDIM(eta=1.0, noise=noise), "karras"),
        "euler_ancestral_eta0.5": ("sample_euler_ancestral", {"eta": 0.5},
                                   lambda noise: DDIM(eta=0.5, noise=noise), "karras"),
        "dpm_fast_nfe12": ("sample_dpm_fast", {"n": 12},
                           lambda noise: DPMSolver(order=3, method="singlestep",
                                                   lower_order_final=True), "dpm_fast"),
        "dpmpp_2s_ancestral_eta0": ("sample_dpmpp_2s_ancestral", {"eta": 0.0},
                                    lambda noise: DPMSolverPP(order=2, method="singlestep"),
                                    "karras"),
        # kdiff-names: dpm_2 (its last step is Euler), the ancestral samplers, dpmpp_sde, lms
        "dpm_2": ("sample_dpm_2", {},
                  lambda noise: DPMSolver(order=2, method="singlestep", lower_order_final=True),
                  "karras"),
        "dpm_2_ancestral": ("sample_dpm_2_ancestral", {"eta": 1.0},
                            lambda noise: Ancestral("dpm2", noise=noise), "karras"),
        "dpm_2_ancestral_eta0.5_snoise0.8": (
            "sample_dpm_2_ancestral", {"eta": 0.5, "s_noise": 0.8},
            lambda noise: Ancestral("dpm2", eta=0.5, s_noise=0.8, noise=noise), "karras"),
        "euler_ancestral_snoise0.8": ("sample_euler_ancestral", {"eta": 1.0, "s_noise": 0.8},
                                      lambda noise: Ancestral("euler", s_noise=0.8, noise=noise),
                                      "karras"),
        "dpmpp_2s_ancestral": ("sample_dpmpp_2s_ancestral", {"eta": 1.0},
                               lambda noise: Ancestral("dpm++2s", noise=noise), "karras"),
        "dpmpp_sde": ("sample_dpmpp_sde", {"eta": 1.0},
                      lambda noise: DPMSolverPPSDE(noise=noise), "karras"),
        "dpmpp_sde_eta0.5": ("sample_dpmpp_sde", {"eta": 0.5},
                             lambda noise: DPMSolverPPSDE(eta=0.5, noise=noise), "karras"),
        "dpmpp_sde_eta0": ("sample_dpmpp_sde", {"eta": 0.0},
                           lambda noise: DPMSolverPPSDE(eta=0.0), "karras"),
        # compared on a grid ending at sigma_min, where LMS equals IPNDM(variable_step=True)
        # (ComfyUI's lms); both LMS and k-diffusion 0.1.1 integrate the polynomial to sigma = 0
        "lms": ("sample_lms", {}, lambda noise: LMS(order=4), "karras_positive"),
    }


#: k-diffusion sampler name -> (function, options, jaxdist solver factory, grid)
SAMPLERS: dict[str, tuple[str, dict, Callable[[Any], Any], str]] = {}

#: k-diffusion samplers without a jaxdist equivalent, and why
NOT_EXPRESSIBLE = {
    "sample_dpm_adaptive": "jaxdist's AdaptiveDPMSolver has its own error controller and step "
                           "acceptance; the accepted steps differ",
}


def _samplers() -> dict:
    if not SAMPLERS:
        SAMPLERS.update(_solvers())
    return SAMPLERS


def grid_for(kind: str, n_steps: int) -> np.ndarray:
    """``"karras"``: k-diffusion's ``get_sigmas_karras(n, 0.002, 80, rho=7)`` and 0 (EDM times
    are sigmas); ``"dpm_fast"``: its ``dpm_solver_fast`` steps, uniform in ``-log sigma`` from 80
    to 0.002 (``floor(nfe / 3) + 1`` steps for ``nfe = n_steps``); ``"karras_positive"``: the
    Karras sigmas of ``n_steps`` steps ending at 0.002 (k-diffusion's
    ``get_sigmas_karras(n + 1, ..)[:-1]``)."""
    import jaxdist as jd

    if kind in ("karras", "karras_positive"):
        schedule = jd.schedules.EDM(sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)
        return np.asarray(jd.grids.karras(schedule, n_steps, rho=7.0,
                                          final_zero=kind == "karras"), np.float64)
    m = n_steps // 3 + 1
    return np.exp(-np.linspace(-np.log(SIGMA_MAX), -np.log(SIGMA_MIN), m + 1))


def run(name: str, x_T: np.ndarray, noise: np.ndarray | None, n_steps: int,
        stage_noise: np.ndarray | None = None) -> np.ndarray:
    """jaxdist's result for the k-diffusion sampler ``name`` (a key of :data:`SAMPLERS`) from
    ``x_T`` (``[batch, 2]``, already scaled by ``sigma_max``), with ``noise [steps, batch, 2]``
    for the stochastic ones (and ``stage_noise`` of the same shape for the draws of a step's
    inner stage: DPM++ SDE). Needs ``jax_enable_x64``."""
    import jaxdist as jd

    _, options, factory, kind = _samplers()[name]
    steps = options.get("n", n_steps)
    grid = grid_for(kind, steps)
    stage = None if stage_noise is None else np.asarray(stage_noise, np.float64)
    table = None if noise is None else NoiseTable(grid, np.asarray(noise, np.float64), stage)
    solver = factory(table)
    schedule = jd.schedules.EDM(sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)
    weights, means, variances = (jnp.asarray(a, jnp.float64) for a in MIXTURE)
    den = jd.testing.GaussianMixture(weights, means, variances).denoiser(schedule)
    key = jax.random.key(0) if solver.stochastic else None
    out = jd.sample(solver, den, jnp.asarray(x_T, jnp.float64), jnp.asarray(grid), key=key)
    return np.asarray(out.x, np.float64)
