"""Built-in data sets for training examples, tests and experiments; nothing is downloaded.

Each data set is a :class:`Dataset` with a pure ``sample(key, n) -> [n, dim]`` (traceable, so a
batch can be drawn inside ``jit``) and a fixed ``held_out(n)`` set for quality metrics:

* ``two-moons``: two interleaved half circles with Gaussian noise (std 0.05), standardised;
* ``checkerboard``: uniform on the 8 dark squares of a 4x4 board on ``[-2, 2]^2``;
* ``gmm``: the 8-component ring of :func:`jaxdist.testing.builtin_mixture`;
* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1797 images) with 17 grey levels
  ``v = 0..16`` stored at ``v / 8 - 1`` in ``[-1, 1]``, flattened to 64 values;
  ``image_shape = (8, 8)``; a fixed split keeps 297 images out of training. Training draws are
  dequantised: uniform noise over each level's bin ``[-1/16, 1/16)`` makes the data a
  continuous density, so a model's bits/dim on held-out images are an honest bound.

Token data sets (discrete diffusion) are :class:`TokenDataset` s, ``get_token_dataset(name)``:
``digits-tokens`` (the digits as 64 tokens over the 17 grey levels, same split) and ``markov``
(:func:`jaxdist.discrete.markov_chain`, vocabulary 8, length 32, exact entropy known).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .testing import builtin_mixture

Array = jax.Array

__all__ = ["Dataset", "DATASETS", "get_dataset", "two_moons", "checkerboard", "gmm", "digits",
           "DIGIT_LEVELS", "DIGIT_BINS_RANGE", "digit_levels", "TokenDataset", "TOKEN_DATASETS",
           "get_token_dataset", "digit_tokens"]

_HELD_OUT_SEED = 2**20 + 7  # held-out draws use their own stream, never the training keys


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A named data set: ``sample(key, n) -> [n, dim]`` float32 and a fixed held-out set.

    Attributes:
      name: the CLI name.
      dim: flattened dimension of one example.
      sample: pure function ``(key, n) -> [n, dim]`` (training draws).
      held_out_fn: ``n -> [n, dim]`` held-out examples (fixed, disjoint from training draws).
      image_shape: ``(height, width)`` for image data sets, else ``None``.
      held_out_size: how many held-out examples exist (``None``: unlimited, generated).
    """

    name: str
    dim: int
    sample: Callable[[Array, int], Array]
    held_out_fn: Callable[[int], np.ndarray]
    image_shape: tuple[int, int] | None = None
    held_out_size: int | None = None

    @functools.cached_property
    def std(self) -> float:
        """Standard deviation of the training data, all coordinates pooled (from a fixed draw of
        20000 examples, to 3 digits): the ``sigma_data`` of EDM preconditioning."""
        return round(float(np.std(np.asarray(self.sample(jax.random.key(0), 20_000)))), 3)

    def held_out(self, n: int) -> np.ndarray:
        """``n`` held-out examples ``[n, dim]`` (the same on every call)."""
        if n < 1:
            raise ValueError(f"n={n} must be a positive number of held-out examples.")
        return np.asarray(self.held_out_fn(n), dtype=np.float32)


def _generated(name: str, sampler: Callable[[Array, int], Array], dim: int = 2) -> Dataset:
    def held_out(n: int) -> np.ndarray:
        return np.asarray(sampler(jax.random.key(_HELD_OUT_SEED), n))

    return Dataset(name, dim, sampler, held_out)


def _two_moons(key: Array, n: int) -> Array:
    k_side, k_angle, k_noise = jax.random.split(key, 3)
    side = jax.random.bernoulli(k_side, 0.5, (n,))
    angle = jax.random.uniform(k_angle, (n,), minval=0.0, maxval=math.pi)
    upper = jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)
    lower = jnp.stack([1.0 - jnp.cos(angle), 0.5 - jnp.sin(angle)], axis=-1)
    x = jnp.where(side[:, None], upper, lower) + 0.05 * jax.random.normal(k_noise, (n, 2))
    # standardise with the exact-ish moments of the noiseless shape: mean (0.5, 0.25)
    return ((x - jnp.array([0.5, 0.25])) / jnp.array([0.87, 0.50])).astype(jnp.float32)


def _checkerboard(key: Array, n: int) -> Array:
    k_cell, k_pos = jax.random.split(key)
    # the 8 squares (i, j) of a 4x4 board with (i + j) even
    cells = jnp.array([(i, j) for i in range(4) for j in range(4) if (i + j) % 2 == 0], jnp.float32)
    idx = jax.random.randint(k_cell, (n,), 0, cells.shape[0])
    pos = jax.random.uniform(k_pos, (n, 2))
    return (cells[idx] + pos - 2.0).astype(jnp.float32)


