"""Adapters: any network as a pure ``apply_fn(params, x, t, **cond) -> out`` and as a denoiser.

* :func:`as_apply_fn` — a Flax NNX module, split once (``nnx.split``) into its graph and a nested
  dict of parameter arrays; ``apply_fn`` merges them back (``nnx.merge``) on every call, so it is a
  pure function usable under ``jit``, ``grad``, ``vmap`` and sharding.
* :func:`from_linen` — a Flax Linen module and its ``variables``.
* :func:`denoiser_from_apply` — ``apply_fn`` and trained ``params`` as a jaxdist denoiser for a
  schedule and prediction type (including ``"edm"`` preconditioning and ``"consistency"``).
"""

from __future__ import annotations

from typing import Any, Callable

import jax

from ..denoiser import BaseDenoiser, ConsistencyDenoiser, Denoiser, EDMPreconditioned
from ..schedules import Schedule

Array = jax.Array
ApplyFn = Callable[..., Array]

__all__ = ["as_apply_fn", "from_linen", "denoiser_from_apply"]


def as_apply_fn(module: Any, method: str = "__call__") -> tuple[ApplyFn, Any]:
    """``(apply_fn, params)`` of an NNX module: ``apply_fn(params, x, t, **cond) = module(x, t, **cond)``.

    ``params`` is a nested dict of the module's ``nnx.Param`` arrays (``nnx.to_pure_dict``);
    other variables (e.g. batch statistics) are frozen into ``apply_fn``. ``method`` names
    another method to call with the same parameters (e.g. ``"features"`` of ``MLP``).
    """
    from flax import nnx

    if not isinstance(module, nnx.Module):
        raise TypeError(f"module must be a flax.nnx.Module, got {type(module).__name__}; for Linen "
                        "use jd.models.from_linen(module, variables).")
    graphdef, param_state, rest = nnx.split(module, nnx.Param, ...)
    template = nnx.to_pure_dict(param_state)
    params = _string_keys(template)

    def apply_fn(params, x: Array, *times, **cond) -> Array:
        state = jax.tree.map(lambda a: a, param_state)  # a fresh State of the same structure
        nnx.replace_by_pure_dict(state, _original_keys(params, template))
        return getattr(nnx.merge(graphdef, state, rest), method)(x, *times, **cond)

    return apply_fn, params


def _string_keys(tree: Any) -> Any:
    """Nested dict with ``str`` keys (``nnx.List`` indices are ints; checkpoints want strings)."""
    if isinstance(tree, dict):
        return {str(k): _string_keys(v) for k, v in tree.items()}
    return tree


def _original_keys(tree: Any, template: Any) -> Any:
    """Inverse of :func:`_string_keys`, using ``template`` for the original key types."""
    if isinstance(template, dict):
        missing = {str(k) for k in template} - set(tree)
        if missing:
            raise ValueError(f"params is missing the entries {sorted(missing)} of the module.")
        return {k: _original_keys(tree[str(k)], v) for k, v in template.items()}
    return tree


def from_linen(module: Any, variables: Any) -> tuple[ApplyFn, Any]:
    """``(apply_fn, params)`` of a Linen module: ``apply_fn(params, x, t, **cond) =
    module.apply(params, x, t, **cond)`` with ``params = variables`` (all collections)."""
    if not hasattr(module, "apply"):
        raise TypeError(f"module must be a flax.linen.Module, got {type(module).__name__}.")

    def apply_fn(params, x: Array, t, **cond) -> Array:
        return module.apply(params, x, t, **cond)

    return apply_fn, variables


def denoiser_from_apply(apply_fn: ApplyFn, params: Any, schedule: Schedule,
                        prediction: str) -> BaseDenoiser:
    """The denoiser of ``apply_fn`` with ``params`` trained for ``prediction`` under ``schedule``.

    ``prediction`` is one of ``jd.predictions.PREDICTIONS`` (a ``jd.Denoiser``), ``"edm"``
    (``jd.EDMPreconditioned``: the network is EDM's raw ``F``) or ``"consistency"`` (the
    consistency function, ``jd.denoiser.ConsistencyDenoiser``).
    """

    def fn(x, t, **cond):
        return apply_fn(params, x, t, **cond)

    if prediction == "edm":
        return EDMPreconditioned(fn, schedule)
    if prediction == "consistency":
        return ConsistencyDenoiser(apply_fn, params, schedule)
    return Denoiser(fn, schedule, prediction)
