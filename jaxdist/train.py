"""Training: a train state of arrays only, a jitted optax step with EMA, and a ``fit`` loop.

``TrainState(step, params, opt_state, ema_params, key)`` holds only arrays (the PRNG key as
``jax.random.key_data``), so Orbax saves it and ``jax.sharding`` places it. One step is

    k      = fold_in(wrap_key_data(key), step)                  (deterministic per step)
    (l, a) = loss(params, k, batch | {"step": step})
    g      = clip_by_global_norm(grad l, grad_clip)
    params, opt_state = optax update
    ema    = decay * ema + (1 - decay) * params

so a run resumed from a checkpoint at step ``s`` draws exactly the keys it would have drawn.

Nothing non-finite is applied or saved: when the loss, the gradient or the update is not finite
the step keeps the previous parameters, optimiser state and EMA (only ``step`` advances) and
reports ``finite = 0``. ``fit`` then stops with :class:`NonFiniteError` naming the step (the
default, ``nonfinite="error"``), before any later checkpoint is written, or counts the skipped
updates (``nonfinite="skip"``) and stops only when ``max_skips`` updates in a row were skipped.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterable, NamedTuple

import jax
import jax.numpy as jnp
import optax

Array = jax.Array
PyTree = Any
LossFn = Callable[[PyTree, Array, dict], tuple[Array, Any]]
StepFn = Callable[["TrainState", dict], tuple["TrainState", dict]]

__all__ = ["TrainState", "init_train_state", "make_train_step", "fit", "ema_update", "step_key",
           "NonFiniteError", "NONFINITE"]

#: what a train step does with a non-finite loss or update (see the module docstring)
NONFINITE = ("error", "skip", "ignore")


class NonFiniteError(FloatingPointError):
    """Training met a non-finite loss or update (``step``: the first such training step)."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


class TrainState(NamedTuple):
    """Arrays only: ``step`` (int32 scalar), ``params``, ``opt_state``, ``ema_params`` and the base
    ``key`` as raw ``uint32`` key data."""

    step: Array
    params: PyTree
    opt_state: PyTree
    ema_params: PyTree
    key: Array


def init_train_state(params: PyTree, tx: optax.GradientTransformation, key: Array) -> TrainState:
    """A fresh state at step 0; ``key`` is a typed key (``jax.random.key``) or raw key data."""
    if not isinstance(tx, optax.GradientTransformation):
        raise TypeError(f"tx must be an optax.GradientTransformation, got {type(tx).__name__}.")
    key = jnp.asarray(key)
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    params = jax.tree.map(jnp.asarray, params)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        ema_params=jax.tree.map(jnp.copy, params),
        key=key,
    )


def step_key(state: TrainState) -> Array:
    """The key of the current step: ``fold_in(wrap_key_data(state.key), state.step)``."""
    return jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)


def ema_update(ema: PyTree, params: PyTree, decay: float | Array) -> PyTree:
    """``ema <- decay * ema + (1 - decay) * params`` leafwise, in the dtype of ``ema``."""
    return jax.tree.map(lambda e, p: (decay * e + (1.0 - decay) * p).astype(e.dtype), ema, params)


def make_train_step(loss_fn: LossFn, tx: optax.GradientTransformation, ema_decay: float = 0.999,
                    grad_clip: float | None = 1.0, *, pass_ema: bool = False,
                    jit: bool = True, donate: bool = True, nonfinite: str = "error") -> StepFn:
    """Builds ``step(state, batch) -> (state, metrics)``.

    Args:
      loss_fn: ``loss(params, key, batch) -> (scalar, aux)``; ``batch`` gains ``"step"`` (and
        ``"ema_params"`` with ``pass_ema=True``, for objectives that use an EMA target).
      tx: the optax optimiser.
      ema_decay: EMA decay in ``[0, 1)``; 0 copies the parameters.
      grad_clip: global-norm clipping threshold, or ``None`` for no clipping.
      pass_ema: add ``state.ema_params`` to the batch (stop-gradient target networks).
      jit: compile the step (``jax.jit`` with the state donated).
      donate: donate the input state's buffers (the caller must not reuse the old state).
      nonfinite: ``"error"`` or ``"skip"``: a non-finite loss, gradient or update is not
        applied (the step keeps the previous parameters) and ``metrics["finite"]`` is 0;
        :func:`fit` stops (``"error"``) or goes on (``"skip"``). ``"ignore"``: no check (the
        update is applied whatever it is).

    Returns:
      The step, with its ``nonfinite`` setting as an attribute. ``metrics`` holds ``loss``,
      ``grad_norm``, ``finite`` (unless ``"ignore"``) and the scalar entries of ``aux``.
    """
    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"ema_decay={ema_decay} must be in [0, 1) (e.g. 0.999).")
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"grad_clip={grad_clip} must be positive, or None to disable clipping.")
    if nonfinite not in NONFINITE:
        raise ValueError(f"nonfinite={nonfinite!r} must be one of {NONFINITE}.")

    def step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        batch = dict(batch, step=state.step)
        if pass_ema:
            batch["ema_params"] = state.ema_params
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, step_key(state), batch)
        grad_norm = optax.tree.norm(grads)
        if grad_clip is not None:
            scale = jnp.minimum(1.0, grad_clip / (grad_norm + 1e-12))
            grads = jax.tree.map(lambda g: g * scale.astype(g.dtype), grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new = TrainState(state.step + 1, params, opt_state,
                         ema_update(state.ema_params, params, ema_decay), state.key)
        metrics = {"loss": loss, "grad_norm": grad_norm}
        if nonfinite != "ignore":
            finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & \
                jnp.isfinite(optax.tree.norm(updates))
            kept = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new[1:4], state[1:4])
            new = TrainState(new.step, *kept, new.key)
            metrics["finite"] = finite.astype(jnp.float32)
        if isinstance(aux, dict):
            metrics.update({k: v for k, v in aux.items() if jnp.ndim(v) == 0})
        return new, metrics

    out = step if not jit else jax.jit(step, donate_argnums=(0,) if donate else ())
    out.nonfinite = nonfinite  # type: ignore[attr-defined]  # read by fit
    return out


