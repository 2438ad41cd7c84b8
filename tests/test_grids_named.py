"""Every named grid on every schedule, ComfyUI's time-based schedulers, flow shifts, by_name."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdist as jd
from jaxdist.grids import GRIDS, by_name, validate_grid
from jaxdist.grids.common import evaluate

from test_schedules import SD, make_schedules

# (grid, schedule) pairs that do not apply, and the words of their error
NOT_APPLICABLE = {
    ("ddim_uniform", "*"): "needs a VPDiscrete", ("linspace", "*"): "needs a VPDiscrete",
    ("leading", "*"): "needs a VPDiscrete", ("trailing", "*"): "needs a VPDiscrete",
    ("flow_match", "*"): "rectified-flow grid", ("ays_svd", "*"): "outside",
    ("logsnr_uniform", "RectifiedFlow"): "log-SNR is infinite",
    ("exponential", "RectifiedFlow"): "log-SNR is infinite",
    ("polyexponential", "RectifiedFlow"): "log-SNR is infinite",
    ("karras", "RectifiedFlow"): "infinite",
}
ONLY_ON = {"ddim_uniform": "VPDiscrete", "linspace": "VPDiscrete", "leading": "VPDiscrete",
           "trailing": "VPDiscrete", "flow_match": "RectifiedFlow"}


APPLIES = {("ays_svd", "RectifiedFlow")}  # [0.002, 700] is inside RF's [0.001, inf)


def _expected_error(grid, schedule_name):
    if ONLY_ON.get(grid) == schedule_name or (grid, schedule_name) in APPLIES:
        return None
    return NOT_APPLICABLE.get((grid, schedule_name), NOT_APPLICABLE.get((grid, "*")))


@pytest.mark.parametrize("schedule_name", list(make_schedules()))
def test_every_grid_on_every_schedule(x64, schedule_name):
    """Strictly decreasing, inside the schedule's range (validate_grid), n + 1 times, from
    t_max; ComfyUI / k-diffusion names end at t = 0. Grids that do not apply say why."""
    schedule = make_schedules()[schedule_name]
    for name in GRIDS:
        for n in (4, 10):
            words = _expected_error(name, schedule_name)
            if words is not None:
                with pytest.raises(ValueError, match=words):
                    by_name(name, schedule, n)
                continue
            grid = np.asarray(by_name(name, schedule, n))
            validate_grid(schedule, grid)
            steps = {"ddim_uniform": len(range(1, 1000, 1000 // n))}.get(name, n)
            assert grid.shape == (steps + 1,), (name, n)
            assert grid.dtype == np.float64
            if name not in ("time_uniform", "time_quadratic", "logsnr_uniform"):
                assert grid[-1] == 0.0, name
            if name.startswith(("ays", "gits", "ddim_uniform", "leading")):
                continue  # they start below t_max by design
            assert grid[0] == pytest.approx(schedule.t_max, rel=1e-12), name


def test_comfy_schedulers_by_definition(x64):
    """Independent checks of the definitions on SD's 1000 training timesteps (t = (k + 1) / N)."""
    sd = jd.schedules.VPDiscrete.from_diffusers_config(SD)
    np.testing.assert_allclose(jd.grids.simple(sd, 10), np.append(1 - np.arange(10) / 10, 0),
                               rtol=1e-15)
    np.testing.assert_allclose(jd.grids.normal(sd, 4), [1.0, 0.667, 0.334, 0.001, 0], rtol=1e-15)
    np.testing.assert_allclose(jd.grids.ddim_uniform(sd, 10),
                               np.append((np.arange(901, 0, -100) + 1) / 1000, 0), rtol=1e-15)
    assert jd.grids.ddim_uniform(sd, 7).shape == (9,)  # DDIM's skip of 142: 8 steps
    # sgm_uniform: timesteps linspace(999, 0, n + 1)[:-1]; between integers log sigma is linear
    grid = jd.grids.sgm_uniform(sd, 4)
    train = np.sqrt(np.expm1(-2 * np.asarray(sd.log_alpha_knots)[1:]))
    ks = np.linspace(999, 0, 5)[:-1]
    want = np.exp(np.interp(ks, np.arange(1000), np.log(train)))
    np.testing.assert_allclose(evaluate(sd, "sigma_over_alpha", grid[:-1]), want, rtol=1e-12)
    # beta: Beta(0.6, 0.6) quantiles of the time range on continuous schedules
    from scipy.special import betaincinv

    vp = jd.schedules.VPLinear()
    u = betaincinv(0.6, 0.6, 1 - np.arange(8) / 8)
    np.testing.assert_allclose(jd.grids.beta(vp, 8)[:-1], vp.t_min + u * (vp.t_max - vp.t_min),
                               rtol=1e-14)
    assert jd.grids.beta(sd, 200).shape[0] < 201  # repeated rounded timesteps are dropped
    # linear_quadratic (Mochi): linear to threshold_noise over n // 2 steps, then quadratic
    rf = jd.schedules.RectifiedFlow()
    f = 1 - np.asarray(jd.grids.linear_quadratic(rf, 10))
    np.testing.assert_allclose(f[:5], np.arange(5) * 0.025 / 5, atol=1e-15)
    second = np.diff(f[5:], 2)
    np.testing.assert_allclose(second, second[0], rtol=1e-9)  # quadratic from the joint on
    assert f[5] == pytest.approx(0.025)  # continuous value ...
    assert f[6] - f[5] - second[0] / 2 == pytest.approx(0.025 / 5)  # ... and slope at the joint


