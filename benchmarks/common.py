"""Shared by the benchmark scripts: the benchmark MLP (the same weights in every framework) and
interleaved timing."""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["mlp_weights", "jax_mlp", "median_times"]


def mlp_weights(width=256, seed=0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    sizes = [3, width, width, 2]
    return [(rng.normal(0, 1 / np.sqrt(i), (i, o)).astype(np.float32),
             rng.normal(0, 0.1, (o,)).astype(np.float32)) for i, o in zip(sizes[:-1], sizes[1:])]


def jax_mlp(weights):
    params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in weights]

    def fn(x, t):
        h = jnp.concatenate([x, jnp.broadcast_to(jnp.asarray(t, x.dtype) / 1000.0,
                                                 x.shape[:1] + (1,))], -1)
        for i, (w, b) in enumerate(params):
            h = h @ w + b
            if i < len(params) - 1:
                h = jax.nn.silu(h)
        return h

    return fn


def median_times(fns: dict, reps: int) -> dict:
    """Median wall time of each function, after one warm-up call each (compiles in jax). The
    functions are timed in turn within every repetition, so that a load change on the machine
    affects all of them alike."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            tic = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - tic)
    return {**{name: statistics.median(v) for name, v in times.items()},
            **{f"{name}_min": min(v) for name, v in times.items()}}
