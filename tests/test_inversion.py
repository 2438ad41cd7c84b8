"""Inversion (data -> noise on increasing grids), reconstruction and inpainting (float64).

The data is a 2-component 1-D mixture, so the PF-ODE is not linear and no method
superconverges; the reference is the oracle's Dopri8 solve (rtol 1e-11)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdist as jd

SCHED = jd.schedules.VPLinear()
MIX = jd.testing.GaussianMixture([0.4, 0.6], [[-1.0], [1.2]], [[0.3], [0.5]])
STEPS = (16, 32, 64, 128)


def up_grid(n):
    """Increasing log-SNR-uniform grid from t_min to t_max."""
    return jd.grids.logsnr_uniform(SCHED, n)[::-1]


def data(n=16):
    return MIX.sample(jax.random.key(0), n).astype(jnp.float64)


def test_invert_checks_arguments():
    den, x = MIX.denoiser(SCHED), jnp.zeros((2, 1))
    with pytest.raises(ValueError, match="increasing"):
        jd.invert(jd.solvers.DDIM(), den, x, jd.grids.logsnr_uniform(SCHED, 4))
    with pytest.raises(ValueError, match="> 0"):
        jd.invert(jd.solvers.DDIM(), den, x, jnp.array([0.0, 0.5, 1.0]))
    with pytest.raises(ValueError, match="outside"):
        jd.invert(jd.solvers.DDIM(), den, x, jnp.array([0.1, 0.5, 2.0]))
    with pytest.raises(ValueError, match="not supported"):
        jd.invert(jd.solvers.UniPC(), den, x, up_grid(3))


@pytest.mark.parametrize("solver,order,round_trip_order", [
    (jd.solvers.DDIM(), 1, 1),
    (jd.solvers.DPMSolverPP(order=2), 2, 3),
    (jd.solvers.DPMSolverPP(order=3, warmup="singlestep"), 3, 3),
], ids=["ddim", "dpm++2m", "dpm++3m"])
def test_inversion_and_reconstruction_orders(x64, solver, order, round_trip_order):
    """Inversion alone (h < 0 in every DPM-Solver coefficient) converges at the solver's order
    to the reference solve of the PF-ODE from t_min up to t_max. Sampling back with the same
    solver on the reversed grid reconstructs the data with an error that falls as the step count
    grows. Measured orders (16..128 steps, last 3): inversion DDIM 1.0, 2M 2.0, 3M 3.0;
    round trip DDIM 0.97, 2M 2.98, 3M 2.87. 2M's round trip gains one order: its leading local
    error is odd in h, so the errors of the up and down passes cancel at leading order; DDIM's
    (even in h) and 3M's do not."""
    den, x = MIX.denoiser(SCHED), data()
    ref = MIX.ode_solution(SCHED, x, SCHED.t_min, SCHED.t_max)
    inv_errs, rt_errs = [], []
    for n in STEPS:
        g = up_grid(n)
        inv = jd.invert(solver, den, x, g)
        assert int(inv.nfe) == n + (order == 3)  # 3M's singlestep warm-up: one stage more
        inv_errs.append(float(jnp.max(jnp.abs(inv.x - ref))))
        rec = jd.sample(solver, den, inv.x, g[::-1]).x
        rt_errs.append(float(jnp.max(jnp.abs(rec - x))))
    p_inv = jd.testing.empirical_order(STEPS, inv_errs, last=3)
    p_rt = jd.testing.empirical_order(STEPS, rt_errs, last=3)
    assert abs(p_inv - order) <= 0.15, (p_inv, inv_errs)
    assert abs(p_rt - round_trip_order) <= 0.15, (p_rt, rt_errs)


