"""Score and velocity networks (Flax NNX) and adapters that make any network a jaxdist model.

* :class:`MLP` — ``[B, D]`` vectors with a sinusoidal (Fourier) time embedding.
* :class:`UNet` — a small time-conditioned U-Net for ``[B, H, W, C]`` images (8x8, 28x28).
* :class:`DiscreteTransformer` — a bidirectional transformer over tokens (discrete diffusion).
* :func:`as_apply_fn` / :func:`from_linen` — an NNX module or Linen module as a pure
  ``apply_fn(params, x, t, **cond)`` plus a pytree of arrays ``params``.
* :func:`denoiser_from_apply` — a trained ``apply_fn`` as a ``jd.Denoiser``.

Flax is imported only when one of these names is first used, so ``import jaxdist`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["MLP", "UNet", "DiscreteTransformer", "time_embedding", "as_apply_fn", "from_linen",
           "denoiser_from_apply"]

_WHERE = {
    "MLP": "mlp",
    "time_embedding": "mlp",
    "UNet": "unet",
    "DiscreteTransformer": "transformer",
    "as_apply_fn": "adapters",
    "from_linen": "adapters",
    "denoiser_from_apply": "adapters",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'jaxdist.models' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
