"""Discrete-diffusion runs of the command line (``jaxdist train --objective mdlm|radd|sedd|
sedd-uniform --data digits-tokens|markov`` and ``jaxdist sample`` of such a run).

* :func:`train_discrete_run` trains :class:`jaxdist.models.DiscreteTransformer` with
  :func:`jaxdist.discrete.make_discrete_loss` through the continuous runs' loop
  (:func:`jaxdist.cli.runs.fit_run`: data parallel, Orbax checkpoints, bitwise resume,
  :class:`jaxdist.train.NonFiniteError`); the config (``kind = "discrete"``) holds everything
  :func:`build_discrete` needs to rebuild the process and the network;
* :func:`restore_discrete` restores it (read-only, non-finite parameters refused);
* :func:`sample_discrete` draws tokens with a :mod:`jaxdist.discrete` sampler and reports the
  network calls made; :func:`heldout_bits` is the held-out NELBO in bits per token.

=================  =============================  ==========================  ===============
objective          process                        network output              time input
=================  =============================  ==========================  ===============
``mdlm``           masked, linear schedule        clean logits ``[V]``        sinusoidal
``radd``           masked, linear schedule        clean logits ``[V]``        none (cached)
``sedd``           masked, log-linear schedule    log scores ``[V + 1]``      sinusoidal
``sedd-uniform``   uniform, log-linear schedule   log scores ``[V]``          sinusoidal
=================  =============================  ==========================  ===============
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..checkpoint import Checkpointer, CheckpointError
from ..data import TokenDataset, get_token_dataset
from ..train import TrainState, init_train_state
from . import settings
from .options import CLIError, did_you_mean
from .runs import check_values, fit_run, restore_finite

__all__ = ["DiscreteRun", "build_discrete", "train_discrete_run", "restore_discrete",
           "sample_discrete", "check_sampler", "heldout_bits"]


class DiscreteRun(NamedTuple):
    """A restored discrete run: ``config``, token ``dataset``, ``process``, ``apply_fn(params,
    tokens, t)``, ``prediction`` (``"logits"`` or ``"log_score"``), ``state``."""

    config: dict
    dataset: TokenDataset
    process: Any
    apply_fn: Any
    prediction: str
    state: TrainState

    @property
    def time_agnostic(self) -> bool:
        return self.config["objective"] == "radd"

    @property
    def loss_objective(self) -> str:
        """The :func:`jaxdist.discrete.nelbo` objective (``sedd-uniform`` is ``sedd``)."""
        return self.config["objective"].split("-")[0]


def _process(objective: str, vocab_size: int):
    from .. import discrete as D

    if objective == "sedd-uniform":
        return D.UniformProcess(vocab_size, schedule="loglinear")
    return D.MaskedProcess(vocab_size, schedule="loglinear" if objective == "sedd" else "linear")


def _tx(config: dict) -> optax.GradientTransformation:
    """Adam, linear warm-up to ``lr`` over ``warmup`` steps, then constant."""
    warm = int(config["warmup"])
    lr = optax.linear_schedule(0.0, config["lr"], warm) if warm > 0 else config["lr"]
    return optax.adam(lr)


def build_discrete(config: dict) -> tuple[TokenDataset, Any, Any, Any, str]:
    """``(dataset, process, apply_fn, params, prediction)`` for a discrete run config."""
    from flax import nnx

    from ..models import DiscreteTransformer, as_apply_fn

    dataset = get_token_dataset(config["data"])
    objective = config["objective"]
    process = _process(objective, dataset.vocab_size)
    score = objective.startswith("sedd")
    module = DiscreteTransformer(process.n_states,
                                 process.n_states if score else process.vocab_size,
                                 dataset.length, dim=config["hidden"], depth=config["depth"],
                                 time_conditioned=objective != "radd",
                                 rngs=nnx.Rngs(config["seed"]))
    apply_fn, params = as_apply_fn(module)
    return dataset, process, apply_fn, params, "log_score" if score else "logits"


def _check(objective: str, data: str, steps: int, save_every: int | None,
           run_settings: dict) -> None:
    if objective not in settings.DISCRETE_OBJECTIVES:
        raise ValueError(f"unknown discrete objective {objective!r}; use one of "
                         f"{settings.DISCRETE_OBJECTIVES}"
                         f"{did_you_mean(objective, settings.DISCRETE_OBJECTIVES)}")
    if data not in settings.TOKEN_DATA_NAMES:
        raise ValueError(f"unknown token data set {data!r}; use one of "
                         f"{settings.TOKEN_DATA_NAMES}{did_you_mean(data, settings.TOKEN_DATA_NAMES)}")
    check_values(steps, save_every, run_settings, settings.DISCRETE_DEFAULTS)
    warm = run_settings.get("warmup", 0)
    if not isinstance(warm, (int, np.integer)) or warm < 0:
        raise ValueError(f"warmup={warm!r} must be an integer >= 0 (steps of linear warm-up).")


def train_discrete_run(checkpoint_dir: str | Path, *, data: str = "markov",
                       objective: str = "radd", steps: int = 2000,
                       save_every: int | None = None, max_to_keep: int = 3,
                       progress: bool = True, log_every: int = 50, nonfinite: str = "error",
                       **run_settings) -> tuple[TrainState, list]:
    """Trains (or resumes) a discrete-diffusion run in ``checkpoint_dir``.

    ``run_settings`` override :data:`settings.DISCRETE_DEFAULTS` (``batch_size``, ``lr``,
    ``hidden`` (width), ``depth`` (blocks), ``ema_decay``, ``grad_clip``, ``seed``, ``warmup``).
    The loss is :func:`jaxdist.discrete.make_discrete_loss` in nats per token on batches
    ``{"tokens": [batch_size, L]}``; resume, completion and ``nonfinite`` behave as in
    :func:`jaxdist.cli.runs.train_run`.
    """
    from .. import discrete as D

    _check(objective, data, steps, save_every, run_settings)
    config = {**settings.DISCRETE_DEFAULTS, **run_settings, "kind": "discrete", "data": data,
              "objective": objective, "total_steps": steps}

    def build(config: dict):
        dataset, process, apply_fn, params, _ = build_discrete(config)
        loss = D.make_discrete_loss(objective.split("-")[0], apply_fn, process)
        config.update(vocab_size=dataset.vocab_size, length=dataset.length)
        return params, loss, _tx(config), \
            lambda k: {"tokens": dataset.sample(k, config["batch_size"])}

    return fit_run(checkpoint_dir, config, build, settings.DISCRETE_KEYS, steps=steps,
                   save_every=save_every, max_to_keep=max_to_keep, progress=progress,
                   log_every=log_every, nonfinite=nonfinite)


def restore_discrete(checkpoint_dir: str | Path, step: int | None = None) -> DiscreteRun:
    """The discrete run saved in ``checkpoint_dir`` at ``step`` (default: the newest)."""
    with Checkpointer(checkpoint_dir, read_only=True) as ckpt:
        config = ckpt.restore_config(step)
        if config.get("kind") != "discrete":
            raise CheckpointError(f"{ckpt.directory} is not a discrete-diffusion run (objective "
                                  f"{config.get('objective', config.get('method'))!r}).")
        dataset, process, apply_fn, params, prediction = build_discrete(config)
        target = init_train_state(params, _tx(config), jax.random.key(0))
        state = restore_finite(ckpt, target, step)
    return DiscreteRun(config, dataset, process, apply_fn, prediction, state)


def check_sampler(run_or_config: DiscreteRun | dict, sampler: str) -> str:
    """The ``jd.discrete.SAMPLERS`` key of the command-line name ``sampler``, or a
    :class:`CLIError` if the run's process or network cannot use it."""
    config = run_or_config.config if isinstance(run_or_config, DiscreteRun) else run_or_config
    names = settings.DISCRETE_SAMPLERS
    if sampler not in names:
        raise CLIError(f"unknown sampler {sampler!r} for a discrete run; use one of "
                       f"{tuple(names)}{did_you_mean(sampler, tuple(names))}")
    objective = config["objective"]
    if objective.startswith("sedd") and sampler not in ("tau-leaping", "analytic"):
        raise CLIError(f"--sampler {sampler} needs clean-token logits, but this {objective} run's "
                       "network returns log scores: use --sampler tau-leaping or analytic.")
    return names[sampler]


