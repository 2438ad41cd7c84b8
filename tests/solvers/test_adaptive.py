"""Adaptive DPM-Solver-12 / -23 (jaxdist.solvers.adaptive), float64, on a 2-component Gaussian
mixture against the diffrax Dopri8 reference (rtol = atol = 1e-11).

Error control is local, so the global error is checked against a slack of 10x the requested
tolerance: ``|x - x_ref| <= 10 (atol + rtol |x_ref|)`` elementwise.
"""

import jax
import jax.numpy as jnp
import pytest

import jaxdist as jd
from jaxdist.solvers import AdaptiveDPMSolver

MIXTURE = dict(weights=[0.3, 0.7], means=[[1.0, -0.5], [-1.0, 0.5]],
               variances=[[0.2, 0.5], [0.4, 0.1]])


def _problem(schedule, t0, t1):
    gmm = jd.testing.GaussianMixture(**MIXTURE)
    x_T = jax.random.normal(jax.random.key(1), (8, 2), jnp.float64) * schedule.sigma(t0)
    return gmm.denoiser(schedule), x_T, gmm.ode_solution(schedule, x_T, t0, t1), (t0, t1)


@pytest.mark.parametrize("order,schedule,t0,t1,tols", [
    (2, jd.schedules.VPLinear(), 1.0, 1e-3, (1e-2, 1e-4)),
    (3, jd.schedules.EDM(), 80.0, 0.002, (1e-3, 1e-5)),
    (3, jd.schedules.RectifiedFlow(), 0.999, 1e-3, (1e-3, 1e-5)),
])
def test_meets_tolerance_and_spends_less_when_loose(x64, order, schedule, t0, t1, tols):
    den, x_T, ref, grid = _problem(schedule, t0, t1)
    nfes = []
    for tol in tols:
        res, info = jd.sample_adaptive(AdaptiveDPMSolver(order=order, rtol=tol, atol=tol), den,
                                       x_T, *grid)
        assert int(info.nfe) == int(res.nfe) and int(info.accepted) >= 1
        assert bool(jnp.all(jnp.abs(res.x - ref) <= 10 * (tol + tol * jnp.abs(ref)))), \
            (tol, float(jnp.max(jnp.abs(res.x - ref))))
        nfes.append(int(res.nfe))
    assert nfes[0] < nfes[1], nfes


def test_max_steps_bounds_nfe_and_reaches_the_end(x64):
    schedule = jd.schedules.VPLinear()
    den, x_T, ref, grid = _problem(schedule, 1.0, 1e-3)
    res, info = jd.sample_adaptive(AdaptiveDPMSolver(order=2, rtol=1e-8, atol=1e-8, max_steps=5),
                                   den, x_T, *grid)
    # 1 initial evaluation + 5 trials of <= 2 + the forced final step of 1 more
    assert int(res.nfe) <= 1 + 2 * 5 + 1
    assert int(info.accepted) + int(info.rejected) == 5
    assert bool(res.all_finite)


def test_jit_and_errors():
    schedule = jd.schedules.RectifiedFlow()
    gmm = jd.testing.GaussianMixture(**MIXTURE)
    den = gmm.denoiser(schedule)
    x_T = jax.random.normal(jax.random.key(0), (4, 2))
    run = jax.jit(lambda x, t1: jd.sample_adaptive(AdaptiveDPMSolver(), den, x, 1.0, t1)[0][:2])
    x, nfe = run(x_T, 1e-3)
    assert bool(jnp.all(jnp.isfinite(x))) and int(nfe) > 2
    with pytest.raises(ValueError, match="t_end > 0"):
        jd.sample_adaptive(AdaptiveDPMSolver(), den, x_T, 1.0, 0.0)
    with pytest.raises(ValueError, match="alpha = 0"):
        jd.sample_adaptive(AdaptiveDPMSolver(prediction="eps"), den, x_T, 1.0, 1e-3)
    with pytest.raises(TypeError, match="sample_adaptive"):
        jd.sample(AdaptiveDPMSolver(), den, x_T, jnp.array([0.9, 1e-3]))
    with pytest.raises(TypeError, match="jd.sample"):
        jd.sample_adaptive(jd.solvers.DDIM(), den, x_T)
    with pytest.raises(ValueError, match="order"):
        AdaptiveDPMSolver(order=1)
    with pytest.raises(ValueError, match="rtol"):
        AdaptiveDPMSolver(rtol=0.0)
