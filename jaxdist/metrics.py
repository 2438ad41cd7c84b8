"""Sample-quality metrics between two point clouds ``x: [n, d]`` and ``y: [m, d]``.

* :func:`sliced_wasserstein`: ``SW_p(x, y) = (E_theta W_p^p(theta.x, theta.y))^(1/p)`` over
  random unit directions ``theta``; each 1-D distance compares sorted projections (quantiles).
* :func:`mmd_rbf`: unbiased ``MMD^2 = E k(x,x') + E k(y,y') - 2 E k(x,y)`` with a sum of RBF
  kernels ``k(a,b) = sum_s exp(-|a-b|^2 / (2 s^2))``; bandwidths default to multiples of the
  median pairwise distance of the pooled samples.
* :func:`frechet_distance`: ``|mu_x - mu_y|^2 + tr(S_x + S_y - 2 (S_x^1/2 S_y S_x^1/2)^1/2)``,
  the Frechet (2-Wasserstein) distance between Gaussians fitted to the two sets (the FID formula).

All are computed in float64 NumPy-side precision when x64 is on, else float32; they are
cheap for the sizes used in the experiments (a few thousand points).
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

__all__ = ["sliced_wasserstein", "mmd_rbf", "frechet_distance", "gaussian_frechet", "fit_gaussian"]


def _check_pair(x, y) -> tuple[Array, Array]:
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must be [n, d] and [m, d] with the same d; got {x.shape} and "
                         f"{y.shape}. Flatten images first: x.reshape(len(x), -1).")
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError("x and y need at least 2 points each.")
    dtype = jnp.result_type(x.dtype, y.dtype, jnp.float32)
    return x.astype(dtype), y.astype(dtype)


def sliced_wasserstein(key: Array, x, y, n_projections: int = 256, p: int = 2,
                       n_quantiles: int | None = None) -> Array:
    """Sliced ``p``-Wasserstein distance (a scalar) over ``n_projections`` random directions.

    Different sample sizes are compared at ``n_quantiles`` (default ``min(n, m)``) quantiles.
    """
    x, y = _check_pair(x, y)
    if n_projections < 1 or p < 1:
        raise ValueError(f"need n_projections >= 1 and p >= 1, got {n_projections}, {p}.")
    return _swd(key, x, y, n_projections, p, n_quantiles)


@functools.partial(jax.jit, static_argnums=(3, 4, 5))
def _swd(key: Array, x: Array, y: Array, n_projections: int, p: int,
         n_quantiles: int | None) -> Array:
    theta = jax.random.normal(key, (x.shape[1], n_projections), x.dtype)
    theta = theta / jnp.linalg.norm(theta, axis=0, keepdims=True)
    px, py = jnp.sort(x @ theta, axis=0), jnp.sort(y @ theta, axis=0)
    if px.shape[0] != py.shape[0] or n_quantiles is not None:
        q = jnp.linspace(0.0, 1.0, n_quantiles or min(px.shape[0], py.shape[0]), dtype=x.dtype)
        px, py = jnp.quantile(px, q, axis=0), jnp.quantile(py, q, axis=0)
    return jnp.mean(jnp.abs(px - py) ** p) ** (1.0 / p)


def _sq_dists(a: Array, b: Array) -> Array:
    d = jnp.sum(a * a, 1)[:, None] + jnp.sum(b * b, 1)[None, :] - 2.0 * a @ b.T
    return jnp.maximum(d, 0.0)


def mmd_rbf(x, y, bandwidths: Sequence[float] | None = None) -> Array:
    """Unbiased squared MMD (a scalar; may be slightly negative when ``x ~ y``).

    ``bandwidths`` default to ``median * (0.25, 0.5, 1, 2, 4)`` of the pairwise distances of the
    pooled samples (the median is taken over at most 512 points of each set).
    """
    x, y = _check_pair(x, y)
    if bandwidths is None:
        scales = _median_scales(x[:512], y[:512])
    else:
        scales = jnp.asarray(bandwidths, x.dtype)
    return _mmd(x, y, scales)


@jax.jit
def _median_scales(x: Array, y: Array) -> Array:
    pooled = jnp.concatenate([x, y])
    med = jnp.sqrt(jnp.median(_sq_dists(pooled, pooled)))
    return med * jnp.array([0.25, 0.5, 1.0, 2.0, 4.0], x.dtype)


@jax.jit
def _mmd(x: Array, y: Array, scales: Array) -> Array:
    def k_sum(a: Array, b: Array) -> Array:
        d2 = _sq_dists(a, b)
        return sum(jnp.sum(jnp.exp(-d2 / (2.0 * scales[i] ** 2))) for i in range(scales.shape[0]))

    n, m, s = x.shape[0], y.shape[0], scales.shape[0]
    kxx = (k_sum(x, x) - n * s) / (n * (n - 1))
    kyy = (k_sum(y, y) - m * s) / (m * (m - 1))
    return kxx + kyy - 2.0 * k_sum(x, y) / (n * m)


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def fit_gaussian(x) -> tuple[np.ndarray, np.ndarray]:
    """``(mean [d], covariance [d, d])`` of samples ``x [n, d]`` in float64."""
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"x must be [n, d] with n >= 2, got shape {x.shape}.")
    return x.mean(0), np.atleast_2d(np.cov(x, rowvar=False))


def gaussian_frechet(mean1, cov1, mean2, cov2) -> float:
    """Frechet distance ``|m1 - m2|^2 + tr(C1 + C2 - 2 (C1^1/2 C2 C1^1/2)^1/2)`` between
    ``N(m1, C1)`` and ``N(m2, C2)`` (squared-W2 units, float64)."""
    m1, c1, m2, c2 = (np.asarray(a, np.float64) for a in (mean1, cov1, mean2, cov2))
    root = _sqrtm_psd(c1)
    cross = _sqrtm_psd(root @ c2 @ root)
    return float(np.sum((m1 - m2) ** 2) + np.trace(c1) + np.trace(c2) - 2.0 * np.trace(cross))


def frechet_distance(x, y) -> float:
    """Frechet distance between Gaussian fits of ``x`` and ``y`` (:func:`gaussian_frechet` of
    :func:`fit_gaussian`; squared-W2 units, float64). Against a known Gaussian ``N(m, C)``:
    ``gaussian_frechet(*fit_gaussian(x), m, C)``."""
    x, y = _check_pair(x, y)
    return gaussian_frechet(*fit_gaussian(x), *fit_gaussian(y))
