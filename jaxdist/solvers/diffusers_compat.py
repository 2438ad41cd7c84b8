"""The jaxdist equivalent of a diffusers scheduler config: ``from_diffusers_scheduler``.

``from_diffusers_scheduler(config, n_steps) -> (solver, schedule, grid)`` reads a scheduler
config (``scheduler.config`` or ``scheduler_config.json`` as a dict, with ``_class_name``) and
returns the jaxdist solver, the schedule (``VPDiscrete`` of the config's betas, or
``RectifiedFlow`` for flow matching) and the grid that visits the same noise levels as
``scheduler.set_timesteps(n_steps)``. Wrap the network with the config's ``prediction_type``:
``jd.Denoiser(fn, schedule, prediction=prediction_from_diffusers(config))``.

Options jaxdist cannot reproduce raise a ``ValueError`` naming the option and the fix; options
that do not change the result (e.g. ``steps_offset`` with ``linspace`` spacing) are accepted.
See ``docs/diffusers.md`` for the table of names and the known differences (e.g. diffusers'
3M update is second order; jaxdist's ``DPMSolverPP(order=3)`` is third order).
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import jax
import numpy as np

from .. import grids
from ..schedules import RectifiedFlow, Schedule, VPDiscrete
from .base import Solver

Array = jax.Array

__all__ = ["from_diffusers_scheduler", "prediction_from_diffusers", "DiffusersEquivalent",
           "SUPPORTED_SCHEDULERS"]

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


_MODULES = {"UniPC": "unipc", "DEIS": "deis", "SDEDPMSolverPP": "sde_dpm_solver"}


def _need(name: str, what: str):
    import importlib

    # looked up lazily: these solvers live in other modules of the package
    solver = getattr(importlib.import_module("jaxdist.solvers"), name, None)
    if solver is None and name in _MODULES:
        try:
            solver = getattr(importlib.import_module(f"jaxdist.solvers.{_MODULES[name]}"), name)
        except (ImportError, AttributeError):
            solver = None
    if solver is None:
        raise ValueError(f"{what} needs jaxdist.solvers.{name}, which this installation does not "
                         "provide.")
    return solver


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


def from_diffusers_scheduler(config: Mapping[str, Any], n_steps: int) -> DiffusersEquivalent:
    """``(solver, schedule, grid)`` equivalent to the diffusers scheduler ``config`` run for
    ``n_steps`` inference steps.

    Supported ``_class_name``: ``DPMSolverMultistepScheduler`` (``algorithm_type``
    ``dpmsolver++`` / ``dpmsolver`` / ``sde-dpmsolver++``, ``solver_order``, ``solver_type``,
    ``lower_order_final``, ``use_karras_sigmas``, ``final_sigmas_type``),
    ``DPMSolverSinglestepScheduler``, ``UniPCMultistepScheduler``, ``DEISMultistepScheduler``,
    ``DDIMScheduler``, ``EulerDiscreteScheduler``, ``HeunDiscreteScheduler`` and
    ``FlowMatchEulerDiscreteScheduler`` (``shift``).

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
        for key in ("use_dynamic_shifting", "invert_sigmas", "stochastic_sampling",
                    "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"):
            _reject(config, key, (False, None), "build the grid with jd.grids on "
                    "jd.schedules.RectifiedFlow() instead.")
        _reject(config, "shift_terminal", (None,), "shift_terminal is not reproduced.")
        from .runge_kutta import EULER, RungeKutta

        schedule = RectifiedFlow()
        return DiffusersEquivalent(RungeKutta(EULER, variable="t"), schedule,
                                   jax.numpy.asarray(_flow_grid(config, n_steps)))

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
    order = int(config.get("solver_order", 2))
    stype = config.get("solver_type", "midpoint")
    grid = _vp_grid(config, schedule, n_steps)

    if cls == "DPMSolverMultistepScheduler":
        algo = config.get("algorithm_type", "dpmsolver++")
        lof = _multistep_lof(config, n_steps)
        if algo == "dpmsolver++":
            from .dpm_solver import DPMSolverPP

            solver = DPMSolverPP(order=order, solver_type=stype, lower_order_final=lof)
        elif algo == "dpmsolver":
            from .dpm_solver import DPMSolver

            solver = DPMSolver(order=order, method="multistep", solver_type=stype,
                               lower_order_final=lof)
        elif algo == "sde-dpmsolver++":
            solver = _need("SDEDPMSolverPP", "algorithm_type='sde-dpmsolver++'")(
                order=order, solver_type=stype, lower_order_final=lof)
        else:
            raise ValueError(f"config['algorithm_type']={algo!r} is not supported; use "
                             "'dpmsolver++', 'dpmsolver' or 'sde-dpmsolver++'.")
    elif cls == "DPMSolverSinglestepScheduler":
        # diffusers counts model evaluations as steps; jaxdist steps take `order` evaluations
        # each, at log-SNR midpoints: same NFE, stage times not identical.
        from .dpm_solver import DPMSolver, DPMSolverPP

        algo = config.get("algorithm_type", "dpmsolver++")
        if algo not in ("dpmsolver++", "dpmsolver"):
            raise ValueError(f"config['algorithm_type']={algo!r}: use 'dpmsolver++' or 'dpmsolver'.")
        family = DPMSolverPP if algo == "dpmsolver++" else DPMSolver
        solver = family(order=order, method="singlestep", solver_type=stype,
                        lower_order_final=bool(config.get("lower_order_final", True)))
        grid = _vp_grid(config, schedule, max(1, n_steps // order))
    elif cls == "UniPCMultistepScheduler":
        if config.get("disable_corrector"):
            raise ValueError("config['disable_corrector'] lists steps without corrector; jaxdist "
                             "applies UniC on all steps or none (UniPC(corrector=False)).")
        _reject(config, "solver_p", (None,), "UniPC with another predictor is not mapped.")
        variant = config.get("solver_type", "bh2")
        solver = _need("UniPC", "UniPCMultistepScheduler")(
            order=order, variant=variant,
            prediction="x0" if config.get("predict_x0", True) else "eps",
            corrector=True, lower_order_final=bool(config.get("lower_order_final", True)))
    elif cls == "DEISMultistepScheduler":
        _reject(config, "algorithm_type", ("deis",), "only algorithm_type='deis' exists.")
        _reject(config, "solver_type", ("logrho",), "only solver_type='logrho' is mapped.")
        solver = _need("DEIS", "DEISMultistepScheduler")(order=int(config.get("solver_order", 3)))
    elif cls == "DDIMScheduler":
        from .ddim import DDIM

        solver = DDIM()
    elif cls == "EulerDiscreteScheduler":
        from .edm import EulerEDM

        solver = EulerEDM()
    else:  # HeunDiscreteScheduler
        from .edm import HeunEDM

        solver = HeunEDM()
    return DiffusersEquivalent(solver, schedule, grid)


SUPPORTED_SCHEDULERS = (
    "DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler", "UniPCMultistepScheduler",
    "DEISMultistepScheduler", "DDIMScheduler", "EulerDiscreteScheduler",
    "HeunDiscreteScheduler", "FlowMatchEulerDiscreteScheduler",
)
