"""DC-Solver's cascade polynomial regression (CPR): compensation ratios for a step count and
guidance scale that were not fitted, from ratios fitted at a few others.

The reference (wl-zhao/DC-Solver, ``DCSolverMultistepScheduler.cascade_polynomial_regression``)
predicts the ratio of (1-based) step ``k`` of an ``N``-step run at guidance scale ``w`` as a
quadratic in the step's position ``u = k / N`` whose coefficients are quadratics in
``w' = w / 12`` whose coefficients are quadratics in ``N' = N / 50``:

    rho(k; N, w) = sum_{i, j, m} c[i, j, m] u^i w'^(2-j) N'^(2-m),    c [3, 3, 3],

and steps ``k < 3`` keep ``rho = 1``. The model is linear in ``c``, so :func:`fit_cascade_ratios`
fits it by least squares (minimum norm where the data do not determine it, e.g. one guidance
scale) to ratios from :func:`jaxdist.tune.fit_dc_ratios`.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple, Sequence

import numpy as np

__all__ = ["CascadeRatios", "fit_cascade_ratios"]

_FIRST_COMPENSATED = 3  # 1-based: the reference keeps rho = 1 on steps 1 and 2


def _features(k: np.ndarray, n_steps: float, cfg: float) -> np.ndarray:
    """Rows ``u^i w'^(2-j) N'^(2-m)`` flattened over ``(i, j, m)``: ``[len(k), 27]``."""
    u = np.asarray(k, np.float64) / n_steps
    w, n = cfg / 12.0, n_steps / 50.0
    p = np.arange(3)
    return (u[:, None, None, None] ** p[:, None, None]
            * w ** (2 - p)[:, None] * n ** (2 - p)).reshape(len(u), 27)


class CascadeRatios(NamedTuple):
    """Fitted CPR coefficients ``c [3, 3, 3]`` (module docstring). ``ratios(n_steps, cfg)``
    gives the ``[n_steps]`` ratios for :class:`jaxdist.solvers.DCSolver`."""

    coeffs: np.ndarray

    def ratios(self, n_steps: int, cfg: float = 0.0) -> np.ndarray:
        if not (isinstance(n_steps, (int, np.integer)) and n_steps >= 1):
            raise ValueError(f"n_steps={n_steps!r} must be a positive integer.")
        k = np.arange(1, n_steps + 1)
        rho = _features(k, float(n_steps), float(cfg)) @ np.asarray(self.coeffs).reshape(27)
        return np.where(k < _FIRST_COMPENSATED, 1.0, rho)


def fit_cascade_ratios(fitted: Mapping[int | tuple[float, int], Sequence[float]]
                       ) -> CascadeRatios:
    """Least-squares CPR coefficients from fitted ratios: ``{n_steps: rho [n_steps]}`` (no
    guidance) or ``{(cfg, n_steps): rho [n_steps]}``. Steps ``k < 3`` are not used."""
    rows, targets = [], []
    for key, rho in fitted.items():
        cfg, n = (0.0, key) if np.ndim(key) == 0 else key
        rho = np.asarray(rho, np.float64)
        if rho.shape != (int(n),):
            raise ValueError(f"fitted[{key!r}] has shape {rho.shape}; it must hold the "
                             f"{int(n)} ratios of that run.")
        if not np.all(np.isfinite(rho)):
            raise ValueError(f"fitted[{key!r}] contains non-finite ratios.")
        k = np.arange(_FIRST_COMPENSATED, int(n) + 1)
        rows.append(_features(k, float(n), float(cfg)))
        targets.append(rho[k - 1])
    if not rows or sum(len(t) for t in targets) == 0:
        raise ValueError("fitted must hold the ratios of at least one run of >= 3 steps.")
    coeffs, *_ = np.linalg.lstsq(np.concatenate(rows), np.concatenate(targets), rcond=None)
    return CascadeRatios(coeffs.reshape(3, 3, 3))