def test_guided_inversion_round_trip(x64):
    """Inversion through a guided denoiser (CFG, scale 3, a regular ODE) reconstructs at first
    order with DDIM. CFG++ cannot be inverted to vanishing error (its steps have no ODE limit):
    its round-trip error does not fall with the step count."""
    m0 = jd.testing.GaussianMixture([1.0], [[-1.0]], [[0.3]])
    m1 = jd.testing.GaussianMixture([1.0], [[1.2]], [[0.5]])

    def fn(x, t, y):
        e = jnp.stack([m.predictions(SCHED, x, t)[1] for m in (m0, m1, MIX)])
        return jnp.take_along_axis(e, y[None, :, None], 0)[0]

    base = jd.Denoiser(fn, SCHED, "eps")
    x, cond = data(8), {"y": jnp.ones((8,), jnp.int32)}

    def round_trip(den, n):
        g = up_grid(n)
        lat = jd.invert(jd.solvers.DDIM(), den, x, g, cond=cond).x
        rec = jd.sample(jd.solvers.DDIM(), den, lat, g[::-1], cond=cond).x
        return float(jnp.max(jnp.abs(rec - x)))

    steps = (32, 64, 128)
    errs = [round_trip(jd.guidance.CFG(base, 3.0, {"y": 2}), n) for n in steps]
    assert abs(jd.testing.empirical_order(steps, errs) - 1.0) <= 0.2, errs
    cpp = jd.guidance.CFGPlusPlus(base, 0.7, {"y": 2})
    assert round_trip(cpp, 128) > round_trip(cpp, 32) > 0.1


def test_inpainting_matches_the_replacement_ode(x64):
    """2-D mixture, modes at (-3, -3) and (3, 3); the first coordinate is known (= 3). The known
    coordinate follows ``alpha_t 3 + sigma_t z`` exactly, and the filled-in coordinate matches a
    Dopri8 solve (rtol 1e-10) of its PF-ODE with the known path substituted, from the same x_T
    (3M, 200 steps: 90% of the samples to 1e-3; those near the separatrix of the two modes are
    sensitive, to 0.02). Replacement is an approximation of conditional
    sampling: most, but not all, samples end in the +3 mode (without inpainting: half)."""
    import diffrax

    mix = jd.testing.GaussianMixture([0.5, 0.5], [[-3.0, -3.0], [3.0, 3.0]], [[0.2, 0.2]] * 2)
    n = 256
    known = jnp.zeros((n, 2)).at[:, 0].set(3.0)
    inp = jd.Inpaint(mix.denoiser(SCHED), known, jnp.array([1.0, 0.0]), jax.random.key(1))
    g = jd.grids.logsnr_uniform(SCHED, 200)
    x_T = inp.start(jax.random.normal(jax.random.key(2), (n, 2), jnp.float64), g[0])

    def drift(t, x2, args):
        x = jnp.concatenate([inp.known_at(t)[:, :1], x2], 1)
        return SCHED.f(t) * x2 - 0.5 * SCHED.g2(t) * mix.score(SCHED, x, t)[:, 1:]

    ref = diffrax.diffeqsolve(diffrax.ODETerm(drift), diffrax.Dopri8(), t0=float(g[0]),
                              t1=float(g[-1]), dt0=-1e-3, y0=x_T[:, 1:],
                              stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-10),
                              max_steps=100_000).ys[0, :, 0]
    for solver in (jd.solvers.DDIM(), jd.solvers.DPMSolverPP(order=3)):
        out = jd.sample(solver, inp, x_T, g).x
        np.testing.assert_allclose(out[:, 0], inp.known_at(g[-1])[:, 0], atol=1e-12)
    err = jnp.abs(out[:, 1] - ref)
    assert float(jnp.quantile(err, 0.9)) < 1e-3 and float(jnp.max(err)) < 0.02
    right = float(jnp.mean(out[:, 1] > 0))
    assert right > 0.75, right
    with pytest.raises(ValueError, match="exactly one"):
        jd.Inpaint(mix.denoiser(SCHED), known, jnp.array([1.0, 0.0]))
