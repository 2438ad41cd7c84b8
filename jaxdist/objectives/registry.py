"""Objectives by name: ``make_objective(name, apply_fn, schedule=None, **options)`` and the
:class:`Objective` record (a loss and how to sample what it trains). The table of names is in
:mod:`jaxdist.objectives`."""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax

from ..denoiser import BaseDenoiser
from ..models.adapters import denoiser_from_apply
from ..schedules import EDM, RectifiedFlow, Schedule, VPLinear
from .consistency import consistency_sample, make_cd_loss, make_ict_loss
from .dsm import make_dsm_loss
from .flow_matching import make_fm_loss
from .sliced import make_ssm_loss

Array = jax.Array
LossFn = Callable[[Any, Array, dict], tuple[Array, dict]]

__all__ = ["Objective", "make_objective", "OBJECTIVES"]

OBJECTIVES = ("dsm", "edm", "fm", "ot-fm", "ict", "cd", "ssm")


class Objective(NamedTuple):
    """A loss and how to sample from what it trains.

    Attributes:
      loss: ``loss(params, key, batch) -> (scalar, aux)``.
      schedule: the schedule a trained model is sampled with (``None`` for ``ssm``).
      prediction: what ``apply_fn`` outputs: a ``jd.predictions`` type, ``"edm"`` (raw EDM ``F``)
        or ``"consistency"``.
      name: the objective's name.
      sampler: ``sampler(apply_fn, params, key, shape, steps)`` for few-step consistency sampling
        (``ict``/``cd``), else ``None``.
    """

    loss: LossFn
    schedule: Schedule | None
    prediction: str
    name: str = ""
    sampler: Callable[..., Array] | None = None

    def denoiser(self, apply_fn: Callable[..., Array], params: Any) -> BaseDenoiser:
        """The ``jd`` denoiser of a trained ``apply_fn`` (ODE/SDE solvers sample it)."""
        if self.schedule is None:
            raise ValueError(f"objective {self.name!r} has no noise schedule, so no denoiser; "
                             "sample its score with Langevin dynamics instead.")
        return denoiser_from_apply(apply_fn, params, self.schedule, self.prediction)


def make_objective(name: str, apply_fn: Callable[..., Array], *, schedule: Schedule | None = None,
                   **options) -> Objective:
    """Builds the objective ``name`` (see the module table) for ``apply_fn(params, x, t, **cond)``.

    ``options`` go to the factory: :func:`make_dsm_loss` (``dsm``, ``edm``), :func:`make_fm_loss`
    (``fm``, ``ot-fm``; e.g. ``contrastive=0.05``), :func:`make_ict_loss` (``ict``; pass
    ``total_steps`` = the length of the run), :func:`make_cd_loss` (``cd``; ``teacher`` required),
    :func:`make_ssm_loss` (``ssm``).
    """
    if name == "dsm":
        schedule = VPLinear() if schedule is None else schedule
        options.setdefault("prediction", "eps")
        loss = make_dsm_loss(apply_fn, schedule=schedule, **options)
        return Objective(loss, schedule, options["prediction"], name)
    if name == "edm":
        schedule = EDM() if schedule is None else schedule
        options.setdefault("time_sampler", "lognormal")
        options.setdefault("weighting", "edm")
        if options["weighting"] == "edm":
            options.setdefault("sigma_data", getattr(schedule, "sigma_data", 0.5))
        loss = make_dsm_loss(apply_fn, schedule=schedule, prediction="edm", **options)
        return Objective(loss, schedule, "edm", name)
    if name in ("fm", "ot-fm"):
        schedule = RectifiedFlow() if schedule is None else schedule
        if name == "ot-fm":
            options["coupling"] = "ot"
        options.setdefault("prediction", "velocity")
        loss = make_fm_loss(apply_fn, schedule=schedule, **options)
        return Objective(loss, schedule, options["prediction"], name)
    if name in ("ict", "cd"):
        schedule = EDM() if schedule is None else schedule
        if not isinstance(schedule, EDM):
            raise ValueError(f"{name} trains in EDM noise levels: pass schedule=jd.schedules.EDM(...)"
                             f" (got {type(schedule).__name__}); a cd teacher may use any schedule.")
        levels = {"sigma_min": schedule.sigma_min, "sigma_max": schedule.sigma_max,
                  "sigma_data": schedule.sigma_data}
        if name == "ict":
            options.setdefault("total_steps", 10_000)
            loss = make_ict_loss(apply_fn, **levels, **options)
        else:
            if "teacher" not in options:
                raise ValueError("cd needs teacher=<a jd denoiser or a function teacher_params -> "
                                 "denoiser>.")
            loss = make_cd_loss(apply_fn, **levels, **options)
        sampler = functools.partial(consistency_sample, schedule=schedule)
        return Objective(loss, schedule, "consistency", name, sampler)
    if name == "ssm":
        return Objective(make_ssm_loss(apply_fn, **options), schedule, "score", name)
    raise ValueError(f"unknown objective {name!r}; use one of {OBJECTIVES}.")
