"""``jd.tune``: grids (and solver coefficients) learned by gradient through ``jd.sample``.

Problem: the built-in 8-component mixture (``jd.testing.builtin_mixture``, 2-D) under VP-linear,
DPM-Solver++ 2M with 5 steps ending at ``t = 0``, 40 starting points (10 held out), float64, the
default teacher (a fine third-order solve). Measured here: the learned grid stays strictly
decreasing and inside the schedule's range for any parameter value; tuning lowers the held-out
RMS error to below 0.7x its initial value (typically ~0.3x); coefficient tuning starts exactly at
the base solver; JSON round-trips exactly; bad input gets a clear error.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdist as jd
from jaxdist.tune import Corrected, GridParams, Tuned, grid_from_params, params_from_grid

SCHEDULE = jd.schedules.VPLinear()
N_STEPS = 5
SOLVER = jd.solvers.DPMSolverPP(order=2)
TUNE = dict(steps=25, learning_rate=0.05, validation=0.25, teacher_steps=64, progress=False)


def _problem():
    gmm = jd.testing.builtin_mixture()
    x_T = jax.random.normal(jax.random.key(0), (40, 2), jnp.float64)
    return gmm.denoiser(SCHEDULE), x_T


@pytest.fixture(scope="module")
def tuned():
    """``(den, x_T, grid-tuned, solver-tuned)``, float64."""
    # the global flag, not a `jax.enable_x64` context held across `yield`: the autouse
    # `_restore_x64` (conftest) would read the context's True and write it to the global flag,
    # leaking float64 into every later test of this process
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        den, x_T = _problem()
        by_grid = jd.tune.optimise_grid(SOLVER, den, x_T, N_STEPS, **TUNE)
        by_solver = jd.tune.optimise_solver(SOLVER, den, x_T, N_STEPS, **TUNE)
        yield den, x_T, by_grid, by_solver
    finally:
        jax.config.update("jax_enable_x64", previous)


def _assert_valid(grid, schedule, t_start, final_zero):
    g = np.asarray(grid)
    assert g[0] == pytest.approx(t_start, rel=1e-12)
    assert np.all(np.diff(g) < 0), g
    positive = g[:-1] if final_zero else g
    assert positive.min() >= schedule.t_min and positive.max() <= t_start
    assert (g[-1] == 0) == final_zero


@pytest.mark.parametrize("final_zero", [True, False])
def test_parametrised_grid_is_monotone_and_inside_the_range(final_zero, x64):
    for schedule, t_start in ((SCHEDULE, 1.0), (jd.schedules.EDM(), 80.0),
                              (jd.schedules.RectifiedFlow(), 1.0)):
        for seed in range(5):
            k1, k2 = jax.random.split(jax.random.key(seed))
            m = 4 if final_zero else 5
            params = GridParams(3.0 * jax.random.normal(k1, (m,)), 3.0 * jax.random.normal(k2, ()))
            _assert_valid(grid_from_params(params, schedule, t_start, final_zero), schedule,
                          t_start, final_zero)
        init = jd.grids.time_uniform(schedule, 5, t_start, 2 * schedule.t_min,
                                     final_zero=final_zero)
        back = grid_from_params(params_from_grid(init, schedule, final_zero), schedule,
                                float(init[0]), final_zero)
        np.testing.assert_allclose(back, init, rtol=1e-4)


def test_tuning_the_grid_lowers_the_validation_error(tuned):
    den, _, by_grid, _ = tuned
    history = by_grid.history
    assert len(history) == TUNE["steps"] + 1 and history[0]["train_loss"] is None
    first, best = history[0]["val_rms"], min(h["val_rms"] for h in history)
    assert best < 0.7 * first, (first, best)
    assert by_grid.solver == SOLVER and by_grid.seconds > 0
    _assert_valid(by_grid.grid, SCHEDULE, 1.0, True)


def test_tuning_the_solver_starts_at_the_base_solver_and_improves(tuned):
    _, _, by_grid, by_solver = tuned
    # same split and initial grid; zero corrections: the first validation error is the base's
    assert by_solver.history[0]["val_rms"] == pytest.approx(by_grid.history[0]["val_rms"],
                                                            rel=1e-12)
    assert isinstance(by_solver.solver, Corrected) and by_solver.solver.base == SOLVER
    assert any(float(jnp.max(jnp.abs(v))) > 0 for v in by_solver.solver.scales.values())
    best = min(h["val_rms"] for h in by_solver.history)
    assert best < 0.7 * by_solver.history[0]["val_rms"]


def test_soft_teacher_forcing_moves_inputs_within_the_ball_and_tunes(x64):
    """LD3's soft teacher forcing: the student inputs move (mean shift > 0) but stay within
    ``r ||x_T||``; the steps it accepts lower the loss, so the tuned grid still beats the start
    on the held-out original noise; ``soft_radius`` outside [0, 1) is an error."""
    den, x_T = _problem()
    r = 0.05
    soft = jd.tune.optimise_grid(SOLVER, den, x_T, N_STEPS, soft_radius=r, **TUNE)
    shifts = [h["soft_shift"] for h in soft.history[1:]]
    assert 0 < shifts[-1] <= r * (1 + 1e-9) and all(0 <= s <= r * (1 + 1e-9) for s in shifts)
    first, best = soft.history[0]["val_rms"], min(h["val_rms"] for h in soft.history)
    assert best < 0.7 * first, (first, best)
    _assert_valid(soft.grid, SCHEDULE, 1.0, True)
    with pytest.raises(ValueError, match="soft_radius=1.5 must be in"):
        jd.tune.optimise_grid(SOLVER, den, x_T, N_STEPS, soft_radius=1.5, **TUNE)


def test_zero_corrections_are_the_base_solver(x64):
    den, x_T = _problem()
    grid = jd.grids.logsnr_uniform(SCHEDULE, N_STEPS, final_zero=True)
    ident = Corrected.identity(SOLVER, SCHEDULE, grid)
    assert set(ident.scales) == {"c", "w", "v"}
    np.testing.assert_array_equal(jd.sample(ident, den, x_T, grid).x,
                                  jd.sample(SOLVER, den, x_T, grid).x)
    with pytest.raises(ValueError, match="fitted for 5 steps"):
        jd.sample(ident, den, x_T, jd.grids.logsnr_uniform(SCHEDULE, 4))


def test_json_round_trip(tuned, tmp_path):
    den, x_T, by_grid, by_solver = tuned
    with jax.enable_x64(True):
        for t in (by_grid, by_solver):
            path = t.save(tmp_path / "t.json")
            back = Tuned.load(path, SCHEDULE)
            np.testing.assert_array_equal(back.grid, t.grid)
            assert back.history == t.history and back.schedule == t.schedule
            np.testing.assert_array_equal(back.sample(den, x_T[:4]).x, t.sample(den, x_T[:4]).x)
        with pytest.raises(ValueError, match="tuned for VPLinear"):
            Tuned.load(path, jd.schedules.EDM())
        with pytest.raises(ValueError, match="tuned for VPLinear"):
            back.sample(jd.testing.builtin_mixture().denoiser(jd.schedules.VPCosine()), x_T)
        with pytest.raises(ValueError, match="tuned for solver 'dpm\\+\\+2m'"):
            Tuned.load(path, SCHEDULE, solver=jd.solvers.DDIM())
        (tmp_path / "bad.json").write_text("{}")
        with pytest.raises(ValueError, match="not a jaxdist tuning"):
            Tuned.load(tmp_path / "bad.json")


def test_bad_input_gets_clear_errors(x64):
    den, x_T = _problem()
    fit = jd.tune.optimise_grid
    with pytest.raises(ValueError, match="teacher has shape"):
        fit(SOLVER, den, x_T, 3, teacher=x_T[:, :1])
    with pytest.raises(ValueError, match="teacher contains non-finite"):
        fit(SOLVER, den, x_T, 3, teacher=x_T.at[0, 0].set(jnp.nan))
    with pytest.raises(ValueError, match="n_steps=1: DPMSolverPP needs at least 2"):
        fit(SOLVER, den, x_T, 1, teacher=x_T)
    with pytest.raises(ValueError, match="n_steps=0"):
        fit(SOLVER, den, x_T, 0, teacher=x_T, final_zero=False)
    with pytest.raises(TypeError, match="n_steps must be an int"):
        fit(SOLVER, den, x_T, 2.5, teacher=x_T)
    with pytest.raises(ValueError, match="stochastic"):
        fit(jd.solvers.DDIM(eta=1.0), den, x_T, 3, teacher=x_T)
    with pytest.raises(TypeError, match="chooses its own steps: it has no grid to tune"):
        fit(jd.solvers.AdaptiveDPMSolver(), den, x_T, 3, teacher=x_T)
    with pytest.raises(ValueError, match="init has 5 times"):
        fit(SOLVER, den, x_T, 3, teacher=x_T, init=jd.grids.logsnr_uniform(SCHEDULE, 4))
    with pytest.raises(ValueError, match="init='bogus'"):
        fit(SOLVER, den, x_T, 3, teacher=x_T, init="bogus")
    with pytest.raises(ValueError, match="validation=0.01"):
        fit(SOLVER, den, x_T, 3, teacher=x_T, validation=0.01)
    with pytest.raises(ValueError, match="t_start=2.0"):
        fit(SOLVER, den, x_T, 3, teacher=x_T, t_start=2.0)
    with pytest.raises(ValueError, match="cannot start where alpha = 0"):
        fit(jd.solvers.DPMSolver(), jd.testing.builtin_mixture().denoiser(
            jd.schedules.RectifiedFlow()), x_T, 3, teacher=x_T)
