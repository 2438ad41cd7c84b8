r"""Denoising score matching with any target, and the regression core flow matching shares.

For data ``x0 ~ batch["x"]``, noise ``eps ~ N(0, I)``, times ``t ~ time_sampler`` and
``x_t = alpha(t) x0 + sigma(t) eps``, the network ``apply_fn(params, x_t, model_time(t))``
predicts ``P`` in ``{"eps", "x0", "v", "score", "velocity"}`` and the per-example loss is

    ``l_i = w(lambda_i) / c_P(t_i)^2 * mean_d (P_hat - P)^2 = w(lambda_i) mean_d (x0_hat - x0)^2``

(see :mod:`jaxdist.objectives.weighting`). ``prediction="edm"`` trains EDM's raw network ``F``
inside ``jd.EDMPreconditioned`` (Karras et al. 2022): ``l = w mean_d (D(x_t) - x0)^2`` with
``D = c_skip x~ + c_out F(c_in x~, log(s)/4)``; with ``weighting="edm"`` this is exactly EDM's
unit-weight loss on ``F`` (``w = 1 / c_out^2``). EDM noise levels are log-normal:
``log s ~ N(P_mean, P_std^2)`` with ``s = sigma/alpha``.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from ..denoiser import EDMPreconditioned
from ..predictions import from_x0_eps
from ..schedules import Schedule
from .weighting import Weighting, error_scale, get_weighting, target_weight

Array = jax.Array
ApplyFn = Callable[..., Array]
TimeSampler = Callable[[Array, int, Any], Array]
Coupling = Callable[[Array, Array, Array], tuple[Array, dict]]

__all__ = ["uniform_time", "lognormal_time", "constant_time", "make_time_sampler",
           "regression_loss", "make_dsm_loss", "mean_over_features"]


def uniform_time(t_min: float, t_max: float, *, antithetic: bool = False) -> TimeSampler:
    """``t ~ U[t_min, t_max]`` per example; ``antithetic`` uses the stratified
    ``u_i = (u + i / B) mod 1`` of VDM (lower variance, same expectation)."""
    if not 0.0 <= t_min < t_max:
        raise ValueError(f"need 0 <= t_min < t_max, got t_min={t_min}, t_max={t_max}.")

    def sample(key, n, dtype):
        if antithetic:
            u = jnp.mod(jax.random.uniform(key, (), dtype) + jnp.arange(n, dtype=dtype) / n, 1.0)
        else:
            u = jax.random.uniform(key, (n,), dtype)
        return t_min + (t_max - t_min) * u

    return sample


def lognormal_time(schedule: Schedule, p_mean: float = -1.2, p_std: float = 1.2) -> TimeSampler:
    """EDM's noise levels: ``log(sigma/alpha) ~ N(p_mean, p_std^2)``, mapped to the schedule's time
    by ``t = t_from_log_snr(-2 log s)`` (for ``jd.schedules.EDM``, ``t = s``)."""
    if not p_std > 0:
        raise ValueError(f"p_std={p_std} must be positive.")

    def sample(key, n, dtype):
        log_s = p_mean + p_std * jax.random.normal(key, (n,), dtype)
        return schedule.t_from_log_snr(-2.0 * log_s).astype(dtype)

    return sample


def constant_time(t: float) -> TimeSampler:
    """Every example at the same time ``t`` (tests, and one-step distillation at ``t = t_max``)."""
    return lambda key, n, dtype: jnp.full((n,), t, dtype)


def make_time_sampler(spec: str | TimeSampler, schedule: Schedule, *, t_min: float | None = None,
                      t_max: float | None = None, p_mean: float = -1.2, p_std: float = 1.2,
                      antithetic: bool = False) -> TimeSampler:
    """``"uniform"`` (in ``[t_min, t_max]``, default the schedule's range), ``"lognormal"`` (EDM)
    or a callable ``(key, n, dtype) -> t [n]``."""
    if callable(spec):
        return spec
    if spec == "uniform":
        lo = schedule.t_min if t_min is None else t_min
        hi = schedule.t_max if t_max is None else t_max
        return uniform_time(lo, hi, antithetic=antithetic)
    if spec == "lognormal":
        return lognormal_time(schedule, p_mean, p_std)
    raise ValueError(f"time_sampler={spec!r} must be 'uniform', 'lognormal' or a callable "
                     "(key, n, dtype) -> t.")


def mean_over_features(err: Array) -> Array:
    """``[B, ...] -> [B]``: the mean over every axis but the first."""
    return err.reshape(err.shape[0], -1).mean(axis=1)


def _check_batch(batch: Any) -> Array:
    if not isinstance(batch, dict) or "x" not in batch:
        keys = list(batch) if isinstance(batch, dict) else "-"
        raise ValueError("batch must be a dict with the data under 'x' ([B, ...]); got "
                         f"{type(batch).__name__} with keys {keys}.")
    x = jnp.asarray(batch["x"])
    if x.ndim < 2 or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"batch['x'] must be a floating array [B, ...], got {x.dtype}{x.shape}.")
    return x


def regression_loss(apply_fn: ApplyFn, *, schedule: Schedule, prediction: str,
                    weighting: Weighting | None, time_sampler: TimeSampler,
                    coupling: Coupling | None = None, contrastive: float = 0.0
                    ) -> Callable[[Any, Array, dict], tuple[Array, dict]]:
    """The shared core of DSM and flow matching: ``loss(params, key, batch) -> (loss, aux)``.

    ``weighting=None`` means unit weight on the model's own target (plain ``P``-MSE; the reported
    x0-scale weights are then ``c_P^2``). ``batch["noise"]`` (optional) replaces the sampled noise
    (reflow pairs); ``batch["cond"]`` (optional dict) is passed to the model as keywords.
    ``coupling(key, x0, eps) -> (eps_paired, info)`` re-pairs noise with data (minibatch OT).
    ``contrastive = lam`` subtracts ``lam * mean_d (P_hat - P~)^2`` with ``P~`` the target of
    another pair of the batch (Contrastive Flow Matching, Stoica et al. 2025).
    """

    def loss(params, key, batch):
        x0 = _check_batch(batch)
        cond = batch.get("cond", {}) or {}
        n, dtype = x0.shape[0], x0.dtype
        k_t, k_eps, k_c, k_neg = jax.random.split(key, 4)
        t = time_sampler(k_t, n, dtype)
        eps = batch["noise"] if "noise" in batch else jax.random.normal(k_eps, x0.shape, dtype)
        aux: dict[str, Array] = {}
        if coupling is not None:
            eps, info = coupling(k_c, x0, eps)
            aux.update(info)
        x_t = schedule.marginal(x0, eps, t)
        if prediction == "edm":
            fn = lambda x, c_noise, **c: apply_fn(params, x, c_noise, **c)  # noqa: E731
            out, _ = EDMPreconditioned(fn, schedule)(x_t, t, **cond)
            target, kind = x0, "x0"
        else:
            out = apply_fn(params, x_t, schedule.model_time(t), **cond)
            target, kind = from_x0_eps(x0, eps, x_t, t, schedule, prediction), prediction
        if out.shape != x0.shape:
            raise ValueError(f"apply_fn returned shape {out.shape} for x of shape {x0.shape}.")
        err = mean_over_features((out - target) ** 2)
        if weighting is None:
            w, wt = error_scale(kind, schedule, t), jnp.ones_like(t)
        else:
            w, wt = target_weight(weighting, kind, schedule, t)
        per_example = wt * err
        if contrastive:
            shift = jax.random.randint(k_neg, (), 1, max(n, 2))
            neg = from_x0_eps(jnp.roll(x0, shift, 0), jnp.roll(eps, shift, 0), x_t, t, schedule,
                              kind)
            per_example = per_example - contrastive * wt * mean_over_features((out - neg) ** 2)
            aux["contrastive"] = jnp.mean(wt * mean_over_features((out - neg) ** 2))
        aux.update({"per_example": per_example, "weights": w, "t": t,
                    "log_snr": schedule.log_snr(t)})
        return jnp.mean(per_example), aux

    return loss


def make_dsm_loss(apply_fn: ApplyFn, *, schedule: Schedule, prediction: str = "eps",
                  weighting: str | Weighting = "snr", time_sampler: str | TimeSampler = "uniform",
                  t_min: float | None = None, t_max: float | None = None, p_mean: float = -1.2,
                  p_std: float = 1.2, antithetic: bool = False, **weighting_options):
    """Denoising score matching ``loss(params, key, batch)`` (see the module docstring).

    Args:
      apply_fn: ``apply_fn(params, x_t, model_time(t), **cond) -> [B, ...]``.
      schedule: the noising schedule.
      prediction: ``"eps"``, ``"x0"``, ``"v"``, ``"score"``, ``"velocity"`` or ``"edm"``.
      weighting: a name in ``weighting.WEIGHTINGS`` (x0-scale) or a ``Weighting``;
        ``weighting_options`` (``gamma``, ``sigma_data``, ``bias``) go to its factory.
      time_sampler: ``"uniform"`` in ``[t_min, t_max]``, ``"lognormal"`` (``p_mean``, ``p_std``)
        or a callable ``(key, n, dtype) -> t``.
    """
    from ..predictions import check_prediction

    if prediction != "edm":
        check_prediction(prediction)
    return regression_loss(
        apply_fn, schedule=schedule, prediction=prediction,
        weighting=get_weighting(weighting, **weighting_options),
        time_sampler=make_time_sampler(time_sampler, schedule, t_min=t_min, t_max=t_max,
                                       p_mean=p_mean, p_std=p_std, antithetic=antithetic))


