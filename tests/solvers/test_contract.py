"""The solver contract, checked for every registered solver (registering one is all it takes).

For each ``jd.solvers.registry.SOLVERS`` entry: hashable and ``dataclasses.replace`` round-trips;
``jit`` with a traced grid equals eager on a concrete grid (values and NFE), with and without a
final step to ``t = 0`` (the traced run checked for NFE and finiteness on both); ``nfe(n)``
equals the NFE measured; the hand-written ``init``/``step`` loop
equals ``jd.sample``; ``vmap`` over examples equals the batched run (deterministic solvers);
``order`` equals the empirical order on the exact Gaussian oracle in float64 within 0.15
(deterministic solvers; stochastic ones have strong/weak-order tests in test_sde*.py); stochastic
solvers require a key and repeat exactly with the same key; a bf16 model gives finite float32
output.

Order protocol: VPLinear, Karras (rho = 7) grids from ``t = 0.6`` to ``t = 0.05`` with 64, 128
and 256 steps. Starting inside the schedule keeps warm-up and final lower-order steps visible
(from ``t = 1`` to ``1e-3`` the model output is nearly constant at both ends, and their ``O(h^2)``
error terms would only show at thousands of steps).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdist as jd
from jaxdist.solvers import registry
from problems import GAUSSIAN

NAMES = sorted(registry.SOLVERS)
SCHEDULE = jd.schedules.VPLinear()
ORDER_STEPS = (64, 128, 256)


def _solver(name):
    return registry.by_name(name)


def _key(solver):
    return jax.random.key(7) if solver.stochastic else None


def _den(dtype=None):
    gmm = jd.testing.GaussianMixture(**GAUSSIAN)
    if dtype is None:
        return gmm, gmm.denoiser(SCHEDULE)
    fn = lambda x, t: gmm.predictions(SCHEDULE, x, t)[1].astype(dtype)  # noqa: E731
    return gmm, jd.Denoiser(fn, SCHEDULE, "eps")


def _grids(n):
    return {"positive": jd.grids.karras(SCHEDULE, n, t_start=1.0, t_end=1e-3),
            "final_zero": jd.grids.karras(SCHEDULE, n, t_start=1.0, t_end=1e-3, final_zero=True)}


@pytest.mark.parametrize("name", NAMES)
def test_metadata(name):
    solver = _solver(name)
    assert hash(solver) == hash(_solver(name)) and solver == _solver(name)
    assert dataclasses.replace(solver) == solver
    assert jax.tree.leaves(solver) == []  # a static pytree: usable as a jit argument
    assert isinstance(solver.order, int) and solver.order >= 1
    assert isinstance(solver.stochastic, bool)
    for n in (1, 2, 5):
        assert isinstance(solver.nfe(n), int) and solver.nfe(n) >= n
    if solver.stochastic:
        assert solver.strong_order is None or solver.strong_order > 0
        assert solver.weak_order is None or solver.weak_order > 0


@pytest.mark.parametrize("name", NAMES)
def test_jit_eager_nfe_vmap_and_manual_loop(name):
    """Same values and NFE eagerly and under jit with a traced grid (finite, exact NFE also on a
    grid ending at t > 0); ``nfe(n)`` is exact; ``init``/``step`` by hand agree; ``vmap`` over examples
    equals the batched run (deterministic solvers)."""
    solver = _solver(name)
    _, den = _den()
    x_T = jax.random.normal(jax.random.key(0), (4, 3))
    n = 4  # warm-up, bulk and lower-order final steps of every registered solver
    traced = jax.jit(lambda x, g: jd.sample(solver, den, x, g, _key(solver)))
    grid = _grids(n)["final_zero"]
    eager = jd.sample(solver, den, x_T, grid, _key(solver))  # concrete grid, op by op
    via_arg = {label: traced(x_T, g) for label, g in _grids(n).items()}  # one compilation
    for label, res in via_arg.items():
        assert int(res.nfe) == solver.nfe(n) and bool(res.all_finite), label
    assert int(eager.nfe) == solver.nfe(n) and bool(eager.all_finite)
    # float32; relative to the output's scale (XLA's fused jit code rounds differently, and
    # ancestral multistep weights like RES's phi_2 / c_2 amplify it: ~1e-4; a wrong step is O(1))
    tol = 2e-4 * max(1.0, float(jnp.max(jnp.abs(eager.x))))
    np.testing.assert_allclose(via_arg["final_zero"].x, eager.x, rtol=2e-4, atol=tol)

    @jax.jit
    def by_hand(x_T):  # the documented loop (compiled here only to keep the test fast)
        model = jd.DenoiserModel(den)
        coefs = solver.coefficients(SCHEDULE, grid)
        state = solver.init(x_T, model.start(x_T))
        keys = jax.random.split(_key(solver), n) if solver.stochastic else [None] * n
        for i in range(n):
            state = solver.step(model, state, jd.solvers.coefs_at(coefs, i), keys[i])
        return solver.finish(state)

    x, ms = by_hand(x_T)
    np.testing.assert_allclose(x, eager.x, rtol=2e-4, atol=tol)
    assert int(ms.nfe) == solver.nfe(n)
    if not solver.stochastic:
        one = jax.vmap(lambda x: jd.sample(solver, den, x[None], grid).x[0])(x_T)
        np.testing.assert_allclose(one, eager.x, rtol=2e-4, atol=tol)


@pytest.mark.parametrize("name", [n for n in NAMES if not _solver(n).stochastic])
def test_order_is_the_measured_order(x64, name):
    solver = _solver(name)
    gmm, den = _den()
    x_T = jax.random.normal(jax.random.key(0), (8, 3), jnp.float64)
    res = jd.testing.measure_order(
        solver, den, x_T, ORDER_STEPS,
        lambda n: jd.grids.karras(SCHEDULE, n, t_start=0.6, t_end=0.05),
        lambda g: gmm.ode_solution(SCHEDULE, x_T, g[0], g[-1]))
    assert abs(res.order - solver.order) <= 0.15, res
    assert res.nfe == tuple(solver.nfe(n) for n in ORDER_STEPS)


@pytest.mark.parametrize("name", [n for n in NAMES if _solver(n).stochastic])
def test_stochastic_solvers_need_and_honour_the_key(name):
    solver = _solver(name)
    _, den = _den()
    x_T = jax.random.normal(jax.random.key(0), (4, 3))
    grid = _grids(5)["positive"]
    with pytest.raises(ValueError, match="stochastic: pass key"):
        jd.sample(solver, den, x_T, grid)
    run = jax.jit(lambda key: jd.sample(solver, den, x_T, grid, key).x)
    a, b, c = run(jax.random.key(3)), run(jax.random.key(3)), run(jax.random.key(4))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("name", NAMES)
def test_bf16_model_gives_finite_float32(name):
    solver = _solver(name)
    _, den = _den(jnp.bfloat16)
    x_T = jax.random.normal(jax.random.key(0), (4, 3), jnp.float32)
    res = jd.sample(solver, den, x_T, _grids(4)["final_zero"], _key(solver))
    assert res.x.dtype == jnp.float32 and bool(res.all_finite)