def test_comfy_scheduler_errors():
    ve = jd.schedules.VE()
    with pytest.raises(ValueError, match="simple: t_max / n_steps.*sgm_uniform"):
        jd.grids.simple(ve, 100)
    sd = jd.schedules.VPDiscrete.from_diffusers_config(SD)
    with pytest.raises(ValueError, match="exceeds the schedule's 1000 training"):
        jd.grids.simple(sd, 1001)
    with pytest.raises(ValueError, match="alpha=-1"):
        jd.grids.beta(sd, 10, alpha=-1)
    with pytest.raises(ValueError, match="threshold_noise"):
        jd.grids.linear_quadratic(sd, 10, threshold_noise=2.0)
    with pytest.raises(ValueError, match="linear_steps=10 must be below"):
        jd.grids.linear_quadratic(sd, 10, linear_steps=10)
    with pytest.raises(ValueError, match="n_steps=True"):
        jd.grids.normal(sd, True)


# ---------------------------------------------------------------------------------------------
# flow shifts


def test_flow_shift_identities(x64):
    t = np.linspace(0, 1, 11)
    np.testing.assert_allclose(jd.grids.flow_shift(t, 3.0), jd.grids.time_shift(t, np.log(3.0)),
                               rtol=1e-14)
    s = jd.grids.flow_shift(t[1:-1], 3.0)
    np.testing.assert_allclose(s / (1 - s), 3.0 * t[1:-1] / (1 - t[1:-1]), rtol=1e-13)  # s/a x3
    assert jd.grids.flow_shift(t, 2.0)[[0, -1]].tolist() == [0.0, 1.0]
    np.testing.assert_allclose(jd.grids.time_shift(t[1:], 2.0, "linear"),
                               2.0 / (2.0 + 1 / t[1:] - 1), rtol=1e-14)
    assert jd.grids.flux_mu(256) == pytest.approx(0.5)
    assert jd.grids.flux_mu(4096) == pytest.approx(1.15)
    out = jd.grids.stretch_to_terminal(np.array([1.0, 0.7, 0.4]), 0.1)
    assert out[-1] == pytest.approx(0.1) and out[0] == pytest.approx(1.0)
    # on jax arrays: jax out, differentiable in the shift (for tuning)
    g = jax.grad(lambda a: jnp.sum(jd.grids.flow_shift(jnp.linspace(0.1, 0.9, 5), a)))(3.0)
    assert isinstance(jd.grids.flow_shift(jnp.ones(2) * 0.5, 2.0), jax.Array) and np.isfinite(g)


