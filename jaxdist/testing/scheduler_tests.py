"""diffusers' scheduler-test problem in NumPy/JAX: the dummy model and samples of diffusers'
``tests/schedulers/test_schedulers.py`` and the full loops of its ``test_scheduler_*.py``, run
with jaxdist (``from_diffusers_scheduler``).

diffusers' tests use ``dummy_sample_deter`` (``arange(768) / 768`` laid out as ``[4, 3, 8, 8]``),
``dummy_noise_deter`` (the same, reversed) and ``model(x, t) = x t / (t + 1)`` with ``t`` the
diffusers timestep. :func:`full_loop` runs one such case (a dict, as stored in
``tests/golden/parity_diffusers.json`` by ``benchmarks/parity_diffusers.py``):

* ``config``: the scheduler config with ``_class_name`` (the denoiser from
  ``jd.solvers.denoiser_from_diffusers``: prediction type, thresholding, learned variance);
* ``n_steps``; ``t_start`` (diffusers' ``test_full_loop_with_noise``: the loop starts at the
  ``t_start``-th timestep from ``add_noise(sample, noise)``; 0 for the plain loop).

The model's time is diffusers' timestep (``jd.solvers.denoiser_from_diffusers`` converts
jaxdist's model time: the index for ``VPDiscrete``, ``N`` times the flow time). Euler-type
schedulers (``Euler``, ``Heun``) hold ``x / alpha`` (``sigma`` units); the loop here converts
at both ends, so it is diffusers' plain loop
(``model(scale_model_input(x), t)``, not the tests' loop that writes the scaled input back).
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["dummy_sample_deter", "dummy_noise_deter", "dummy_model", "variance_noise",
           "stage_noise", "full_loop", "EULER_TYPE"]

#: schedulers whose sample is in ``sigma`` units (``x_diffusers = x / alpha``)
EULER_TYPE = ("EulerDiscreteScheduler", "HeunDiscreteScheduler", "LMSDiscreteScheduler",
              "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler",
              "EulerAncestralDiscreteScheduler", "DPMSolverSDEScheduler")
_SHAPE = (4, 3, 8, 8)


def _deter(reverse: bool) -> np.ndarray:
    n = int(np.prod(_SHAPE))
    values = np.arange(n, dtype=np.float64)
    if reverse:
        values = values[::-1]
    return (values.reshape(3, 8, 8, 4) / n).transpose(3, 0, 1, 2).copy()


def dummy_sample_deter() -> np.ndarray:
    """diffusers' ``dummy_sample_deter``: ``[4, 3, 8, 8]``, values ``k / 768`` (float64)."""
    return _deter(False)


def dummy_noise_deter() -> np.ndarray:
    """diffusers' ``dummy_noise_deter``: the same values in reverse order."""
    return _deter(True)


def variance_noise(n_steps: int) -> np.ndarray:
    """A deterministic table ``[n_steps, 4, 3, 8, 8]`` of unit-variance noise for the stochastic
    configs: diffusers gets row ``i`` as ``step(..., variance_noise=)``, jaxdist's solver as its
    noise source (:class:`jaxdist.testing.kdiffusion_problem.NoiseTable`)."""
    k = np.arange(int(np.prod(_SHAPE)), dtype=np.float64)
    rows = [np.sqrt(2.0) * np.sin(0.7 * (i + 1) * k + i) for i in range(n_steps)]
    return np.stack(rows).reshape((n_steps,) + _SHAPE)


def stage_noise(n_steps: int) -> np.ndarray:
    """A second table like :func:`variance_noise`: the draws of a step's inner stage (DPM++ SDE's
    first noise call), row ``i`` on step ``i``."""
    k = np.arange(int(np.prod(_SHAPE)), dtype=np.float64)
    rows = [np.sqrt(2.0) * np.cos(0.45 * (i + 1) * k + 2.0 * i) for i in range(n_steps)]
    return np.stack(rows).reshape((n_steps,) + _SHAPE)


def dummy_model(x, t):
    """diffusers' ``dummy_model``: ``x t / (t + 1)`` in diffusers' timestep ``t``."""
    t = jnp.asarray(t, x.dtype)
    return x * t / (t + 1)


def full_loop(case: Mapping[str, Any]) -> np.ndarray:
    """The final sample of diffusers' full loop ``case`` computed by jaxdist (float64 if x64)."""
    import jaxdist as jd
    from jaxdist.solvers.diffusers_compat import denoiser_from_diffusers

    config = case["config"]
    n, t_start = int(case["n_steps"]), int(case.get("t_start", 0))
    solver, schedule, grid = jd.solvers.from_diffusers_scheduler(config, n,
                                                                 denoiser_keys_applied=True)
    den = denoiser_from_diffusers(dummy_model, config)
    dtype = jnp.asarray(grid).dtype
    x0, noise = (jnp.asarray(a, dtype) for a in (dummy_sample_deter(), dummy_noise_deter()))
    euler = config["_class_name"] in EULER_TYPE
    t0 = grid[t_start]
    if config["_class_name"] == "EDMEulerScheduler":  # init_noise_sigma = sqrt(s_max^2 + 1)
        x = x0 * jnp.sqrt(schedule.sigma(grid[0]) ** 2 + 1.0)
        if t_start:
            x = x + noise * schedule.sigma(t0)
    elif euler:  # diffusers: x = sample * init_noise_sigma (+ sigma noise), in sigma units
        s_max = schedule.sigma_over_alpha(grid[0])
        spacing = config.get("timestep_spacing", "linspace")
        init = s_max if spacing in ("linspace", "trailing") else jnp.sqrt(s_max**2 + 1.0)
        x = x0 * init
        if t_start:
            x = x + noise * schedule.sigma_over_alpha(t0)
        x = x * schedule.alpha(t0)
    elif t_start:
        x = schedule.alpha(t0) * x0 + schedule.sigma(t0) * noise
    else:
        x = x0
    key = None
    if solver.stochastic:  # the shared table of variance noise, row i on step i
        import dataclasses

        from .kdiffusion_problem import NoiseTable

        n_grid = int(grid.shape[0]) - 1
        table = NoiseTable(np.asarray(grid[t_start:], np.float64),
                           variance_noise(n_grid)[t_start:], stage_noise(n_grid)[t_start:])
        solver, key = dataclasses.replace(solver, noise=table), jax.random.key(0)
    out = jd.sample(solver, den, x, grid[t_start:], key=key).x
    if euler:
        out = out / schedule.alpha(grid[-1])
    return np.asarray(out, np.float64)
