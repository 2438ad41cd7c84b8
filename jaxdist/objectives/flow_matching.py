r"""Flow matching: regress the velocity of a noising path, with independent, OT or reflow pairs.

With ``x_t = alpha(t) x0 + sigma(t) eps`` (``t = 0`` data; by default the rectified-flow path
``alpha = 1 - t``, ``sigma = t``) the conditional velocity is ``u = alpha'(t) x0 + sigma'(t) eps``
(``= eps - x0`` for rectified flow) and the loss is ``mean_i mean_d (v_theta(x_t, t) - u)^2``; its
minimiser is the marginal velocity ``E[u | x_t]``, the probability-flow ODE of the path.

* ``coupling="independent"``: ``eps ~ N(0, I)`` independent of ``x0`` (I-CFM / 1-rectified flow).
* ``coupling="ot"``: the noise of the minibatch is re-ordered by the exact OT permutation
  (:mod:`jaxdist.objectives.ot`), OT-CFM (Tong et al. 2024; Pooladian et al. 2023).
* reflow: ``batch["noise"]`` holds the noise each data point was generated from
  (:func:`reflow_pairs`), 2-rectified flow (Liu et al. 2023).
* ``contrastive=lam``: Contrastive Flow Matching (Stoica et al. 2025, "DeltaFM"):
  ``||v - u||^2 - lam ||v - u~||^2`` with ``u~ = alpha' x0~ + sigma' eps~`` the velocity of another
  pair ``(x0~, eps~)`` of the batch (the paper uses ``lam = 0.05``). Its minimiser is
  ``(E[u | x_t] - lam E[u~]) / (1 - lam)``.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..denoiser import BaseDenoiser
from ..schedules import RectifiedFlow, Schedule
from .dsm import ApplyFn, TimeSampler, make_time_sampler, regression_loss
from .ot import ot_coupling
from .weighting import Weighting, get_weighting

Array = jax.Array

__all__ = ["make_fm_loss", "reflow_pairs", "COUPLINGS"]

COUPLINGS = ("independent", "ot")


def make_fm_loss(apply_fn: ApplyFn, *, schedule: Schedule | None = None,
                 coupling: str = "independent", contrastive: float = 0.0,
                 prediction: str = "velocity", weighting: str | Weighting | None = None,
                 time_sampler: str | TimeSampler = "uniform", t_min: float | None = None,
                 t_max: float | None = None, p_mean: float = 0.0, p_std: float = 1.0,
                 **weighting_options) -> Callable[[Any, Array, dict], tuple[Array, dict]]:
    """Flow-matching ``loss(params, key, batch)``.

    Args:
      apply_fn: ``apply_fn(params, x_t, model_time(t), **cond)`` predicting ``prediction``.
      schedule: the path (default ``RectifiedFlow()``).
      coupling: ``"independent"`` or ``"ot"`` (exact minibatch OT).
      contrastive: weight ``lam`` of the contrastive term (0 disables it); needs ``0 <= lam < 1``.
      prediction: what the network predicts (``"velocity"`` for flow matching).
      weighting: ``None`` = plain MSE of the prediction; or an x0-scale weighting by name.
      time_sampler: ``"uniform"`` on ``[t_min, t_max]`` or ``"lognormal"`` (``log(sigma/alpha) ~
        N(p_mean, p_std^2)``, i.e. logit-normal ``t`` for rectified flow) or a callable.
    """
    schedule = RectifiedFlow() if schedule is None else schedule
    if coupling not in COUPLINGS:
        raise ValueError(f"coupling={coupling!r} must be one of {COUPLINGS}.")
    if not 0.0 <= contrastive < 1.0:
        raise ValueError(f"contrastive={contrastive} must be in [0, 1) (0.05 in Stoica et al.).")
    w = None if weighting is None else get_weighting(weighting, **weighting_options)
    return regression_loss(
        apply_fn, schedule=schedule, prediction=prediction, weighting=w,
        time_sampler=make_time_sampler(time_sampler, schedule, t_min=t_min, t_max=t_max,
                                       p_mean=p_mean, p_std=p_std),
        coupling=ot_coupling if coupling == "ot" else None, contrastive=contrastive)


def reflow_pairs(solver: Any, denoiser: BaseDenoiser, key: Array, n: int, grid: Array, *,
                 shape: tuple[int, ...], batch_size: int | None = None,
                 dtype: Any = jnp.float32, progress: bool = False) -> tuple[Array, Array]:
    """``(noise [n, *shape], data [n, *shape])`` pairs of the model's ODE map, for reflow.

    ``data_i = ODE(x_T = sigma(grid[0]) noise_i)`` integrated with any jaxdist ``solver`` over
    ``grid`` (e.g. ``jd.grids.time_uniform(schedule, 100)``). Train 2-rectified flow on them with
    ``batch = {"x": data, "noise": noise}``. Generated ``batch_size`` at a time (default all).
    """
    from ..sample import sample

    if n < 1:
        raise ValueError(f"n={n} must be positive.")
    batch_size = n if batch_size is None else int(batch_size)
    grid = jnp.asarray(grid)
    scale = denoiser.schedule.sigma(grid[0])

    @jax.jit
    def generate(k):
        noise = jax.random.normal(k, (batch_size,) + tuple(shape), dtype)
        return noise, sample(solver, denoiser, scale * noise, grid).x

    chunks = int(np.ceil(n / batch_size))
    keys = jax.random.split(key, chunks)
    it = range(chunks)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="reflow pairs")
    out = [generate(keys[i]) for i in it]
    noise = jnp.concatenate([o[0] for o in out])[:n]
    data = jnp.concatenate([o[1] for o in out])[:n]
    return noise, data