def _gmm(key: Array, n: int) -> Array:
    return builtin_mixture(2).sample(key, n).astype(jnp.float32)


two_moons = _generated("two-moons", _two_moons)
checkerboard = _generated("checkerboard", _checkerboard)
gmm = _generated("gmm", _gmm)


DIGIT_LEVELS = 17  #: grey levels ``v = 0..16`` of the digits, stored at ``v / 8 - 1``
#: the range covered by the 17 bins of width 1/8 centred on the stored levels (dequantisation)
DIGIT_BINS_RANGE = (-1.0 - 1.0 / 16.0, 1.0 + 1.0 / 16.0)


def digit_levels(x) -> np.ndarray:
    """The integer grey level ``v`` (nearest) of digits ``x`` stored at ``v / 8 - 1``."""
    return np.rint((np.asarray(x) + 1.0) * 8.0)


def _digit_images() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the 'digits' data set ships with scikit-learn: pip install "
                          "'jaxdist[data]' (or scikit-learn).") from err
    images = load_digits().images.astype(np.float32)  # [1797, 8, 8], values 0..16
    flat = images.reshape(len(images), 64) / 8.0 - 1.0  # [-1, 1]
    order = np.random.default_rng(0).permutation(len(flat))
    return flat[order[297:]], flat[order[:297]]


def digits() -> Dataset:
    """scikit-learn's 8x8 digits in ``[-1, 1]``: 1500 training images (dequantised: uniform
    within each grey level's bin of width 1/8) and 297 held-out images (at the levels)."""
    train, test = _digit_images()
    train_j = jnp.asarray(train)

    def sample(key: Array, n: int) -> Array:
        k_pick, k_deq = jax.random.split(key)
        x = train_j[jax.random.randint(k_pick, (n,), 0, train_j.shape[0])]
        return x + (jax.random.uniform(k_deq, x.shape) - 0.5) / 8.0

    def held_out(n: int) -> np.ndarray:
        if n > len(test):
            raise ValueError(f"digits has {len(test)} held-out images; asked for n={n}.")
        return test[:n]

    return Dataset("digits", 64, sample, held_out, image_shape=(8, 8), held_out_size=len(test))


DATASETS: dict[str, Callable[[], Dataset]] = {
    "two-moons": lambda: two_moons,
    "checkerboard": lambda: checkerboard,
    "gmm": lambda: gmm,
    "digits": digits,
}


def get_dataset(name: str) -> Dataset:
    """The built-in data set called ``name`` (see :data:`DATASETS`)."""
    try:
        return DATASETS[name]()
    except KeyError:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}") from None


# -- token data sets (discrete diffusion) ---------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TokenDataset:
    """A token data set: ``sample(key, n) -> [n, L]`` int32, fixed ``held_out(n)``, and the exact
    ``entropy_bits_per_token`` when known."""

    name: str
    vocab_size: int
    length: int
    sample: object
    held_out: object
    entropy_bits_per_token: float | None = None


def digit_tokens() -> TokenDataset:
    """Digits as ``[n, 64]`` tokens in ``0..16`` (1500 training, 297 held-out images)."""
    train, test = (digit_levels(a).astype(np.int32) for a in _digit_images())
    train_j = jnp.asarray(train)

    def sample(key: Array, n: int) -> Array:
        return train_j[jax.random.randint(key, (n,), 0, train_j.shape[0])]

    def held_out(n: int) -> np.ndarray:
        if n > len(test):
            raise ValueError(f"digits-tokens has {len(test)} held-out images; asked for n={n}.")
        return test[:n]

    return TokenDataset("digits-tokens", DIGIT_LEVELS, 64, sample, held_out)


def _markov_dataset() -> TokenDataset:
    from .discrete.data import markov_chain

    chain = markov_chain()
    return TokenDataset("markov", chain.vocab_size, chain.length, chain.sample,
                        lambda n: np.asarray(chain.sample(jax.random.key(_HELD_OUT_SEED + 4), n)),
                        chain.bits_per_token())


#: token data sets by name
TOKEN_DATASETS = {"digits-tokens": digit_tokens, "markov": _markov_dataset}


def get_token_dataset(name: str) -> TokenDataset:
    """The token data set called ``name`` (``digits-tokens`` or ``markov``)."""
    if name not in TOKEN_DATASETS:
        raise ValueError(f"unknown token data set {name!r}; known: {', '.join(TOKEN_DATASETS)}.")
    return TOKEN_DATASETS[name]()
