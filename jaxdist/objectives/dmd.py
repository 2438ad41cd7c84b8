r"""Distribution matching distillation: DMD, DMD2, f-distill and VSD as one pair of losses.

A **generator** ``G`` maps noise to samples in one step, or in ``K`` steps on a fixed grid
``tau_0 > ... > tau_{K-1}`` of the teacher's schedule (each step predicts ``x0`` and renoises it
to the next time with fresh noise, DMD2's multi-step sampler). Two losses train it:

* the **generator loss** (:func:`make_generator_loss`): the score difference
  ``g = w h (x0_fake - x0_real)`` at noised generator samples through the surrogate of
  :mod:`.score_distillation` (``w``: DMD2's normaliser ``1 / mean |x - x0_real|`` by default;
  ``h``: the f-divergence weight of the discriminator's density-ratio estimate), plus
  ``gan_weight * softplus(-logit(x_t))`` (DMD2's non-saturating GAN term on the discriminator
  head) and ``regression_weight * mean_d (G(noise) - y)^2`` on teacher ODE pairs
  ``(noise, y)`` (DMD; pairs from :func:`jaxdist.objectives.reflow_pairs`);
* the **critic loss** (:func:`make_critic_loss`) of the fake score and the discriminator: DSM of
  the fake score on ``stopgrad(G(z))`` and, with a discriminator, the logistic loss
  ``softplus(logit(fake_t)) + softplus(-logit(real_t))`` against noised data. Its optimal logit
  is ``log p_t / q_t``, the log density ratio f-distill needs.

Multi-step generators train on **backward-simulated** inputs (DMD2): per example a step
``k ~ U{0..K-1}`` is drawn, the generator itself (frozen) runs ``k`` steps from noise, and the
gradient flows through step ``k`` only; ``backward_simulation=False`` noises ``batch["x"]`` to
``tau_k`` instead. The two-time-scale rule (``n_critic`` critic updates per generator update,
separate optimiser states) is :func:`jaxdist.distill.make_distill_step`.

Method presets (:data:`METHODS`): ``dmd`` = reverse KL + regression, ``dmd2`` = reverse KL +
GAN, ``f-distill`` = f-divergence weight + GAN, ``vsd`` = reverse KL with ``w = alpha^2 /
sigma^2`` and nothing else.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..denoiser import BaseDenoiser
from ..schedules import Schedule, expand_to
from .dsm import ApplyFn, TimeSampler, make_dsm_loss, mean_over_features
from .score_distillation import (FDivergence, f_weight, get_divergence, karras_time,
                                 score_difference, surrogate)

Array = jax.Array
DenoiserFn = Callable[[Any], BaseDenoiser]
LogitFn = Callable[[Any, Any, Array, Array], Array]

__all__ = ["METHODS", "Generator", "make_generator_loss", "make_critic_loss",
           "feature_discriminator", "mlp_head_init", "mlp_head_apply"]

#: preset options of :func:`make_generator_loss` by method name
METHODS: dict[str, dict[str, Any]] = {
    "dmd": {"divergence": "reverse-kl", "weighting": "dmd", "gan_weight": 0.0,
            "regression_weight": 0.25},
    "dmd2": {"divergence": "reverse-kl", "weighting": "dmd", "gan_weight": 3e-3,
             "regression_weight": 0.0},
    "f-distill": {"divergence": "js", "weighting": "dmd", "gan_weight": 3e-3,
                  "regression_weight": 0.0},
    "vsd": {"divergence": "reverse-kl", "weighting": "kl", "gan_weight": 0.0,
            "regression_weight": 0.0},
}


class Generator:
    """A ``K``-step generator on ``grid`` (``K + 1`` decreasing times of ``schedule``; the last,
    where the teacher's sampler would stop, is not used): ``denoiser(params)`` is the network as
    a jaxdist denoiser (typically the teacher's architecture, initialised from its weights)."""

    def __init__(self, denoiser: DenoiserFn, grid: Sequence[float] | Array, *,
                 backward_simulation: bool = True):
        if not isinstance(grid, jax.core.Tracer):
            g = np.asarray(grid)
            if g.ndim != 1 or g.shape[0] < 2 or not np.all(np.diff(g) < 0):
                raise ValueError("grid must be a decreasing 1-D array of at least 2 times (K + 1 "
                                 "for a K-step generator), e.g. the teacher's sampling grid.")
        self.denoiser, self.grid = denoiser, jnp.asarray(grid)
        self.steps = int(grid.shape[0]) - 1
        self.backward_simulation = backward_simulation

    def _x0(self, params, x: Array, t: Array, cond: dict) -> Array:
        return self.denoiser(params)(x, t, **cond)[0]

    def sample(self, params: Any, key: Array, shape: Sequence[int], steps: int | None = None,
               cond: dict | None = None) -> Array:
        """``steps`` (default ``K``) generator steps from ``x = sigma(tau_0) z``: ``x0 = G(x,
        tau_k)``, then ``x = alpha(tau_{k+1}) x0 + sigma(tau_{k+1}) z_k``."""
        steps = self.steps if steps is None else int(steps)
        if not 1 <= steps <= self.steps:
            raise ValueError(f"steps={steps} must be in 1..{self.steps} (the generator was "
                             f"trained for {self.steps} steps).")
        cond = cond or {}
        sch = self.denoiser(params).schedule
        keys = jax.random.split(key, steps)
        x = sch.sigma(self.grid[0]) * jax.random.normal(keys[0], tuple(shape))
        x0 = self._x0(params, x, self.grid[0], cond)
        for k in range(1, steps):
            z = jax.random.normal(keys[k], x0.shape, x0.dtype)
            x0 = self._x0(params, sch.alpha(self.grid[k]) * x0 + sch.sigma(self.grid[k]) * z,
                          self.grid[k], cond)
        return x0

    def train_sample(self, params: Any, key: Array, n: int, shape: Sequence[int],
                     data: Array | None = None, cond: dict | None = None) -> Array:
        """``[n, *shape]`` samples whose gradient flows through one generator step (the step
        ``k`` drawn per example; backward simulation runs the first ``k`` steps frozen)."""
        cond = cond or {}
        sch = self.denoiser(params).schedule
        k_step, k_z, k_sim = jax.random.split(key, 3)
        full = (n,) + tuple(shape)
        k = jax.random.randint(k_step, (n,), 0, self.steps)
        tau = self.grid[k]
        if self.steps == 1:
            x = sch.sigma(self.grid[0]) * jax.random.normal(k_z, full)
        elif self.backward_simulation:
            frozen = jax.lax.stop_gradient(params)
            sims = jax.random.split(k_sim, self.steps)
            x = sch.sigma(self.grid[0]) * jax.random.normal(k_z, full)
            for i in range(self.steps - 1):  # the state reaches tau_i after i steps
                x0 = self._x0(frozen, x, self.grid[i], cond)
                z = jax.random.normal(sims[i], full, x0.dtype)
                nxt = sch.alpha(self.grid[i + 1]) * x0 + sch.sigma(self.grid[i + 1]) * z
                x = jnp.where(expand_to(i < k, x), nxt, x)
            x = jax.lax.stop_gradient(x)
        else:
            if data is None:
                raise ValueError("backward_simulation=False noises real data to the generator's "
                                 "times: pass batch['x'] (or use backward simulation).")
            x = sch.marginal(data, jax.random.normal(k_z, data.shape, data.dtype), tau)
        return self._x0(params, x, tau, cond)


def _cond(batch: dict) -> dict:
    return batch.get("cond") or {}


def make_generator_loss(generator: Generator, teacher: BaseDenoiser, fake: DenoiserFn | None,
                        *, sample_shape: Sequence[int], batch_size: int,
                        divergence: str | FDivergence = "reverse-kl",
                        weighting: str | Callable = "dmd", time_sampler: TimeSampler | None = None,
                        gan_weight: float = 0.0, regression_weight: float = 0.0,
                        logit_fn: LogitFn | None = None,
                        log_ratio_fn: Callable[[Array, Array], Array] | None = None,
                        ratio_clip: tuple[float, float] | None = (0.1, 20.0),
                        normalize_h: bool = True
                        ) -> Callable[[Any, Array, dict], tuple[Array, dict]]:
    """The generator's ``loss(gen_params, key, batch)``.

    ``batch`` holds ``"fake_params"`` (the fake score's), ``"disc_params"`` (with a
    discriminator), ``"noise"``/``"target"`` (regression pairs ``[B, ...]``), ``"x"`` (data, for
    ``backward_simulation=False``) and ``"cond"``.

    Args:
      generator: the :class:`Generator`.
      teacher: the frozen real score (any jaxdist denoiser).
      fake: ``fake_params -> denoiser`` (the fake score); ``None`` for SDS-style ``x0_fake = x``.
      sample_shape, batch_size: the shape of one sample and the generator batch.
      divergence: f-divergence for ``h`` (``"reverse-kl"``: ``h = 1``, DMD).
      weighting: ``"dmd"``, ``"kl"``, ``"sds"`` or a callable (see :mod:`.score_distillation`).
      time_sampler: times of the score difference (default :func:`karras_time` on
        ``u in [0.02, 0.98]``).
      gan_weight: weight of ``softplus(-logit)`` (needs ``logit_fn``).
      regression_weight: weight of the regression on ``batch["noise"]``, ``batch["target"]``.
      logit_fn: ``logit_fn(fake_params, disc_params, x_t, t) -> [B]`` (see
        :func:`feature_discriminator`).
      log_ratio_fn: ``(x_t, t) -> log r [B]`` replacing the discriminator's estimate (e.g. an
        exact ratio in tests).
      ratio_clip, normalize_h: f-distill's clipping of ``r`` and normalisation of ``h``.
    """
    div = get_divergence(divergence)
    needs_ratio = div.name != "reverse-kl"
    if (gan_weight > 0 or (needs_ratio and log_ratio_fn is None)) and logit_fn is None:
        what = "the GAN term (gan_weight > 0)" if gan_weight > 0 else \
            f"the {div.name} weight h(r) (a density ratio)"
        raise ValueError(f"{what} needs a discriminator: pass logit_fn (e.g. "
                         "jd.objectives.dmd.feature_discriminator(...)), or log_ratio_fn for "
                         "the ratio, or use divergence='reverse-kl' with gan_weight=0.")
    if gan_weight < 0 or regression_weight < 0:
        raise ValueError(f"gan_weight={gan_weight} and regression_weight={regression_weight} "
                         "must be >= 0.")
    sampler = time_sampler or karras_time(teacher.schedule, u_min=0.02, u_max=0.98)
    schedule = teacher.schedule

    def loss(gen_params, key, batch):
        k_g, k_t, k_e = jax.random.split(key, 3)
        cond = _cond(batch)
        x = generator.train_sample(gen_params, k_g, batch_size, sample_shape, batch.get("x"),
                                   cond)
        t = sampler(k_t, batch_size, x.dtype)
        x_t = schedule.marginal(x, jax.random.normal(k_e, x.shape, x.dtype), t)
        aux: dict[str, Array] = {}
        h = None
        if needs_ratio:
            log_r = (log_ratio_fn(jax.lax.stop_gradient(x_t), t) if log_ratio_fn is not None else
                     logit_fn(batch["fake_params"], batch["disc_params"],
                              jax.lax.stop_gradient(x_t), t))
            h = f_weight(div, log_r, ratio_clip=ratio_clip, normalize=normalize_h)
            aux["h_max"] = jnp.max(h)
        fake_den = None if fake is None else fake(jax.lax.stop_gradient(batch["fake_params"]))
        g, info = score_difference(x, x_t, t, teacher, fake_den, weighting, h, **cond)
        per_example = surrogate(x, g)
        aux.update({"dm_loss": jnp.mean(per_example), "grad_rms": info["grad_rms"]})
        if gan_weight > 0:
            logits = logit_fn(jax.lax.stop_gradient(batch["fake_params"]),
                              jax.lax.stop_gradient(batch["disc_params"]), x_t, t)
            gan = jax.nn.softplus(-logits)
            per_example = per_example + gan_weight * gan
            aux["gan_loss"] = jnp.mean(gan)
        if regression_weight > 0:
            noise, target = batch["noise"], batch["target"]
            pred = generator.denoiser(gen_params)(
                schedule.sigma(generator.grid[0]) * noise, generator.grid[0], **cond)[0]
            reg = mean_over_features((pred - target) ** 2)
            aux["regression_loss"] = jnp.mean(reg)
            total = jnp.mean(per_example) + regression_weight * jnp.mean(reg)
        else:
            total = jnp.mean(per_example)
        aux.update({"per_example": per_example, "t": t, "weights": info["weights"]})
        return total, aux

    return loss


def make_critic_loss(generator: Generator, fake_apply: ApplyFn, *, schedule: Schedule,
                     prediction: str, sample_shape: Sequence[int], batch_size: int,
                     weighting: str = "edm", time_sampler: TimeSampler | None = None,
                     logit_fn: LogitFn | None = None, gan_time_sampler: TimeSampler | None = None,
                     **weighting_options) -> Callable[[dict, Array, dict], tuple[Array, dict]]:
    """The critic's ``loss({"fake": ..., "disc": ...}, key, batch)``: DSM of the fake score on
    ``stopgrad(G(z))`` (``batch["gen_params"]``) plus, with ``logit_fn``, the discriminator's
    logistic loss against ``batch["x"]`` (real data), both noised at times of
    ``gan_time_sampler`` (default: the DSM times) with fresh noise.

    ``fake_apply`` / ``prediction`` / ``schedule``: the fake-score network as in
    :func:`jaxdist.objectives.make_dsm_loss` (``prediction="edm"`` for EDM's raw ``F``);
    ``weighting`` its x0-scale weighting (``"edm"``: DMD2's ``1/sigma^2 + 1/sigma_d^2``).
    DSM times default to :func:`karras_time` over the whole range.
    """
    sampler = time_sampler or karras_time(schedule)
    if weighting == "edm":
        weighting_options.setdefault("sigma_data", getattr(schedule, "sigma_data", 0.5))
    dsm = make_dsm_loss(fake_apply, schedule=schedule, prediction=prediction,
                        weighting=weighting, time_sampler=sampler, **weighting_options)
    gan_sampler = gan_time_sampler or sampler

    def loss(critic, key, batch):
        k_g, k_d, k_f, k_r, k_tf, k_tr = jax.random.split(key, 6)
        cond = _cond(batch)
        x = jax.lax.stop_gradient(generator.train_sample(
            jax.lax.stop_gradient(batch["gen_params"]), k_g, batch_size, sample_shape,
            batch.get("x"), cond))
        fake_batch = {"x": x, "cond": cond} if cond else {"x": x}
        dsm_loss, dsm_aux = dsm(critic["fake"], k_d, fake_batch)
        aux = {"fake_loss": dsm_loss}
        total = dsm_loss
        if logit_fn is not None:
            if "x" not in batch:
                raise ValueError("the discriminator needs real data: pass batch['x'].")
            real = batch["x"]
            t_f = gan_sampler(k_tf, x.shape[0], x.dtype)
            t_r = gan_sampler(k_tr, real.shape[0], real.dtype)
            x_f = schedule.marginal(x, jax.random.normal(k_f, x.shape, x.dtype), t_f)
            x_r = schedule.marginal(real, jax.random.normal(k_r, real.shape, real.dtype), t_r)
            l_f = logit_fn(critic["fake"], critic["disc"], x_f, t_f)
            l_r = logit_fn(critic["fake"], critic["disc"], x_r, t_r)
            disc = jnp.mean(jax.nn.softplus(l_f)) + jnp.mean(jax.nn.softplus(-l_r))
            total = total + disc
            aux.update({"disc_loss": disc, "p_real_on_real": jnp.mean(jax.nn.sigmoid(l_r)),
                        "p_real_on_fake": jnp.mean(jax.nn.sigmoid(l_f))})
        aux["per_example"] = dsm_aux["per_example"]
        return total, aux

    return loss


def feature_discriminator(features_fn: Callable[[Any, Array, Array], Array],
                          head_apply: Callable[[Any, Array], Array] | None = None) -> LogitFn:
    """``logit_fn(fake_params, disc_params, x_t, t) = head(disc_params, features(fake_params,
    x_t, t))``: a discriminator head on the fake score's features (DMD2). ``head_apply``
    defaults to :func:`mlp_head_apply`; ``features_fn`` is e.g.
    :func:`jaxdist.distill.mlp_features` of the fake score's MLP."""
    head = head_apply or mlp_head_apply

    def logit_fn(fake_params, disc_params, x_t, t):
        return head(disc_params, features_fn(fake_params, x_t, t))

    return logit_fn


def mlp_head_init(key: Array, features: int, hidden: int = 128, dtype: Any = jnp.float32) -> dict:
    """Parameters of :func:`mlp_head_apply`: ``features -> hidden -> 1`` (last layer zero, so
    the head starts at logit 0, ``r = 1``)."""
    k1, _ = jax.random.split(key)
    return {"w1": jax.random.normal(k1, (features, hidden), dtype) / jnp.sqrt(features),
            "b1": jnp.zeros((hidden,), dtype), "w2": jnp.zeros((hidden,), dtype),
            "b2": jnp.zeros((), dtype)}


def mlp_head_apply(params: dict, features: Array) -> Array:
    """``logit = w2 . silu(features w1 + b1) + b2``, ``[B, F] -> [B]``."""
    return jax.nn.silu(features @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]
