"""Time-Shift sampler (TS-DPM): identities, the exposure-bias oracle and bad input.

Oracle: a two-component Gaussian mixture in 64 dimensions (per-feature variance 0.25, means
+-0.3), VP-linear, 10 time-uniform steps to ``t_min``; the error measured is that of the final
samples' mean per-example feature variance against the data's (``0.25 * 63/64``, the expectation
of the per-example sample variance). Measured (256 samples, DDIM, window 0.05, cutoff 0,
``data_var = 0.25``): a model whose x0-prediction is shrunk by 10 % has variance error -0.145,
-0.073 with the shift; the exact model -0.111 (the 10-step discretisation), -0.045 with the shift.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdist as jd
from jaxdist.schedules import expand_to
from jaxdist.solvers import DDIM, DPMSolverPP, TimeShift
from jaxdist.testing.gmm import ExactDenoiser

D = 64
SCHEDULE = jd.schedules.VPLinear()
TRUE_VAR = 0.25 * (D - 1) / D


class ShrunkDenoiser(ExactDenoiser):
    """The exact mixture denoiser with ``x0_hat`` shrunk by ``factor`` (exposure bias)."""

    def __init__(self, mixture, schedule, factor):
        super().__init__(mixture, schedule)
        self.factor = factor

    def __call__(self, x, t, **cond):
        x0, _ = super().__call__(x, t)
        x0 = self.factor * x0
        a, s = expand_to(self.schedule.alpha(t), x), expand_to(self.schedule.sigma(t), x)
        return x0, (x - a * x0) / s


def _problem(n=256):
    gmm = jd.testing.GaussianMixture(weights=[1.0, 1.0], means=[[0.3] * D, [-0.3] * D],
                                     variances=[[0.25] * D] * 2)
    x_T = jax.random.normal(jax.random.key(0), (n, D), jnp.float64)
    return gmm, x_T, jd.grids.time_uniform(SCHEDULE, 10, final_zero=False)


def _var_error(x):
    return float(jnp.mean(jnp.var(x, axis=1)) - TRUE_VAR)


def test_no_shift_is_the_base_solver(x64):
    gmm, x_T, grid = _problem(32)
    den = gmm.denoiser(SCHEDULE)
    base = DPMSolverPP(order=2)
    ref = jd.sample(base, den, x_T, grid).x
    # window 0: statically the base solver; cutoff at t_max: every step is below it (traced)
    np.testing.assert_array_equal(jd.sample(TimeShift(base, window=0.0, cutoff=0.0), den, x_T,
                                            grid).x, ref)
    out = jd.sample(TimeShift(base, window=0.1, cutoff=SCHEDULE.t_max), den, x_T, grid)
    np.testing.assert_allclose(out.x, ref, rtol=0, atol=1e-13)
    assert int(out.nfe) == 10


@pytest.mark.parametrize("factor,base_err,ts_err", [(0.9, -0.145, -0.073), (1.0, -0.111, -0.045)],
                         ids=["shrunk-model", "exact-model"])
def test_shift_reduces_variance_error(x64, factor, base_err, ts_err):
    gmm, x_T, grid = _problem()
    den = ShrunkDenoiser(gmm, SCHEDULE, factor)
    err_base = _var_error(jd.sample(DDIM(), den, x_T, grid).x)
    err_ts = _var_error(jd.sample(TimeShift(DDIM(), window=0.05, cutoff=0.0, data_var=0.25),
                                  den, x_T, grid).x)
    assert abs(err_base - base_err) < 0.01, err_base  # the bias the shift has to fix
    assert abs(err_ts - ts_err) < 0.01, err_ts
    assert abs(err_ts) < 0.6 * abs(err_base)  # at least 40 % less variance error


def test_shifted_times_follow_the_variance(x64):
    t = jnp.asarray(0.5)
    v_t = float(SCHEDULE.alpha(t) ** 2 * 0.25 + SCHEDULE.sigma(t) ** 2)
    x = jnp.sqrt(jnp.asarray([0.8, 1.0, 1.2])[:, None] * v_t) * jax.random.normal(
        jax.random.key(1), (3, 4096))
    shift = jax.jit(lambda x, t: jd.solvers.time_shift.shifted_times(SCHEDULE, x, t, 0.1, 0.0, 21,
                                                                      0.25))
    ts = shift(x, t)
    assert float(ts[0]) < 0.5 < float(ts[2]) and abs(float(ts[1]) - 0.5) <= 0.011
    assert float(jnp.max(jnp.abs(ts - 0.5))) <= 0.1 + 1e-12


def test_bad_input():
    with pytest.raises(ValueError, match="base=Heun"):
        TimeShift(jd.solvers.Heun())
    with pytest.raises(ValueError, match="base=DPMSolverPP"):
        TimeShift(DPMSolverPP(order=2, method="singlestep"))
    with pytest.raises(ValueError, match="window"):
        TimeShift(DDIM(), window=-1.0)
    with pytest.raises(ValueError, match="n_candidates"):
        TimeShift(DDIM(), n_candidates=4)
    with pytest.raises(ValueError, match="data_var"):
        TimeShift(DDIM(), data_var=-0.1)
