"""The multi-network distillation state and its two-time-scale train step.

``DistillState`` holds, as arrays only (Orbax saves it; :func:`jaxdist.parallel.replicate`
places it on the data mesh): the step, the generator's parameters, optimiser state and EMA, the
fake score's parameters and optimiser state, the discriminator's parameters and optimiser state
(empty containers without one) and the base key as raw key data. One step is

    k             = fold_in(wrap_key_data(key), step)
    repeat n_critic times (lax.scan, key k_c[i]):
        (l_c, a_c) = critic_loss({"fake", "disc"}, k_c[i], batch | {"gen_params": gen})
        fake, disc <- their own optax updates of the clipped gradients
    (l_g, a_g)    = generator_loss(gen, k_g, batch | {"fake_params", "disc_params"})
    gen <- optax update;  gen_ema <- decay gen_ema + (1 - decay) gen

so the critic tracks the generator's distribution (DMD2's two-time-scale rule) and a run
resumed from a checkpoint at step ``s`` draws exactly the keys it would have drawn.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ..train import LossFn, ema_update, step_key

Array = jax.Array
PyTree = Any

__all__ = ["DistillState", "init_distill_state", "make_distill_step"]


class DistillState(NamedTuple):
    """Arrays only: every network of a distillation run and its optimiser state."""

    step: Array
    gen_params: PyTree
    gen_opt_state: PyTree
    gen_ema: PyTree
    fake_params: PyTree
    fake_opt_state: PyTree
    disc_params: PyTree
    disc_opt_state: PyTree
    key: Array


def _check_tx(name: str, tx: Any) -> None:
    if not isinstance(tx, optax.GradientTransformation):
        raise TypeError(f"{name} must be an optax.GradientTransformation, got "
                        f"{type(tx).__name__}.")


def init_distill_state(gen_params: PyTree, fake_params: PyTree, key: Array, *,
                       gen_tx: optax.GradientTransformation,
                       fake_tx: optax.GradientTransformation, disc_params: PyTree = None,
                       disc_tx: optax.GradientTransformation | None = None) -> DistillState:
    """A fresh state at step 0 (``disc_params=None``: no discriminator, empty containers)."""
    _check_tx("gen_tx", gen_tx)
    _check_tx("fake_tx", fake_tx)
    if disc_params is not None:
        _check_tx("disc_tx", disc_tx)
    key = jnp.asarray(key)
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    gen = jax.tree.map(jnp.asarray, gen_params)
    fake = jax.tree.map(jnp.copy, fake_params)  # never aliases gen (donated buffers)
    disc = {} if disc_params is None else jax.tree.map(jnp.asarray, disc_params)
    disc_opt = {} if disc_params is None else disc_tx.init(disc)
    return DistillState(jnp.zeros((), jnp.int32), gen, gen_tx.init(gen),
                        jax.tree.map(jnp.copy, gen), fake, fake_tx.init(fake), disc, disc_opt, key)


def _clip(grads: PyTree, grad_clip: float | None) -> tuple[PyTree, Array]:
    norm = optax.tree.norm(grads)
    if grad_clip is None:
        return grads, norm
    scale = jnp.minimum(1.0, grad_clip / (norm + 1e-12))
    return jax.tree.map(lambda g: g * scale.astype(g.dtype), grads), norm


def _scalars(aux: Any, prefix: str = "") -> dict:
    if not isinstance(aux, dict):
        return {}
    return {prefix + k: v for k, v in aux.items() if jnp.ndim(v) == 0}


def make_distill_step(generator_loss: LossFn, critic_loss: LossFn, *,
                      gen_tx: optax.GradientTransformation,
                      fake_tx: optax.GradientTransformation,
                      disc_tx: optax.GradientTransformation | None = None, n_critic: int = 1,
                      ema_decay: float = 0.999, grad_clip: float | None = 1.0, jit: bool = True,
                      donate: bool = True
                      ) -> Callable[[DistillState, dict], tuple[DistillState, dict]]:
    """Builds ``step(state, batch) -> (state, metrics)`` (the module docstring's update).

    Args:
      generator_loss: ``loss(gen_params, key, batch)``; ``batch`` gains ``fake_params``,
        ``disc_params`` and ``step``.
      critic_loss: ``loss({"fake": ..., "disc": ...}, key, batch)``; ``batch`` gains
        ``gen_params`` and ``step``.
      gen_tx, fake_tx, disc_tx: the three optimisers (``disc_tx`` with a discriminator).
      n_critic: critic updates per generator update (``>= 1``; DMD2 uses 5).
      ema_decay: decay of the generator's EMA, in ``[0, 1)``.
      grad_clip: global-norm clipping of each network's gradient (``None``: none).
      jit, donate: compile the step, donating the input state.

    ``metrics``: ``loss`` (generator), ``grad_norm``, ``critic_loss``, ``critic_grad_norm`` and
    the scalar entries of both auxes (the critic's prefixed ``critic_``, from its last update).
    """
    if not isinstance(n_critic, int) or n_critic < 1:
        raise ValueError(f"n_critic={n_critic} must be an integer >= 1 (critic updates per "
                         "generator update; DMD2 uses 5).")
    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"ema_decay={ema_decay} must be in [0, 1).")
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"grad_clip={grad_clip} must be positive, or None.")
    _check_tx("gen_tx", gen_tx)
    _check_tx("fake_tx", fake_tx)

    def step(state: DistillState, batch: dict) -> tuple[DistillState, dict]:
        has_disc = bool(jax.tree.leaves(state.disc_params))
        if has_disc and disc_tx is None:
            raise ValueError("the state has a discriminator: pass disc_tx to make_distill_step.")
        k = step_key(state)
        k_critic, k_gen = jax.random.split(k)
        critic_batch = dict(batch, step=state.step, gen_params=state.gen_params)

        def critic_update(carry, key):
            fake, fake_opt, disc, disc_opt = carry
            (c_loss, c_aux), grads = jax.value_and_grad(critic_loss, has_aux=True)(
                {"fake": fake, "disc": disc}, key, critic_batch)
            grads, norm = _clip(grads, grad_clip)
            upd, fake_opt = fake_tx.update(grads["fake"], fake_opt, fake)
            fake = optax.apply_updates(fake, upd)
            if has_disc:
                upd, disc_opt = disc_tx.update(grads["disc"], disc_opt, disc)
                disc = optax.apply_updates(disc, upd)
            out = {"critic_loss": c_loss, "critic_grad_norm": norm,
                   **_scalars(c_aux, "critic_")}
            return (fake, fake_opt, disc, disc_opt), out

        carry = (state.fake_params, state.fake_opt_state, state.disc_params, state.disc_opt_state)
        carry, critic_metrics = jax.lax.scan(critic_update, carry,
                                             jax.random.split(k_critic, n_critic))
        fake, fake_opt, disc, disc_opt = carry
        gen_batch = dict(batch, step=state.step, fake_params=fake, disc_params=disc)
        (g_loss, g_aux), grads = jax.value_and_grad(generator_loss, has_aux=True)(
            state.gen_params, k_gen, gen_batch)
        grads, norm = _clip(grads, grad_clip)
        upd, gen_opt = gen_tx.update(grads, state.gen_opt_state, state.gen_params)
        gen = optax.apply_updates(state.gen_params, upd)
        new = DistillState(state.step + 1, gen, gen_opt, ema_update(state.gen_ema, gen, ema_decay),
                           fake, fake_opt, disc, disc_opt, state.key)
        metrics = {"loss": g_loss, "grad_norm": norm, **_scalars(g_aux),
                   **{name: v[-1] for name, v in critic_metrics.items()}}
        return new, metrics

    if not jit:
        return step
    return jax.jit(step, donate_argnums=(0,) if donate else ())
