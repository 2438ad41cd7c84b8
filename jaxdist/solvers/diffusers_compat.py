"""The jaxdist equivalent of a diffusers scheduler config: ``from_diffusers_scheduler``.

``from_diffusers_scheduler(config, n_steps) -> (solver, schedule, grid)`` reads a scheduler
config (``scheduler.config`` or ``scheduler_config.json`` as a dict, with ``_class_name``) and
returns the jaxdist solver, the schedule (``VPDiscrete`` of the config's betas, or
``RectifiedFlow`` for flow matching) and the grid that visits the same noise levels as
``scheduler.set_timesteps(n_steps)``. Wrap the network with the config's ``prediction_type``:
``jd.Denoiser(fn, schedule, prediction=prediction_from_diffusers(config))``.

Options jaxdist cannot reproduce raise a ``ValueError`` naming the option and the fix; options
that do not change the result (e.g. ``steps_offset`` with ``linspace`` spacing) are accepted.
See ``docs/diffusers.md`` for the table of names and the known differences. Each scheduler
class has its own translator in :data:`TRANSLATORS` (config, n_steps -> solver and grid); the
shared keys (betas, prediction type, thresholding) are handled once.

For diffusers' numbers, the translators choose diffusers' variants: the 3M update weighted by
``phi_3`` (``third_order="reference"``), DEIS in ``log rho`` (``variable="logrho"``), lower-order
final steps only below 15 steps for DPM-Solver multistep.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import jax
import numpy as np

from .. import grids
from ..schedules import RectifiedFlow, Schedule, VPDiscrete
from .base import Solver
from .ddim import DDIM
from .deis import DEIS
from .dpm_solver import DPMSolver, DPMSolverPP
from .edm import EulerEDM, HeunEDM
from .runge_kutta import RungeKutta
from .sde_dpm_solver import SDEDPMSolverPP
from .tableaux import EULER
from .unipc import UniPC

Array = jax.Array

__all__ = ["from_diffusers_scheduler", "prediction_from_diffusers", "DiffusersEquivalent",
           "SUPPORTED_SCHEDULERS", "TRANSLATORS"]

_PREDICTIONS = {"epsilon": "eps", "v_prediction": "v", "sample": "x0",
                "flow_prediction": "velocity"}


class DiffusersEquivalent(NamedTuple):
    """What :func:`from_diffusers_scheduler` returns (unpacks as ``solver, schedule, grid``)."""

    solver: Solver
    schedule: Schedule
    grid: Array


def prediction_from_diffusers(config: Mapping[str, Any]) -> str:
    """The ``jd.Denoiser`` prediction for the config's ``prediction_type`` (``epsilon`` -> ``eps``,
    ``v_prediction`` -> ``v``, ``sample`` -> ``x0``, ``flow_prediction`` -> ``velocity``;
    FlowMatch schedulers predict ``velocity``)."""
    if str(config.get("_class_name", "")).startswith("FlowMatch"):
        return "velocity"
    kind = config.get("prediction_type", "epsilon")
    if kind not in _PREDICTIONS:
        raise ValueError(f"config['prediction_type']={kind!r} is not supported; use one of "
                         f"{sorted(_PREDICTIONS)}.")
    return _PREDICTIONS[kind]


def _reject(config: Mapping[str, Any], key: str, allowed: tuple, fix: str) -> None:
    """Raises if ``config[key]`` is present and not one of ``allowed``."""
    if key in config and config[key] not in allowed:
        raise ValueError(f"config[{key!r}]={config[key]!r} is not supported by "
                         f"from_diffusers_scheduler ({config.get('_class_name')}): {fix}")


def _vp_grid(config: Mapping[str, Any], schedule: VPDiscrete, n_steps: int):
    """The grid of a beta-schedule config: diffusers' timesteps, or Karras / exponential sigmas."""
    final_zero = config.get("final_sigmas_type", "zero") == "zero"
    for key in ("use_beta_sigmas", "use_flow_sigmas"):
        _reject(config, key, (False, None), "only Karras and exponential (Lu) sigmas map to "
                "jaxdist grids; use jd.grids.* directly.")
    if config.get("use_karras_sigmas"):
        # sigma_max / sigma_min of the training schedule (indices N-1 and 0), rho = 7
        return grids.karras(schedule, n_steps, final_zero=final_zero)
    if config.get("use_exponential_sigmas") or config.get("use_lu_lambdas"):
        return grids.logsnr_uniform(schedule, n_steps, final_zero=final_zero)
    return grids.from_diffusers(config, n_steps)


