"""StepPlan: per-step solver families and orders as data.

* A constant plan equals the plain solver (DPM-Solver++ 3M, UniPC-2/3, DEIS-3) to 1e-10, and
  the Euler family equals explicit Euler on the PF-ODE in t, on VP / EDM / rectified flow.
* Changing the plan arrays under ``jax.jit`` does not retrace or recompile.
* A mixed plan (UniPC-2 and DPM-Solver++ 2M steps alternating) converges at order 2.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdist as jd
from jaxdist.solvers import DEIS, DPMSolverPP, StepPlan, UniPC
from jaxdist.solvers.plans import FAMILIES
from problems import GAUSSIAN, SCHEDULES

N = 9


def _problem(name):
    schedule, t0, t1 = SCHEDULES[name]
    gmm = jd.testing.GaussianMixture(**GAUSSIAN)
    x_T = jax.random.normal(jax.random.key(0), (4, gmm.dim), jnp.result_type(float))
    x_T = x_T * schedule.sigma(t0)
    return schedule, gmm.denoiser(schedule), x_T, jd.grids.logsnr_uniform(schedule, N, t0, t1)


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_constant_plan_equals_plain_solver(x64, name):
    schedule, den, x_T, grid = _problem(name)
    cases = [("unipc", UniPC(order=2)), ("deis", DEIS(order=3))]
    if name == "vp":
        cases += [("dpm++", DPMSolverPP(order=3)), ("unipc", UniPC(order=3, variant="bh1"))]
    for family, solver in cases:
        plan = StepPlan.constant(family, solver.solver_order, N,
                                 lower_order_final=solver.lower_order_final,
                                 variant=getattr(solver, "variant", "bh2"))
        np.testing.assert_allclose(jd.sample(plan, den, x_T, grid).x,
                                   jd.sample(solver, den, x_T, grid).x, rtol=0, atol=1e-10,
                                   err_msg=repr(solver))


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_euler_family_is_explicit_euler_in_t(x64, name):
    schedule, den, x_T, grid = _problem(name)
    x = x_T
    for s, t in zip(grid[:-1], grid[1:]):
        x0, eps = den(x, s)
        x = x + (t - s) * (schedule.d_alpha(s) * x0 + schedule.d_sigma(s) * eps)
    plan = StepPlan.constant("euler", 1, N)
    np.testing.assert_allclose(jd.sample(plan, den, x_T, grid).x, x, rtol=0, atol=1e-10)


def test_changing_the_plan_does_not_retrace(x64):
    schedule, den, x_T, grid = _problem("vp")
    traces = []

    @jax.jit
    def run(plan, x):
        traces.append(1)  # Python side effect: runs once per trace
        return jd.sample(plan, den, x, grid).x

    rng = np.random.default_rng(0)
    outs = []
    for i in range(4):
        plan = StepPlan(jnp.asarray(rng.integers(1, 4, N), jnp.int32),
                        jnp.asarray(rng.integers(0, 4, N), jnp.int32))
        outs.append(run(plan, x_T))
        if i == 0:  # the jitted plan run equals the same plan run eagerly
            np.testing.assert_allclose(outs[-1], jd.sample(plan, den, x_T, grid).x, atol=1e-10)
    assert len(traces) == 1 and run._cache_size() == 1
    assert len({float(o.sum()) for o in outs}) > 1  # the plans really differ


def test_mixed_plan_converges(x64):
    """Alternating UniPC-2 and DPM-Solver++ 2M steps (both data prediction): the UniC steps
    give local error O(h^4), the 2M steps O(h^3): global order 2."""
    schedule, t0, t1 = SCHEDULES["vp"]
    gmm = jd.testing.GaussianMixture(**GAUSSIAN)
    den = gmm.denoiser(schedule)
    x_T = jax.random.normal(jax.random.key(0), (4, 3), jnp.float64)

    def solver_for(n):
        fams = ["unipc" if i % 2 else "dpm++" for i in range(n)]
        return StepPlan.from_names([2] * n, fams)

    errors = []
    steps = (128, 256)
    for n in steps:
        grid = jd.grids.logsnr_uniform(schedule, n, t0, t1)
        x = jd.sample(solver_for(n), den, x_T, grid).x
        errors.append(float(jnp.max(jnp.abs(x - gmm.ode_solution(schedule, x_T, t0, t1)))))
    assert abs(jd.testing.empirical_order(steps, errors) - 2) <= 0.15, errors
    assert solver_for(8).order == 2


def test_invalid_plans():
    schedule, den, x_T, grid = _problem("vp")
    with pytest.raises(ValueError, match="one entry per step"):
        jd.sample(StepPlan.constant("dpm++", 2, N + 1), den, x_T, grid)
    with pytest.raises(ValueError, match="orders must be in"):
        jd.sample(StepPlan.from_names([4] * N, ["unipc"] * N), den, x_T, grid)
    with pytest.raises(ValueError, match="unknown families"):
        StepPlan.from_names([1], ["heun"])
    with pytest.raises(ValueError, match="variant"):
        StepPlan.constant("unipc", 2, N, variant="bh3")
    assert set(FAMILIES) == {"dpm++", "unipc", "deis", "euler"}
