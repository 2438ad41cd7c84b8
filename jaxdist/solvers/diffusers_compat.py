"""The jaxdist equivalent of a diffusers scheduler config: ``from_diffusers_scheduler``.

``from_diffusers_scheduler(config, n_steps) -> (solver, schedule, grid)`` reads a scheduler
config (``scheduler.config`` or ``scheduler_config.json`` as a dict, with ``_class_name``) and
returns the jaxdist solver, the schedule (``VPDiscrete`` of the config's betas, or
``RectifiedFlow`` for flow matching) and the grid that visits the same noise levels as
``scheduler.set_timesteps(n_steps)``. ``denoiser_from_diffusers(fn, config)`` wraps the network
as that scheduler reads its output (prediction type, learned variance, thresholding, the
timestep diffusers gives it).

Missing keys take diffusers 0.42.1's class defaults (:data:`DEFAULTS`); other schedulers' keys
are ignored as diffusers does; an unknown key is an error naming the closest known one. Options
jaxdist cannot reproduce raise a ``ValueError`` naming the option and the fix. Each scheduler
class has its own translator in :data:`TRANSLATORS` (config, n_steps -> solver and grid).

For diffusers' numbers (``tests/solvers/test_parity_golden.py`` checks 122 full loops of
diffusers' scheduler tests to 1e-4, the stochastic ones with the draws of every step), the
translators choose diffusers' variants: the 3M update
weighted by ``phi_3`` (``third_order="reference"``), DEIS in ``log rho``, lower-order final steps
only below 15 steps for DPM-Solver multistep and DEIS (``final_orders`` for ``euler_at_final``
and before a repeated ``sigma_min``), and diffusers' singlestep stages on its own timesteps
(``method="singlestep-grid"``). The k-diffusion ports (LMS, KDPM2, the ancestral ones, DPM++
SDE) map to jaxdist's k-diffusion samplers in ``(sigma, x / alpha)``, with diffusers'
``_sigma_to_t`` timestep for the network; PNDM to ``PLMS`` (Heun or PRK warm-up), DDPM to
``DDPMAncestral``, LCM / TCD to ``LCM`` / ``Ancestral(split="tcd")`` on their timesteps and
SA-Solver to ``SASolver(convention="diffusers")``. See ``docs/diffusers.md``.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Mapping, NamedTuple

import jax
import numpy as np

from .. import grids
from ..denoiser import (BaseDenoiser, ClipX0, Denoiser, DenoiserTransform, DynamicThreshold,
                        EDMPreconditioned)
from ..schedules import EDM, RectifiedFlow, Schedule, VPDiscrete
from .ancestral import LCM, Ancestral, DPMSolverPPSDE
from .base import Solver
from .ddim import DDIM
from .deis import DEIS
from .dpm_solver import DPMSolver, DPMSolverPP, diffusers_singlestep_orders
from .edm import EulerEDM, HeunEDM
from .lms import LMS
from .plms import PLMS
from .runge_kutta import RungeKutta
from .sa_solver import SASolver
from .sde import DDPMAncestral
from .sde_dpm_solver import SDEDPMSolverPP
from .tableaux import EULER
from .unipc import UniPC

Array = jax.Array

__all__ = ["from_diffusers_scheduler", "denoiser_from_diffusers", "prediction_from_diffusers",
           "DiffusersEquivalent", "SUPPORTED_SCHEDULERS", "TRANSLATORS", "CONFIG_KEYS", "own_keys"]

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


_BETAS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas",
          "prediction_type")
_THRESHOLD = ("thresholding", "dynamic_thresholding_ratio", "sample_max_value")
_SIGMAS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "use_flow_sigmas",
           "flow_shift", "use_dynamic_shifting", "time_shift_type")
_DPM = _BETAS + _THRESHOLD + _SIGMAS + (
    "solver_order", "algorithm_type", "solver_type", "lower_order_final", "lambda_min_clipped",
    "variance_type", "final_sigmas_type")
# the k-diffusion ports (KDPM2, LMS, ...): sigma conversions and spacing
_KSIGMAS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "timestep_spacing",
            "steps_offset")
#: diffusers 0.42.1's ``__init__`` keys of each supported scheduler class
CONFIG_KEYS: dict[str, frozenset] = {
    "DPMSolverMultistepScheduler": frozenset(_DPM + (
        "euler_at_final", "use_lu_lambdas", "timestep_spacing", "steps_offset",
        "rescale_betas_zero_snr")),
    "DPMSolverSinglestepScheduler": frozenset(_DPM),
    "UniPCMultistepScheduler": frozenset(_BETAS + _THRESHOLD + _SIGMAS + (
        "solver_order", "predict_x0", "solver_type", "lower_order_final", "disable_corrector",
        "solver_p", "timestep_spacing", "steps_offset", "final_sigmas_type",
        "rescale_betas_zero_snr", "shift_terminal", "sigma_min", "sigma_max")),
    "DEISMultistepScheduler": frozenset(_BETAS + _THRESHOLD + _SIGMAS + (
        "solver_order", "algorithm_type", "solver_type", "lower_order_final", "timestep_spacing",
        "steps_offset")),
    "DDIMScheduler": frozenset(_BETAS + _THRESHOLD + (
        "clip_sample", "clip_sample_range", "set_alpha_to_one", "steps_offset",
        "timestep_spacing", "rescale_betas_zero_snr")),
    "EulerDiscreteScheduler": frozenset(_BETAS + (
        "interpolation_type", "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas",
        "sigma_min", "sigma_max", "timestep_spacing", "timestep_type", "steps_offset",
        "rescale_betas_zero_snr", "final_sigmas_type")),
    "HeunDiscreteScheduler": frozenset(_BETAS + (
        "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "clip_sample",
        "clip_sample_range", "timestep_spacing", "steps_offset")),
    "EDMDPMSolverMultistepScheduler": frozenset(_THRESHOLD + (
        "sigma_min", "sigma_max", "sigma_data", "sigma_schedule", "num_train_timesteps",
        "prediction_type", "rho", "solver_order", "algorithm_type", "solver_type",
        "lower_order_final", "euler_at_final", "final_sigmas_type")),
    "EDMEulerScheduler": frozenset((
        "sigma_min", "sigma_max", "sigma_data", "sigma_schedule", "num_train_timesteps",
        "prediction_type", "rho", "final_sigmas_type")),
    "DDPMScheduler": frozenset(_BETAS + _THRESHOLD + (
        "variance_type", "clip_sample", "clip_sample_range", "timestep_spacing", "steps_offset",
        "rescale_betas_zero_snr")),
    "LCMScheduler": frozenset(_BETAS + _THRESHOLD + (
        "original_inference_steps", "clip_sample", "clip_sample_range", "set_alpha_to_one",
        "steps_offset", "timestep_spacing", "timestep_scaling", "rescale_betas_zero_snr")),
    "TCDScheduler": frozenset(_BETAS + _THRESHOLD + (
        "original_inference_steps", "clip_sample", "clip_sample_range", "set_alpha_to_one",
        "steps_offset", "timestep_spacing", "timestep_scaling", "rescale_betas_zero_snr")),
    "SASolverScheduler": frozenset(_BETAS + _THRESHOLD + _SIGMAS + (
        "predictor_order", "corrector_order", "tau_func", "algorithm_type", "lower_order_final",
        "lambda_min_clipped", "variance_type", "timestep_spacing", "steps_offset")),
    "PNDMScheduler": frozenset(_BETAS + (
        "skip_prk_steps", "set_alpha_to_one", "timestep_spacing", "steps_offset")),
    "EulerAncestralDiscreteScheduler": frozenset(_BETAS + (
        "timestep_spacing", "steps_offset", "rescale_betas_zero_snr")),
    "KDPM2DiscreteScheduler": frozenset(_BETAS + _KSIGMAS),
    "DPMSolverSDEScheduler": frozenset(_BETAS + _KSIGMAS + ("noise_sampler_seed",)),
    "KDPM2AncestralDiscreteScheduler": frozenset(_BETAS + _KSIGMAS),
    "LMSDiscreteScheduler": frozenset(_BETAS + _KSIGMAS),
    "FlowMatchEulerDiscreteScheduler": frozenset((
        "num_train_timesteps", "shift", "use_dynamic_shifting", "base_shift", "max_shift",
        "base_image_seq_len", "max_image_seq_len", "invert_sigmas", "shift_terminal",
        "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "time_shift_type",
        "stochastic_sampling")),
}
_BETA_DEFAULTS = {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02,
                  "beta_schedule": "linear", "prediction_type": "epsilon"}
_EDM_DEFAULTS = {"sigma_min": 0.002, "sigma_max": 80.0, "sigma_data": 0.5,
                 "sigma_schedule": "karras", "num_train_timesteps": 1000,
                 "prediction_type": "epsilon", "rho": 7.0}
#: diffusers 0.42.1's defaults of the keys that change the numbers (a missing key takes these)
DEFAULTS: dict[str, dict] = {
    "DPMSolverMultistepScheduler": dict(
        _BETA_DEFAULTS, solver_order=2, algorithm_type="dpmsolver++", solver_type="midpoint",
        lower_order_final=True, euler_at_final=False, final_sigmas_type="zero",
        timestep_spacing="linspace", steps_offset=0),
    "DPMSolverSinglestepScheduler": dict(
        _BETA_DEFAULTS, solver_order=2, algorithm_type="dpmsolver++", solver_type="midpoint",
        lower_order_final=False, final_sigmas_type="zero"),
    "UniPCMultistepScheduler": dict(
        _BETA_DEFAULTS, solver_order=2, predict_x0=True, solver_type="bh2",
        lower_order_final=True, timestep_spacing="linspace", steps_offset=0,
        final_sigmas_type="zero"),
    "DEISMultistepScheduler": dict(
        _BETA_DEFAULTS, solver_order=2, algorithm_type="deis", solver_type="logrho",
        lower_order_final=True, timestep_spacing="linspace", steps_offset=0),
    "DDIMScheduler": dict(_BETA_DEFAULTS, clip_sample=True, set_alpha_to_one=True, steps_offset=0,
                          timestep_spacing="leading"),
    "EulerDiscreteScheduler": dict(_BETA_DEFAULTS, timestep_spacing="linspace", steps_offset=0,
                                   final_sigmas_type="zero"),
    "HeunDiscreteScheduler": dict(_BETA_DEFAULTS, beta_start=0.00085, beta_end=0.012,
                                  clip_sample=False, timestep_spacing="linspace", steps_offset=0),
    "EDMDPMSolverMultistepScheduler": dict(
        _EDM_DEFAULTS, solver_order=2, algorithm_type="dpmsolver++", solver_type="midpoint",
        lower_order_final=True, euler_at_final=False, final_sigmas_type="zero"),
    "EDMEulerScheduler": dict(_EDM_DEFAULTS, final_sigmas_type="zero"),
    "DDPMScheduler": dict(_BETA_DEFAULTS, variance_type="fixed_small", clip_sample=True,
                          timestep_spacing="leading", steps_offset=0),
    "LCMScheduler": dict(_BETA_DEFAULTS, beta_start=0.00085, beta_end=0.012,
                         beta_schedule="scaled_linear", original_inference_steps=50,
                         clip_sample=False, timestep_scaling=10.0),
    "TCDScheduler": dict(_BETA_DEFAULTS, beta_start=0.00085, beta_end=0.012,
                         beta_schedule="scaled_linear", original_inference_steps=50,
                         clip_sample=False),
    "SASolverScheduler": dict(_BETA_DEFAULTS, predictor_order=2, corrector_order=2,
                              algorithm_type="data_prediction", lower_order_final=True,
                              timestep_spacing="linspace", steps_offset=0),
    "PNDMScheduler": dict(_BETA_DEFAULTS, skip_prk_steps=False, set_alpha_to_one=False,
                          timestep_spacing="leading", steps_offset=0),
    "EulerAncestralDiscreteScheduler": dict(_BETA_DEFAULTS, timestep_spacing="linspace",
                                            steps_offset=0),
    "KDPM2DiscreteScheduler": dict(_BETA_DEFAULTS, beta_start=0.00085, beta_end=0.012,
                                   timestep_spacing="linspace", steps_offset=0),
    "KDPM2AncestralDiscreteScheduler": dict(_BETA_DEFAULTS, beta_start=0.00085, beta_end=0.012,
                                            timestep_spacing="linspace", steps_offset=0),
    "LMSDiscreteScheduler": dict(_BETA_DEFAULTS, timestep_spacing="linspace", steps_offset=0),
    "DPMSolverSDEScheduler": dict(_BETA_DEFAULTS, beta_start=0.00085, beta_end=0.012,
                                  timestep_spacing="linspace", steps_offset=0),
    "FlowMatchEulerDiscreteScheduler": {"num_train_timesteps": 1000, "shift": 1.0},
}
#: keys of diffusers' other schedulers (DDPM, PNDM, LMS, KDPM2, EDM, LCM, SA-Solver, ...):
#: a config moved between classes with ``from_config`` keeps them and diffusers ignores them
OTHER_SCHEDULER_KEYS = frozenset((
    "skip_prk_steps", "sigma_data", "sigma_schedule", "original_inference_steps",
    "timestep_scaling", "predictor_order", "corrector_order", "tau_func", "num_vec_classes",
    "clip_sample", "clip_sample_range", "set_alpha_to_one", "variance_type", "sigma_min",
    "sigma_max", "timestep_type", "interpolation_type", "shift", "base_shift", "max_shift",
    "base_image_seq_len", "max_image_seq_len", "invert_sigmas", "shift_terminal",
    "stochastic_sampling", "euler_at_final", "use_lu_lambdas", "lambda_min_clipped",
    "predict_x0", "solver_p", "disable_corrector", "final_sigmas_type"))


def own_keys(config: Mapping[str, Any]) -> dict:
    """The keys of ``config`` that its ``_class_name`` reads (diffusers ignores the others: keys
    starting with ``_`` such as ``_diffusers_version``, and other schedulers' keys), missing
    ones filled from the class's :data:`DEFAULTS` (``None`` values too, as diffusers does).

    Raises ``ValueError`` for a key no diffusers scheduler has, naming the closest known one."""
    cls = str(config.get("_class_name", ""))
    own = CONFIG_KEYS[cls]
    known = set().union(*CONFIG_KEYS.values(), OTHER_SCHEDULER_KEYS)
    for key in config:
        if not str(key).startswith("_") and key not in known:
            close = difflib.get_close_matches(str(key), sorted(own) or sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise ValueError(f"config[{key!r}] is not a diffusers scheduler option{hint} "
                             f"{cls} reads: {', '.join(sorted(own))}.")
    given = {k: v for k, v in config.items() if k in own and v is not None}
    return {**DEFAULTS[cls], **given, "_class_name": cls}


class _ThresholdKeepEps(DenoiserTransform):
    """diffusers' DDIM thresholding: ``x0_hat`` thresholded by ``clip`` (a ``jd.ClipX0`` or
    ``jd.DynamicThreshold``), ``eps_hat`` kept from the model (not recomputed)."""

    def __init__(self, inner: BaseDenoiser, clip: DenoiserTransform):
        self.inner, self.clip = inner, clip

    def transform(self, x0, eps, x, t):
        return self.clip.transform(x0, eps, x, t)[0], eps


class _LearnedVariance:
    """A model whose output carries a learned variance (``[batch, 2 C, ...]``): the mean only."""

    def __init__(self, fn: Callable[..., Array]):
        self.fn = fn

    def __call__(self, x, t, **cond):
        return self.fn(x, t, **cond)[:, : x.shape[1]]


def denoiser_from_diffusers(fn: Callable[..., Array], config: Mapping[str, Any]) -> BaseDenoiser:
    """The ``jd.Denoiser`` of a network ``fn(x, t)`` for a diffusers scheduler ``config``, with
    ``t`` diffusers' timestep (``schedule.model_time`` for beta schedules; ``N`` times the flow
    time for flow matching, truncated to an integer with ``use_flow_sigmas`` as diffusers does),
    reading the model output as that scheduler does:

    * ``prediction_type`` (:func:`prediction_from_diffusers`);
    * ``variance_type="learned"`` / ``"learned_range"``: the output has ``2 C`` channels (axis 1),
      mean first; the mean is used (diffusers' DPM-Solver takes ``[:, :3]``);
    * ``thresholding`` (``dynamic_thresholding_ratio``, ``sample_max_value``) ->
      ``jd.DynamicThreshold``; ``clip_sample`` (``clip_sample_range``) -> ``jd.ClipX0``. DDIM
      keeps the model's ``eps_hat`` with the thresholded ``x0_hat``, as diffusers does.

    The schedule is ``from_diffusers_scheduler``'s (model time rounded where diffusers rounds
    the timesteps of converted sigmas; where it truncates them, ``fn`` is called with
    ``floor(t)``). Pass ``denoiser_keys_applied=True`` to ``from_diffusers_scheduler`` for a
    config with these keys."""
    cls = str(config.get("_class_name", ""))
    if cls not in SUPPORTED_SCHEDULERS:
        raise ValueError(f"config['_class_name']={cls!r} is not supported; known: "
                         f"{', '.join(SUPPORTED_SCHEDULERS)}.")
    own = own_keys(config)
    if str(own.get("variance_type")) in ("learned", "learned_range") and \
            own.get("prediction_type", "epsilon") == "epsilon":
        fn = _LearnedVariance(fn)
    schedule = _schedule(own)
    if _is_edm(own):  # diffusers' EDM schedulers precondition the network's input and output
        kind = own.get("prediction_type", "epsilon")
        if kind not in ("epsilon", "v_prediction"):
            raise ValueError(f"config['prediction_type']={kind!r}: the EDM schedulers take "
                             "'epsilon' (EDM's F) or 'v_prediction'.")
        net = fn if kind == "epsilon" else _Negated(fn)  # v: c_out changes sign
        return _wrap_thresholds(EDMPreconditioned(net, schedule, float(own["sigma_data"])), own)
    if isinstance(schedule, RectifiedFlow):  # diffusers' timestep is N sigma (int: flow sigmas)
        fn = _DiffusersTimestep(fn, float(own.get("num_train_timesteps", 1000)),
                                truncate=bool(own.get("use_flow_sigmas")))
    elif _timestep_rounding(own) == "trunc":
        fn = _DiffusersTimestep(fn, truncate=True)
    elif cls in _FRACTIONAL_TIMESTEPS:
        fn = _SigmaTimestep(fn, schedule)
    den = _wrap_thresholds(Denoiser(fn, schedule, prediction_from_diffusers(own)), own)
    if cls == "LCMScheduler":
        den = _ConsistencyBoundary(den, float(own["timestep_scaling"]))
    return den


class _ConsistencyBoundary(DenoiserTransform):
    """LCM's boundary condition: ``D = c_out x0_hat + c_skip x`` with ``c_skip = s_d^2 /
    (tau^2 + s_d^2)``, ``c_out = tau / sqrt(tau^2 + s_d^2)``, ``tau = scaling * timestep``,
    ``s_d = 0.5``; ``eps_hat`` recomputed."""

    def __init__(self, inner: BaseDenoiser, scaling: float, sigma_data: float = 0.5):
        self.inner, self.scaling, self.sigma_data = inner, float(scaling), float(sigma_data)

    def transform(self, x0, eps, x, t):
        s = self.schedule
        tau = self.scaling * s.model_time(t)
        c_skip = self.sigma_data**2 / (tau**2 + self.sigma_data**2)
        c_out = tau / jax.numpy.sqrt(tau**2 + self.sigma_data**2)
        x0 = c_out * x0 + c_skip * x
        return x0, (x - s.alpha(t) * x0) / s.sigma(t)


def _wrap_thresholds(den: BaseDenoiser, config: Mapping[str, Any]) -> BaseDenoiser:
    keep_eps = config.get("_class_name") == "DDIMScheduler"  # Heun's derivative uses the clip
    if config.get("_class_name") == "TCDScheduler":  # its step reads neither option
        return den
    specs = []
    if config.get("clip_sample", False):
        specs.append((ClipX0, (float(config.get("clip_sample_range", 1.0)),)))
    if config.get("thresholding", False):
        specs.append((DynamicThreshold, (float(config.get("dynamic_thresholding_ratio", 0.995)),
                                         float(config.get("sample_max_value", 1.0)))))
    for cls, args in specs:
        clip = cls(den, *args)
        den = _ThresholdKeepEps(den, clip) if keep_eps else clip
    return den


#: schedulers that give the network the fractional timesteps of converted sigmas
_FRACTIONAL_TIMESTEPS = ("EulerDiscreteScheduler", "HeunDiscreteScheduler", "LMSDiscreteScheduler",
                         "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler",
                         "EulerAncestralDiscreteScheduler", "DPMSolverSDEScheduler")


def _timestep_rounding(config: Mapping[str, Any]) -> str | None:
    """How diffusers turns the fractional timesteps of converted sigmas into the network's
    input: ``"round"`` (Karras / Lu, except DPM-Solver on ``squaredcos_cap_v2``), ``"trunc"``
    (exponential and beta sigmas, and the exception), or ``None`` (no conversion; Euler and
    Heun pass the fractional timestep)."""
    cls = config.get("_class_name")
    on = [k for k in _CONVERSIONS if config.get(k)]
    if not on or cls in _FRACTIONAL_TIMESTEPS or \
            str(cls).startswith("FlowMatch") or config.get("use_flow_sigmas"):
        return None
    if on[0] in ("use_karras_sigmas", "use_lu_lambdas") and (
            cls in ("DEISMultistepScheduler", "UniPCMultistepScheduler")
            or config.get("beta_schedule") != "squaredcos_cap_v2"):
        return "round"
    return "trunc"


class _Negated:
    """``-fn(x, t)``."""

    def __init__(self, fn: Callable[..., Array]):
        self.fn = fn

    def __call__(self, x, t, **cond):
        return -self.fn(x, t, **cond)


class _DiffusersTimestep:
    """``fn(x, t)`` called with diffusers' timestep: ``scale * t`` (flows: ``N t``), then
    ``floor`` where diffusers casts it to an integer."""

    def __init__(self, fn: Callable[..., Array], scale: float = 1.0, truncate: bool = False):
        self.fn, self.scale, self.truncate = fn, float(scale), bool(truncate)

    def __call__(self, x, t, **cond):
        t = self.scale * jax.numpy.asarray(t)
        return self.fn(x, jax.numpy.floor(t + 1e-6) if self.truncate else t, **cond)


class _SigmaTimestep:
    """``fn(x, t)`` called with diffusers' ``_sigma_to_t`` of the level: the timestep whose
    training ``sigma / alpha`` it is, interpolated linearly in ``log(sigma / alpha)`` between the
    integer timesteps (``VPDiscrete`` interpolates ``log alpha``; the two agree at integer
    timesteps and differ between them, most at low noise: KDPM2's midpoints, converted sigmas)."""

    def __init__(self, fn: Callable[..., Array], schedule: VPDiscrete):
        self.fn, self.schedule = fn, schedule

    def __call__(self, x, t, **cond):
        s = self.schedule
        t = jax.numpy.asarray(s.t_from_model_time(t))
        n = s.num_train_timesteps
        index = jax.numpy.arange(n, dtype=t.dtype)
        log_train = -0.5 * s.log_snr((index + 1.0) / n)  # log sigma of timestep k
        return self.fn(x, jax.numpy.interp(-0.5 * s.log_snr(t), log_train, index), **cond)


def _schedule(config: Mapping[str, Any]) -> Schedule:
    """``VPDiscrete`` of the betas (``RectifiedFlow`` for flow matching and ``use_flow_sigmas``),
    the model's time rounded where diffusers rounds the timesteps of converted sigmas."""
    if _is_edm(config):
        return EDM(sigma_min=float(config["sigma_min"]), sigma_max=float(config["sigma_max"]),
                   sigma_data=float(config["sigma_data"]))
    schedule = grids.diffusers_schedule(config)
    if _timestep_rounding(config) == "round":
        return VPDiscrete.from_diffusers_config(config, quantize=True)
    return schedule


def _reject(config: Mapping[str, Any], key: str, allowed: tuple, fix: str) -> None:
    """Raises if ``config[key]`` is present and not one of ``allowed``."""
    if key in config and config[key] not in allowed:
        raise ValueError(f"config[{key!r}]={config[key]!r} is not supported by "
                         f"from_diffusers_scheduler ({config.get('_class_name')}): {fix}")


class _Grid(NamedTuple):
    """diffusers' grid for a translator: ``grid`` without a zero-length final step, and
    whether diffusers' list ended in one (``final_sigmas_type="sigma_min"`` after converted
    sigmas repeats ``sigma_min``: a last step that does nothing and is dropped here)."""

    grid: Array
    dropped_zero_step: bool


def _is_edm(config: Mapping[str, Any]) -> bool:
    return str(config.get("_class_name", "")).startswith("EDM")


def _edm_levels(config: Mapping[str, Any], n_steps: int) -> np.ndarray:
    """The EDM schedulers' sigmas: Karras (``rho``) or log-uniform from ``sigma_max`` to
    ``sigma_min`` (``n`` points), then 0 or ``sigma_min`` (``final_sigmas_type``)."""
    lo, hi = float(config["sigma_min"]), float(config["sigma_max"])
    kind = config.get("sigma_schedule", "karras")
    if kind == "karras":
        rho = float(config.get("rho", 7.0))
        ramp = np.linspace(0.0, 1.0, n_steps)
        levels = (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    elif kind == "exponential":
        levels = np.exp(np.linspace(np.log(lo), np.log(hi), n_steps))[::-1]
    else:
        raise ValueError(f"config['sigma_schedule']={kind!r}: use 'karras' or 'exponential'.")
    final = config.get("final_sigmas_type", "zero")
    if final not in ("zero", "sigma_min"):
        raise ValueError(f"config['final_sigmas_type']={final!r}: use 'zero' or 'sigma_min'.")
    return np.append(levels, 0.0 if final == "zero" else lo)


def _diffusers_grid(config: Mapping[str, Any], n_steps: int) -> Array:
    if _is_edm(config):  # EDM times are the sigmas
        return jax.numpy.asarray(_edm_levels(config, n_steps), dtype=grids.common.float_dtype())
    return grids.from_diffusers(config, n_steps)


def _vp_grid(config: Mapping[str, Any], n_steps: int) -> _Grid:
    """diffusers' noise levels (``jd.grids.from_diffusers``: spacing, Karras / exponential / beta
    / Lu / flow sigmas, ``lambda_min_clipped``, ``final_sigmas_type``; the EDM schedulers')."""
    grid = _diffusers_grid(config, n_steps)
    if _repeats_last_level(config, n_steps):
        return _Grid(grid[:-1], True)
    return _Grid(grid, False)


def _grid_with_zero_step(config: Mapping[str, Any], n_steps: int) -> Array:
    """diffusers' grid with its repeated last level (if any) as exactly repeated last time."""
    grid = _diffusers_grid(config, n_steps)
    return grid.at[-1].set(grid[-2]) if _repeats_last_level(config, n_steps) else grid


def _repeats_last_level(config: Mapping[str, Any], n_steps: int) -> bool:
    """diffusers' ``sigmas`` end in a repeated level (a zero-length last step)."""
    levels = (_edm_levels if _is_edm(config) else grids.diffusers_sigmas)(config, n_steps)
    return levels.size > 2 and abs(levels[-1] - levels[-2]) <= 1e-9 * abs(levels[-2])


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
    # DPM-Solver(++) and DEIS in diffusers lower the final orders only below 15 steps.
    return bool(config.get("lower_order_final", True)) and n_steps < 15


def _order(config: Mapping[str, Any], default: int = 2) -> int:
    return int(config.get("solver_order", default))


def _dpm_final_orders(config: Mapping[str, Any], n_steps: int, order: int,
                      dropped_zero_step: bool) -> dict:
    """``lower_order_final`` / ``final_orders`` for diffusers' multistep DPM-Solver orders: the
    last step is first order with ``euler_at_final`` or ``lower_order_final`` below 15 steps
    (a step to ``t = 0`` always is), the one before at most second order with the latter. A
    dropped zero-length final step takes its cap with it."""
    lof = _multistep_lof(config, n_steps)
    caps = (2 if lof else 3, 1 if (lof or config.get("euler_at_final", False)) else 3)
    if dropped_zero_step:
        caps = caps[:-1]
    caps = tuple(min(c, order) for c in caps)
    if len(caps) == 2 and caps == (min(order, 2), 1):
        return {"lower_order_final": True}
    while caps and caps[0] == order:
        caps = caps[1:]
    return {"lower_order_final": False, "final_orders": caps}


# -- one translator per scheduler class: (config, n_steps) -> (solver, grid) ------------------

def _dpm_multistep(config, n_steps):
    algo = config.get("algorithm_type", "dpmsolver++")
    stype = config.get("solver_type", "midpoint")
    order = _order(config)
    g = _vp_grid(config, n_steps)
    finals = _dpm_final_orders(config, n_steps, order, g.dropped_zero_step)
    if algo == "sde-dpmsolver++":
        return SDEDPMSolverPP(order=order, solver_type=stype, third_order="diffusers",
                              **finals), g.grid
    if algo not in ("dpmsolver++", "dpmsolver"):
        raise ValueError(f"config['algorithm_type']={algo!r} is not supported; use "
                         "'dpmsolver++', 'dpmsolver' or 'sde-dpmsolver++'.")
    third = "reference" if order == 3 else "taylor"  # diffusers' 3M update (phi_3 weight)
    if algo == "dpmsolver++":
        solver = DPMSolverPP(order=order, solver_type=stype, third_order=third, **finals)
    else:
        solver = DPMSolver(order=order, method="multistep", solver_type=stype,
                           third_order=third, **finals)
    return solver, g.grid


def _dpm_singlestep(config, n_steps):
    # diffusers' stages are its own timesteps: DPMSolverPP(method="singlestep-grid"), one
    # evaluation per grid step, diffusers' order list; a repeated sigma_min is kept (the last
    # group's update lands on its own stage there).
    algo = config.get("algorithm_type", "dpmsolver++")
    if algo not in ("dpmsolver++", "dpmsolver"):
        raise ValueError(f"config['algorithm_type']={algo!r}: use 'dpmsolver++' or 'dpmsolver'.")
    order = _order(config)
    lof = bool(config.get("lower_order_final", False))
    grid = _grid_with_zero_step(config, n_steps)
    table = diffusers_singlestep_orders(n_steps, order, lof,
                                        config.get("final_sigmas_type") == "zero")
    family = DPMSolverPP if algo == "dpmsolver++" else DPMSolver
    solver = family(order=order, method="singlestep-grid",
                    solver_type=config.get("solver_type", "midpoint"),
                    lower_order_final=lof or n_steps % order != 0, grid_orders=tuple(table))
    return solver, grid


def _unipc(config, n_steps):
    _reject(config, "solver_p", (None,), "UniPC with another predictor is not mapped.")
    lof = bool(config.get("lower_order_final", True))
    grid = _grid_with_zero_step(config, n_steps)
    if _repeats_last_level(config, n_steps) and not (lof or _order(config) == 1):
        raise ValueError(
            "UniPCMultistepScheduler with final_sigmas_type='sigma_min' after converted sigmas "
            "(use_karras_sigmas, ...) and lower_order_final=False takes a step of order "
            f"{_order(config)} and zero length at the end; use lower_order_final=True or "
            "final_sigmas_type='zero'.")
    solver = UniPC(order=_order(config), variant=config.get("solver_type", "bh2"),
                   prediction="x0" if config.get("predict_x0", True) else "eps", corrector=True,
                   lower_order_final=lof,
                   disable_corrector=tuple(config.get("disable_corrector") or ()))
    return solver, grid


def _deis(config, n_steps):
    _reject(config, "algorithm_type", ("deis",), "only algorithm_type='deis' exists.")
    _reject(config, "solver_type", ("logrho",), "only solver_type='logrho' is mapped.")
    order = _order(config, 3)
    g = _vp_grid(config, n_steps)
    lof = _multistep_lof(config, n_steps)
    if g.dropped_zero_step:  # the real last step keeps its order (2 with lower_order_final)
        caps = (2,) if lof and order == 3 else ()
        return DEIS(order=order, variable="logrho", lower_order_final=False,
                    final_orders=caps), g.grid
    return DEIS(order=order, variable="logrho", lower_order_final=lof), g.grid


def _kdpm2(config, n_steps):
    # k-diffusion's DPM-2: the midpoint at the geometric mean of the sigmas (diffusers'
    # sigmas_interpol, log-sigma interpolation) = DPM-Solver-2 with r = 1/2; an Euler last step.
    # The ancestral form: the same step to sigma_down, then noise up (sample_dpm_2_ancestral).
    _reject(config, "use_karras_sigmas", (False,), f"{config['_class_name']} rounds the "
            "timesteps of Karras sigmas but not of its midpoints, which no jaxdist schedule "
            "does; use use_exponential_sigmas or build a Karras grid with jd.grids.karras.")
    if config["_class_name"] == "KDPM2AncestralDiscreteScheduler":
        solver = Ancestral("dpm2")
    else:
        solver = DPMSolver(order=2, method="singlestep", lower_order_final=True)
    return solver, _vp_grid(config, n_steps).grid


def _lms(config, n_steps):
    # LMSDiscreteScheduler.step(order=4): the polynomial is integrated to sigma = 0 as well
    return LMS(order=4), _vp_grid(config, n_steps).grid


def _ddpm(config, n_steps):
    # the posterior q(x_s | x_t, x0_hat) between listed timesteps (x0_hat clipped: the
    # denoiser's ClipX0 recomputes eps_hat, as the posterior mean c0 x0_hat + ct x_t implies)
    _reject(config, "variance_type", ("fixed_small", "fixed_small_log"), "jaxdist's "
            "DDPMAncestral draws with the posterior variance; use variance_type='fixed_small' "
            "(fixed_large / learned variances are not mapped).")
    return DDPMAncestral(), _vp_grid(config, n_steps).grid


def lcm_timesteps(config: Mapping[str, Any], n_steps: int) -> np.ndarray:
    """``LCMScheduler.set_timesteps(n)``: ``n`` of the ``original_inference_steps`` timesteps
    ``k m - 1`` (``k = N // original``), from the largest, at ``floor`` of evenly spaced
    indices."""
    n_train, original = int(config["num_train_timesteps"]), int(config["original_inference_steps"])
    if not n_steps <= original <= n_train:
        raise ValueError(f"LCMScheduler needs n_steps={n_steps} <= original_inference_steps="
                         f"{original} <= num_train_timesteps={n_train}.")
    origin = (np.arange(1, original + 1) * (n_train // original) - 1)[::-1]
    return origin[np.floor(np.linspace(0, original, n_steps, endpoint=False)).astype(int)]


def _lcm(config, n_steps):
    # x_next = alpha_next D + sigma_next z, D the boundary-condition denoiser
    # (denoiser_from_diffusers); the last step returns D (t = 0)
    times = (lcm_timesteps(config, n_steps) + 1.0) / int(config["num_train_timesteps"])
    grid = jax.numpy.asarray(np.append(times, 0.0), dtype=grids.common.float_dtype())
    return LCM(), grid


def _tcd(config, n_steps):
    # DDIM to timestep floor((1 - gamma) k_next), then forward noise to k_next; diffusers' step
    # takes gamma (eta=0.3) as an argument: dataclasses.replace(solver, eta=gamma) for another.
    # The last step ends at timestep 0 (t = 1 / N) without noise.
    n_train = int(config["num_train_timesteps"])
    times = (lcm_timesteps(config, n_steps) + 1.0) / n_train
    if times[-1] <= 1.0 / n_train:
        raise ValueError("TCDScheduler's last timestep is 0 here (original_inference_steps = "
                         "num_train_timesteps): a step of zero length; use fewer original steps.")
    grid = jax.numpy.asarray(np.append(times, 1.0 / n_train), dtype=grids.common.float_dtype())
    return Ancestral("euler", eta=0.3, split="tcd"), grid


def _sa_solver(config, n_steps):
    # diffusers' SA-Solver: tau_func = 1 on timesteps 200..800 (at each step's start), its
    # orders; the grid ends at alphas_cumprod[0] (or a repeated last level after conversions)
    _reject(config, "algorithm_type", ("data_prediction",), "only the data-prediction "
            "SA-Solver is mapped.")
    _reject(config, "tau_func", (None,), "a custom tau_func is not mapped; build "
            "jd.solvers.SASolver(tau_interval=...) instead.")
    _reject(config, "lower_order_final", (True,), "use lower_order_final=True.")
    for key in ("use_flow_sigmas", "use_dynamic_shifting"):
        _reject(config, key, (False,), "flow sigmas are not mapped for SA-Solver.")
    if config.get("lambda_min_clipped", -np.inf) != -np.inf:
        raise ValueError("config['lambda_min_clipped'] is not mapped for SASolverScheduler.")
    grid = _grid_with_zero_step(dict(config, final_sigmas_type="sigma_min"), n_steps)
    schedule = _schedule(config)
    level = [float(schedule.sigma_over_alpha((k + 1.0) / int(config["num_train_timesteps"])))
             for k in (800, 200)]
    solver = SASolver(predictor_order=int(config["predictor_order"]),
                      corrector_order=int(config["corrector_order"]), eta=1.0,
                      tau_interval=(level[0] * (1 + 1e-6), level[1] * (1 - 1e-6)),
                      convention="diffusers")
    return solver, grid


def _pndm(config, n_steps):
    # skip_prk_steps=True: PLMS (a Heun first step); False (diffusers' default): three pseudo
    # Runge-Kutta steps with stages at the half timestep k - N // n // 2
    _reject(config, "prediction_type", ("epsilon",), "PNDMScheduler combines v predictions "
            "in its multistep sum before converting them to noise with the current sample; "
            "jaxdist's PLMS combines noise predictions. Use prediction_type='epsilon', or a "
            "v model with another solver (e.g. DPMSolverMultistepScheduler).")
    ts = grids.diffusers_timesteps(config, n_steps)
    stride = int(config["num_train_timesteps"]) // n_steps
    if np.any(np.diff(ts) != -stride):  # diffusers steps from k to k - N // n
        raise ValueError(f"PNDMScheduler with timestep_spacing={config['timestep_spacing']!r} "
                         f"and {n_steps} steps steps past its next timestep; use "
                         "timestep_spacing='leading'.")
    if config.get("skip_prk_steps"):
        return PLMS(), _vp_grid(config, n_steps).grid
    if n_steps < 4 or stride % 2:
        raise ValueError(f"PNDMScheduler's Runge-Kutta warm-up (skip_prk_steps=False) needs "
                         f">= 4 steps and an even num_train_timesteps // n_steps (got {n_steps} "
                         f"steps, stride {stride}); use skip_prk_steps=True.")
    return PLMS(warmup="prk"), _vp_grid(config, n_steps).grid


def _fixed(solver_cls):
    def translate(config, n_steps):
        return solver_cls(), _vp_grid(config, n_steps).grid
    return translate


#: ``_class_name`` -> translator ``(config, n_steps) -> (solver, grid)``
TRANSLATORS: dict[str, Callable[..., tuple[Solver, Any]]] = {
    "DPMSolverMultistepScheduler": _dpm_multistep,
    "DPMSolverSinglestepScheduler": _dpm_singlestep,
    "UniPCMultistepScheduler": _unipc,
    "DEISMultistepScheduler": _deis,
    "DDIMScheduler": _fixed(DDIM),
    "EulerDiscreteScheduler": _fixed(EulerEDM),
    "HeunDiscreteScheduler": _fixed(HeunEDM),
    "EDMDPMSolverMultistepScheduler": _dpm_multistep,
    "EDMEulerScheduler": _fixed(EulerEDM),
    "DDPMScheduler": _ddpm,
    "LCMScheduler": _lcm,
    "TCDScheduler": _tcd,
    "SASolverScheduler": _sa_solver,
    "PNDMScheduler": _pndm,
    # k-diffusion's euler_ancestral (eta = 1) in (sigma, x / alpha)
    "EulerAncestralDiscreteScheduler": lambda config, n: (Ancestral("euler"),
                                                          _vp_grid(config, n).grid),
    "KDPM2DiscreteScheduler": _kdpm2,
    # k-diffusion's dpmpp_sde (eta = 1, r = 1/2); diffusers draws from a Brownian tree: pass
    # noise=jd.noise.BrownianPath(...) for the same law of the two draws of a step
    "DPMSolverSDEScheduler": lambda config, n: (DPMSolverPPSDE(), _vp_grid(config, n).grid),
    "KDPM2AncestralDiscreteScheduler": _kdpm2,
    "LMSDiscreteScheduler": _lms,
}


def _flow_match(config: Mapping[str, Any], n_steps: int) -> DiffusersEquivalent:
    for key in ("use_dynamic_shifting", "invert_sigmas", "stochastic_sampling",
                "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"):
        _reject(config, key, (False, None), "build the grid with jd.grids on "
                "jd.schedules.RectifiedFlow() instead.")
    _reject(config, "shift_terminal", (None,), "shift_terminal is not reproduced.")
    return DiffusersEquivalent(RungeKutta(EULER, variable="t"), RectifiedFlow(),
                               jax.numpy.asarray(_flow_grid(config, n_steps)))


_CONVERSIONS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "use_lu_lambdas")
#: keys handled by :func:`denoiser_from_diffusers` (the model output), not by the solver
DENOISER_KEYS = ("thresholding", "clip_sample", "variance_type")


def from_diffusers_scheduler(config: Mapping[str, Any], n_steps: int, *,
                             denoiser_keys_applied: bool = False) -> DiffusersEquivalent:
    """``(solver, schedule, grid)`` equivalent to the diffusers scheduler ``config`` run for
    ``n_steps`` inference steps.

    Supported ``_class_name``: the keys of :data:`TRANSLATORS` and
    ``FlowMatchEulerDiscreteScheduler`` (``shift``); see ``docs/diffusers.md`` for the options.
    Keys of other diffusers schedulers (a config moved between schedulers with ``from_config``)
    are ignored, as diffusers does; an unknown key is an error naming the closest known one.
    ``thresholding``, ``clip_sample`` and ``variance_type`` concern the model output: build the
    denoiser with :func:`denoiser_from_diffusers` and pass ``denoiser_keys_applied=True``.

    Raises:
      ValueError: for an unknown class or key, or an option jaxdist does not reproduce (the
        message names the option and what to do instead).
    """
    if not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
        raise ValueError(f"n_steps={n_steps!r} must be a positive integer.")
    cls = str(config.get("_class_name", ""))
    if cls not in SUPPORTED_SCHEDULERS:
        close = difflib.get_close_matches(cls, SUPPORTED_SCHEDULERS, n=1, cutoff=0.9)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"config['_class_name']={cls!r} is not supported.{hint} Known: "
                         f"{', '.join(SUPPORTED_SCHEDULERS)}.")
    config = own_keys(config)
    if not denoiser_keys_applied:
        for key in DENOISER_KEYS:
            if config.get(key) and config.get(key) not in ("fixed_small", "fixed_large",
                                                           "fixed_small_log", "fixed_large_log"):
                raise ValueError(
                    f"config[{key!r}]={config[key]!r} concerns the model output: jaxdist applies "
                    "it in the denoiser. Build it with jd.solvers.denoiser_from_diffusers(fn, "
                    "config) (it wraps jd.DynamicThreshold / jd.ClipX0 and takes the mean of a "
                    "learned variance) and call from_diffusers_scheduler(config, n, "
                    "denoiser_keys_applied=True).")
    if cls.startswith("FlowMatch"):
        return _flow_match(config, n_steps)
    prediction_from_diffusers(config)  # validates prediction_type
    schedule = _schedule(config)
    solver, grid = TRANSLATORS[cls](config, n_steps)
    return DiffusersEquivalent(solver, schedule, grid)


SUPPORTED_SCHEDULERS = tuple(TRANSLATORS) + ("FlowMatchEulerDiscreteScheduler",)