def fit(state: TrainState, step_fn: StepFn, batch_fn: Callable[[int], dict], num_steps: int, *,
        checkpointer: Any = None, config: dict | None = None, log_every: int = 50,
        progress: bool = True, callbacks: Iterable[Callable[[int, dict], None]] = (),
        max_skips: int = 100) -> tuple[TrainState, list[dict]]:
    """Runs ``step_fn`` from ``state.step`` up to ``num_steps`` (total, not additional).

    Args:
      state: the starting state (fresh or restored).
      step_fn: from :func:`make_train_step` (or its sharded version).
      batch_fn: ``step -> batch``; must depend only on the step so resumed runs see the same data.
      num_steps: the final step count.
      checkpointer: a :class:`jaxdist.checkpoint.Checkpointer` (saves every ``save_every`` steps
        and at the end, then waits for the last async save).
      config: JSON-able configuration saved beside the state.
      log_every: steps between entries of the returned history (and progress-bar updates).
      progress: show a tqdm bar with the loss and steps/s.
      callbacks: called as ``cb(step, metrics)`` on each logged step.
      max_skips: with ``step_fn.nonfinite == "skip"``, stop after this many skipped updates in
        a row.

    Returns:
      ``(state, history)``; ``history`` is a list of ``{"step", "loss", "steps_per_s", ...}``
      (with ``"skipped"``: updates skipped so far, when ``nonfinite="skip"``).

    Raises:
      NonFiniteError: a non-finite loss or update (``nonfinite="error"``, the default; also
        for a step function without the setting) or too many skipped in a row. The flags are
        read at each logged step and before each save, so no host sync is added per step and
        nothing is saved after the first bad step.
    """
    from tqdm.auto import tqdm

    start = int(state.step)
    if num_steps < start:
        raise ValueError(f"num_steps={num_steps} is below the state's step {start}; pass the total "
                         "number of steps (it counts from 0, including restored steps).")
    guard = _Divergence(getattr(step_fn, "nonfinite", "error"), max_skips, num_steps)
    history: list[dict] = []
    bar = tqdm(total=num_steps, initial=start, desc="train", disable=not progress,
               dynamic_ncols=True, leave=False)
    tic, last = time.perf_counter(), start
    try:
        for step in range(start, num_steps):
            state, metrics = step_fn(state, batch_fn(step))
            done = step + 1
            guard.record(done, metrics)
            if done % log_every == 0 or done == num_steps:
                guard.check()
                metrics = {k: float(v) for k, v in metrics.items()}
                now = time.perf_counter()
                metrics.update(step=done, steps_per_s=(done - last) / max(now - tic, 1e-9))
                if guard.mode == "skip":
                    metrics["skipped"] = guard.skipped
                tic, last = now, done
                history.append(metrics)
                bar.set_postfix(loss=f"{metrics['loss']:.4f}",
                                it_s=f"{metrics['steps_per_s']:.0f}")
                for cb in callbacks:
                    cb(done, metrics)
            bar.update(1)
            if checkpointer is not None and checkpointer.is_save_step(done, done == num_steps):
                guard.check()  # never save after a non-finite step
                if checkpointer.save(done, state, config=config, force=done == num_steps):
                    guard.saved = done
        if checkpointer is not None:
            checkpointer.wait()
    finally:
        bar.close()
    return state, history


class _Divergence:
    """Collects the steps' ``finite`` flags (device scalars) and reads them in one transfer at
    :meth:`check`, raising :class:`NonFiniteError` as the ``mode`` says."""

    def __init__(self, mode: str, max_skips: int, num_steps: int):
        self.mode, self.max_skips, self.num_steps = mode, max_skips, num_steps
        self.pending: list[tuple[int, Any, Any]] = []
        self.skipped = self.streak = 0
        self.saved: int | None = None

    def record(self, done: int, metrics: dict) -> None:
        if self.mode == "ignore":
            return
        self.pending.append((done, metrics.get("finite"), metrics["loss"]))

    def check(self) -> None:
        pending, self.pending = self.pending, []
        if not pending:
            return
        flags = jax.device_get([(f, loss) for _, f, loss in pending])
        for (done, _, _), (flag, loss) in zip(pending, flags):
            ok = bool(flag) if flag is not None else math.isfinite(float(loss))
            if ok:
                self.streak = 0
                continue
            if self.mode == "skip" and self.streak + 1 < self.max_skips:
                self.skipped += 1
                self.streak += 1
                continue
            raise NonFiniteError(self._message(done, float(loss)), done)

    def _message(self, done: int, loss: float) -> str:
        what = (f"the loss is {loss}" if not math.isfinite(loss)
                else "the gradient or update is not finite")
        newest = f" (the newest checkpoint is step {self.saved})" if self.saved else ""
        if self.mode == "skip":
            return (f"training diverged: {self.max_skips} updates in a row were not finite, up to "
                    f"training step {done} of {self.num_steps} ({what}); nothing from those steps "
                    f"was saved{newest}. Lower the learning rate.")
        return (f"training stopped at step {done} of {self.num_steps}: {what}. The update was not "
                f"applied and nothing from step {done} on was saved{newest}. Lower the learning "
                "rate, or skip such updates (make_train_step(..., nonfinite='skip'); "
                "jaxdist train --skip-nonfinite).")
