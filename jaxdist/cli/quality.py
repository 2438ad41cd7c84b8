"""Sample quality of a run against its data set's held-out examples, and the data's floor.

The **floor** is what a perfect model scores: the same metrics for a fresh draw of training data
(as many points as the samples) against the same held-out set. A model is as good as the metrics
can tell when it is at its floor.
"""

from __future__ import annotations

import jax
import numpy as np

from ..data import Dataset
from ..metrics import mmd_rbf, sliced_wasserstein

__all__ = ["quality", "data_floor"]


def quality(x: np.ndarray, dataset: Dataset, n_ref: int = 2000, seed: int = 0,
            floor: bool = True) -> dict:
    """``{"model": {"swd", "mmd"}}`` of samples ``x [n, dim]`` (sliced W2 and MMD^2 against
    ``n_ref`` held-out points) and, with ``floor``, ``"floor"``: the same for ``len(x)`` fresh
    training draws (:func:`data_floor`)."""
    if len(x) < 2:
        raise ValueError(f"quality metrics need at least 2 samples, got {len(x)}.")
    ref = dataset.held_out(min(n_ref, dataset.held_out_size or n_ref))
    key = jax.random.key(seed)

    def both(a):
        return {"swd": float(sliced_wasserstein(key, a, ref)), "mmd": float(mmd_rbf(a, ref))}

    out = {"model": both(x)}
    if floor:
        out["floor"] = both(np.asarray(dataset.sample(jax.random.fold_in(key, 7), len(x))))
    return out


def data_floor(dataset: Dataset, num: int, seed: int = 0, n_ref: int = 2000) -> dict:
    """``{"swd", "mmd"}`` of ``num`` fresh training draws against the held-out set."""
    draw = np.asarray(dataset.sample(jax.random.key(seed + 1), num))
    return quality(draw, dataset, n_ref=n_ref, seed=seed, floor=False)["model"]
