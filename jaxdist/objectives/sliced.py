r"""Sliced score matching (Song, Garg, Shi & Ermon 2019).

For a score model ``s(x) = apply_fn(params, x, t)`` and projections ``v`` with ``E[v v^T] = I``
(Rademacher or Gaussian), the per-example loss is

    ``l(x) = mean_v [ v^T (d s / d x) v + 1/2 (v^T s(x))^2 ]``   (SSM)
    ``l(x) = mean_v [ v^T (d s / d x) v ] + 1/2 ||s(x)||^2``      (SSM-VR, ``variance_reduced``)

which equals, in expectation, Hyvarinen's ``tr(ds/dx) + 1/2 ||s||^2`` (minimised by the data
score), without the ``D`` backward passes of the trace. ``v^T (ds/dx) v`` is one ``jax.jvp``.
With ``noise_scale = sigma > 0`` the data are perturbed first, ``x + sigma z`` (the model then
learns the score of the smoothed density, at the constant model time ``t``).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from .dsm import ApplyFn

Array = jax.Array

__all__ = ["make_ssm_loss"]


def make_ssm_loss(apply_fn: ApplyFn, *, n_projections: int = 1, projection: str = "rademacher",
                  variance_reduced: bool = True, noise_scale: float = 0.0, t: float = 0.0
                  ) -> Callable[[Any, Array, dict], tuple[Array, dict]]:
    """Sliced score matching ``loss(params, key, batch)``; ``batch = {"x": [B, ...]}``.

    ``apply_fn(params, x, t)`` returns the score ``[B, ...]`` (``t`` a ``[B]`` array filled with
    the constant ``t``). ``aux``: ``per_example``, ``weights`` (ones).
    """
    if n_projections < 1:
        raise ValueError(f"n_projections={n_projections} must be positive.")
    if projection not in ("rademacher", "gaussian"):
        raise ValueError(f"projection={projection!r} must be 'rademacher' or 'gaussian'.")

    def loss(params, key, batch):
        x = batch["x"]
        k_x, k_v = jax.random.split(key)
        if noise_scale:
            x = x + noise_scale * jax.random.normal(k_x, x.shape, x.dtype)
        tt = jnp.full(x.shape[:1], t, x.dtype)
        score = lambda y: apply_fn(params, y, tt)  # noqa: E731
        shape = (n_projections,) + x.shape
        if projection == "rademacher":
            v = jax.random.rademacher(k_v, shape, x.dtype)
        else:
            v = jax.random.normal(k_v, shape, x.dtype)

        def one(vi):
            s, jv = jax.jvp(score, (x,), (vi,))  # jv = (ds/dx) v, per example
            flat = lambda a: a.reshape(a.shape[0], -1)  # noqa: E731
            quad = jnp.sum(flat(vi) * flat(jv), 1)
            half = 0.5 * (jnp.sum(flat(s) ** 2, 1) if variance_reduced
                          else jnp.sum(flat(vi) * flat(s), 1) ** 2)
            return quad + half

        per_example = jnp.mean(jax.vmap(one)(v), axis=0)
        return jnp.mean(per_example), {"per_example": per_example,
                                       "weights": jnp.ones_like(per_example)}

    return loss