def _flow_grid(config: Mapping[str, Any], n_steps: int):
    """FlowMatchEulerDiscrete's sigmas (= rectified-flow times): ``linspace(1, s_min, n)``
    shifted by ``s -> shift s / (1 + (shift - 1) s)``, then 0. As in diffusers, ``s_min`` is the
    already shifted ``1 / N``, so the shift is applied to it twice."""
    shift = float(config.get("shift", 1.0))
    n_train = int(config.get("num_train_timesteps", 1000))

    def shifted(s):
        return shift * s / (1.0 + (shift - 1.0) * s)

    s = shifted(np.linspace(1.0, shifted(1.0 / n_train), n_steps, dtype=np.float64))
    return np.concatenate([s, [0.0]])


def _multistep_lof(config: Mapping[str, Any], n_steps: int) -> bool:
    # DPM-Solver(++) in diffusers lowers the final orders only below 15 steps.
    return bool(config.get("lower_order_final", True)) and n_steps < 15


def _order(config: Mapping[str, Any], default: int = 2) -> int:
    return int(config.get("solver_order", default))


# -- one translator per scheduler class: (config, n_steps, schedule) -> (solver, grid) --------

def _dpm_multistep(config, n_steps, schedule):
    algo = config.get("algorithm_type", "dpmsolver++")
    lof = _multistep_lof(config, n_steps)
    stype = config.get("solver_type", "midpoint")
    order = _order(config)
    third = "reference" if order == 3 else "taylor"  # diffusers' 3M weights (2M: the same)
    if algo == "dpmsolver++":
        solver = DPMSolverPP(order=order, solver_type=stype, lower_order_final=lof,
                             third_order=third)
    elif algo == "dpmsolver":
        solver = DPMSolver(order=order, method="multistep", solver_type=stype,
                           lower_order_final=lof, third_order=third)
    elif algo == "sde-dpmsolver++":
        solver = SDEDPMSolverPP(order=order, solver_type=stype, lower_order_final=lof)
    else:
        raise ValueError(f"config['algorithm_type']={algo!r} is not supported; use "
                         "'dpmsolver++', 'dpmsolver' or 'sde-dpmsolver++'.")
    return solver, _vp_grid(config, schedule, n_steps)