def test_flow_match_and_errors(x64):
    rf = jd.schedules.RectifiedFlow()
    grid = jd.grids.flow_match({"shift": 3.0}, 28)
    assert grid.shape == (29,) and float(grid[0]) == 1.0 and float(grid[-1]) == 0.0
    validate_grid(rf, grid)
    np.testing.assert_array_equal(by_name("sd3", rf, 28, shift=3.0), grid)
    np.testing.assert_array_equal(jd.grids.flow_match(None, 28, shift=3.0), grid)
    np.testing.assert_array_equal(
        jd.grids.from_diffusers({"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 3.0},
                                28), grid)
    dyn = {"use_dynamic_shifting": True}
    with pytest.raises(ValueError, match="needs mu= or image_seq_len="):
        jd.grids.flow_match(dyn, 10)
    with pytest.raises(ValueError, match="only used with config\\['use_dynamic_shifting'\\]"):
        jd.grids.flow_match({"shift": 3.0}, 10, mu=1.0)
    np.testing.assert_allclose(jd.grids.flow_match(dyn, 10, image_seq_len=4096),
                               jd.grids.flow_match(dyn, 10, mu=1.15), rtol=1e-14)
    with pytest.raises(ValueError, match="unknown options \\['shfit'\\]. Did you mean 'shift'"):
        jd.grids.flow_match(None, 10, shfit=3.0)
    with pytest.raises(ValueError, match="sigmas= must be 10 strictly decreasing"):
        jd.grids.flow_match(dyn, 10, mu=1.0, sigmas=np.linspace(0.1, 1, 10))
    with pytest.raises(ValueError, match="shift=-1"):
        jd.grids.flow_shift(0.5, -1.0)
    with pytest.raises(ValueError, match="time_shift_type"):
        jd.grids.time_shift(0.5, 1.0, "cubic")
    with pytest.raises(ValueError, match="shift_terminal"):
        jd.grids.stretch_to_terminal(np.array([1.0, 0.5]), 1.5)


# ---------------------------------------------------------------------------------------------
# by name


def test_by_name_aliases_and_errors(x64):
    sd = jd.schedules.VPDiscrete.from_diffusers_config(SD)
    np.testing.assert_array_equal(by_name("Time-Uniform", sd, 5), jd.grids.time_uniform(sd, 5))
    np.testing.assert_array_equal(by_name("LOGSNR", sd, 5), jd.grids.logsnr_uniform(sd, 5))
    np.testing.assert_array_equal(by_name("karras", sd, 5),
                                  jd.grids.karras(sd, 5, final_zero=True))
    np.testing.assert_array_equal(by_name("karras", sd, 5, final_zero=False, rho=3.0),
                                  jd.grids.karras(sd, 5, rho=3.0))
    np.testing.assert_array_equal(by_name("trailing", sd, 7),
                                  jd.grids.from_diffusers(dict(SD, timestep_spacing="trailing"), 7))
    with pytest.raises(ValueError, match="unknown grid 'karas'. Did you mean 'karras'"):
        by_name("karas", sd, 10)
    with pytest.raises(ValueError, match="Known grids: ays"):
        by_name("zzz", sd, 10)
    with pytest.raises(ValueError, match="grid 'karras' has no option 'rh'. Did you mean 'rho'"):
        by_name("karras", sd, 10, rh=5)
    with pytest.raises(ValueError, match="steps_offset=1 repeats or leaves"):
        by_name("leading", sd, 999, steps_offset=1)


def test_zero_final_step_grid_is_named(x64):
    """diffusers' Karras + final_sigmas_type='sigma_min' (n points and sigma_min again): jd.sample
    names the repeated end and the fix; without it, it is jaxdist's Karras grid of n - 1 steps."""
    cfg = dict(SD, _class_name="DPMSolverMultistepScheduler", use_karras_sigmas=True,
               final_sigmas_type="sigma_min")
    grid = jd.grids.from_diffusers(cfg, 8)
    schedule = jd.grids.diffusers_schedule(cfg)
    assert grid.shape == (9,) and float(grid[-1]) == float(grid[-2]) == 1e-3
    np.testing.assert_allclose(grid[:-1], jd.grids.karras(schedule, 7), rtol=1e-12)
    gmm = jd.testing.GaussianMixture([1.0], [[0.5, -0.5]], [0.2])
    x_T = jax.random.normal(jax.random.key(0), (4, 2))
    with pytest.raises(ValueError, match="repeats its last time.*grid\\[:-1\\]"):
        jd.sample(jd.solvers.DPMSolverPP(order=2), gmm.denoiser(schedule), x_T, grid)
    validate_grid(schedule, grid[:-1])


class _PlainEDM(jd.schedules.Schedule):
    """A user's schedule that is not registered as a pytree (sigma = t, alpha = 1)."""

    t_min, t_max = 0.002, 80.0

    def log_alpha(self, t):
        return jnp.zeros_like(jnp.asarray(t))

    def sigma(self, t):
        return jnp.asarray(t)

    def t_from_log_snr(self, lam):
        return jnp.exp(-0.5 * jnp.asarray(lam))


def test_grids_on_a_schedule_that_is_not_a_pytree(x64):
    plain, edm = _PlainEDM(), jd.schedules.EDM()
    for name in ("karras", "exponential", "ays", "kl_optimal", "sgm_uniform"):
        np.testing.assert_allclose(by_name(name, plain, 6), by_name(name, edm, 6), rtol=1e-13)