def sample_discrete(run: DiscreteRun, *, sampler: str = "first-hitting", nfe: int | None = None,
                    num: int = 64, seed: int = 0, use_ema: bool = True,
                    gamma: float | None = None) -> tuple[np.ndarray, dict]:
    """``num`` token sequences ``[num, L]`` of a restored run and an info dict (``nfe``: the
    network calls made, fewer than the steps for a cached time-agnostic ``radd`` network).

    ``nfe``: steps of the grid samplers (``ancestral``, ``tau-leaping``, ``analytic``; default
    ``L``); ``first-hitting`` and ``entropy-bounded`` choose their own (at most ``L``) and take
    none. ``gamma``: the entropy bound of ``entropy-bounded`` (default 0.1 nats)."""
    from .. import discrete as D

    key_name = check_sampler(run, sampler)
    adaptive = key_name in ("first_hitting", "entropy_bounded")
    if adaptive and nfe is not None:
        raise CLIError(f"--nfe does not apply to --sampler {sampler}: it picks its own steps (at "
                       f"most one network call per token, L = {run.dataset.length}); drop it.")
    if gamma is not None and key_name != "entropy_bounded":
        raise CLIError(f"--gamma applies to --sampler entropy-bounded only, not {sampler}.")
    if int(num) < 1:
        raise ValueError(f"num={num} must be a positive integer.")
    algo = D.SAMPLERS[key_name](**({} if gamma is None else {"gamma": float(gamma)}))
    params = run.state.ema_params if use_ema else run.state.params
    length = run.dataset.length

    def fn(x, t):
        return run.apply_fn(params, x, t)

    steps = {} if adaptive else {"n_steps": int(nfe or length)}
    tic = time.perf_counter()
    out = jax.jit(lambda k: D.sample(algo, run.process, fn, k, (int(num), length),
                                     time_agnostic=run.time_agnostic,
                                     prediction=run.prediction, **steps))(jax.random.key(seed))
    tokens = np.asarray(jax.block_until_ready(out.tokens))
    left = int(np.sum(tokens >= run.dataset.vocab_size))
    if left:
        raise ValueError(f"{left} positions of the samples are still masked ({sampler}, "
                         f"{steps.get('n_steps', 'own')} steps): use a sampler that ends at t = 0.")
    info = {"config": run.config, "step": int(run.state.step), "sampler": sampler,
            "steps": steps.get("n_steps"), "nfe": int(out.nfe),
            "seconds": time.perf_counter() - tic, "ema": use_ema}
    return tokens, info


def heldout_bits(run: DiscreteRun, n: int = 256, n_samples: int = 8, seed: int = 0,
                 use_ema: bool = True) -> tuple[float, float]:
    """The mean held-out NELBO of ``n`` sequences (``n_samples`` draws each, the run's own
    objective) and its standard error, in bits per token (``jd.discrete.nelbo``)."""
    from .. import discrete as D

    params = run.state.ema_params if use_ema else run.state.params
    tokens = jnp.asarray(run.dataset.held_out(n))

    def fn(x, t):
        return run.apply_fn(params, x, t)

    res = jax.jit(lambda x, k: D.nelbo(run.process, fn, x, k, n_samples,
                                       objective=run.loss_objective,
                                       prediction=run.prediction))(tokens, jax.random.key(seed))
    bits = np.asarray(res.bits_per_token, np.float64)
    ses = np.asarray(res.stderr, np.float64) / (tokens.shape[1] * math.log(2.0))
    se = math.sqrt(float(np.mean(ses ** 2)) / bits.size + float(bits.var()) / bits.size)
    return float(bits.mean()), se