def _dpm_singlestep(config, n_steps, schedule):
    # diffusers counts model evaluations as steps; jaxdist steps take `order` evaluations
    # each, at log-SNR midpoints: same NFE, stage times not identical.
    algo = config.get("algorithm_type", "dpmsolver++")
    if algo not in ("dpmsolver++", "dpmsolver"):
        raise ValueError(f"config['algorithm_type']={algo!r}: use 'dpmsolver++' or 'dpmsolver'.")
    order = _order(config)
    family = DPMSolverPP if algo == "dpmsolver++" else DPMSolver
    solver = family(order=order, method="singlestep", solver_type=config.get("solver_type",
                                                                              "midpoint"),
                    lower_order_final=bool(config.get("lower_order_final", True)))
    return solver, _vp_grid(config, schedule, max(1, n_steps // order))


def _unipc(config, n_steps, schedule):
    _reject(config, "solver_p", (None,), "UniPC with another predictor is not mapped.")
    solver = UniPC(order=_order(config), variant=config.get("solver_type", "bh2"),
                   prediction="x0" if config.get("predict_x0", True) else "eps", corrector=True,
                   lower_order_final=bool(config.get("lower_order_final", True)),
                   disable_corrector=tuple(config.get("disable_corrector") or ()))
    return solver, _vp_grid(config, schedule, n_steps)


def _deis(config, n_steps, schedule):
    _reject(config, "algorithm_type", ("deis",), "only algorithm_type='deis' exists.")
    _reject(config, "solver_type", ("logrho",), "only solver_type='logrho' is mapped.")
    solver = DEIS(order=_order(config, 3), variable="logrho",
                  lower_order_final=_multistep_lof(config, n_steps))
    return solver, _vp_grid(config, schedule, n_steps)


def _fixed(solver_cls):
    def translate(config, n_steps, schedule):
        return solver_cls(), _vp_grid(config, schedule, n_steps)
    return translate


#: ``_class_name`` -> translator ``(config, n_steps, schedule) -> (solver, grid)``
TRANSLATORS: dict[str, Callable[..., tuple[Solver, Any]]] = {
    "DPMSolverMultistepScheduler": _dpm_multistep,
    "DPMSolverSinglestepScheduler": _dpm_singlestep,
    "UniPCMultistepScheduler": _unipc,
    "DEISMultistepScheduler": _deis,
    "DDIMScheduler": _fixed(DDIM),
    "EulerDiscreteScheduler": _fixed(EulerEDM),
    "HeunDiscreteScheduler": _fixed(HeunEDM),
}


def _flow_match(config: Mapping[str, Any], n_steps: int) -> DiffusersEquivalent:
    for key in ("use_dynamic_shifting", "invert_sigmas", "stochastic_sampling",
                "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"):
        _reject(config, key, (False, None), "build the grid with jd.grids on "
                "jd.schedules.RectifiedFlow() instead.")
    _reject(config, "shift_terminal", (None,), "shift_terminal is not reproduced.")
    return DiffusersEquivalent(RungeKutta(EULER, variable="t"), RectifiedFlow(),
                               jax.numpy.asarray(_flow_grid(config, n_steps)))


def from_diffusers_scheduler(config: Mapping[str, Any], n_steps: int) -> DiffusersEquivalent:
    """``(solver, schedule, grid)`` equivalent to the diffusers scheduler ``config`` run for
    ``n_steps`` inference steps.

    Supported ``_class_name``: the keys of :data:`TRANSLATORS` and
    ``FlowMatchEulerDiscreteScheduler`` (``shift``); see ``docs/diffusers.md`` for the options.

    Raises:
      ValueError: for an unknown class or an option jaxdist does not reproduce (the message
        names the option and what to do instead).
    """
    if not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
        raise ValueError(f"n_steps={n_steps!r} must be a positive integer.")
    cls = str(config.get("_class_name", ""))
    if cls not in SUPPORTED_SCHEDULERS:
        raise ValueError(f"config['_class_name']={cls!r} is not supported; known: "
                         f"{', '.join(SUPPORTED_SCHEDULERS)}.")
    for key in ("thresholding", "clip_sample"):
        if config.get(key):
            raise ValueError(
                f"config[{key!r}]=True: jaxdist clips in the denoiser, not the solver. Wrap the "
                "model (jd.ClipX0(den, max_value) or jd.DynamicThreshold(den, ratio, max_value)) "
                f"and pass the config with {key}=False.")
    if cls.startswith("FlowMatch"):
        return _flow_match(config, n_steps)
    schedule = VPDiscrete.from_diffusers_config(config)
    prediction_from_diffusers(config)  # validates prediction_type
    _reject(config, "use_flow_sigmas", (False, None), "flow-matching DPM/UniPC configs are not "
            "mapped; use jd.schedules.RectifiedFlow with jd.grids.")
    _reject(config, "timestep_type", ("discrete",), "only discrete timesteps are mapped.")
    _reject(config, "interpolation_type", ("linear",), "only linear sigma interpolation is mapped.")
    _reject(config, "variance_type", (None,), "learned variances are not used by ODE solvers.")
    _reject(config, "euler_at_final", (False,), "jaxdist's step to t = 0 is already first order; "
            "with final_sigmas_type='sigma_min' use a lower-order solver for the last step.")
    _reject(config, "lambda_min_clipped", (-float("inf"),),
            "clip the grid instead (jd.grids.* with t_start).")
    solver, grid = TRANSLATORS[cls](config, n_steps, schedule)
    return DiffusersEquivalent(solver, schedule, grid)


SUPPORTED_SCHEDULERS = tuple(TRANSLATORS) + ("FlowMatchEulerDiscreteScheduler",)
