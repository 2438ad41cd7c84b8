"""from_diffusers_scheduler: a table of diffusers scheduler configs -> jaxdist (solver, schedule,
grid); clear errors for options that are not reproduced; and, when diffusers is installed (the
optional 'bench' extra), the grids against diffusers' own ``set_timesteps``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdist as jd
from jaxdist.solvers import (DDIM, LMS, PLMS, Ancestral, DDPMAncestral, DPMSolver, DPMSolverPP,
                             EulerEDM, HeunEDM, RungeKutta, from_diffusers_scheduler)
from jaxdist.solvers.tableaux import EULER
from jaxdist.solvers.diffusers_compat import own_keys, prediction_from_diffusers

SD = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
          beta_schedule="scaled_linear")


def cfg(name, **kw):
    return {"_class_name": name, **SD, **kw}


def _dropped(config, n):
    """diffusers' grid without its repeated final sigma_min (a step that does nothing)."""
    return jd.grids.from_diffusers(config, n)[:-1]


SINGLE3 = cfg("DPMSolverSinglestepScheduler", solver_order=3)
TABLE = [
    # (config, n_steps, expected solver, expected grid builder)
    (cfg("DPMSolverMultistepScheduler"), 10, DPMSolverPP(order=2, lower_order_final=True), None),
    (cfg("DPMSolverMultistepScheduler"), 20, DPMSolverPP(order=2, lower_order_final=False), None),
    (cfg("DPMSolverMultistepScheduler", solver_order=3, algorithm_type="dpmsolver",
         solver_type="heun"), 10,
     DPMSolver(order=3, method="multistep", solver_type="heun", lower_order_final=True,
               third_order="reference"), None),
    (cfg("DPMSolverMultistepScheduler", use_karras_sigmas=True), 10,
     DPMSolverPP(order=2), None),
    # defect 3: n Karras levels and a repeated sigma_min (dropped; the order-2 last real step)
    (cfg("DPMSolverMultistepScheduler", use_karras_sigmas=True, final_sigmas_type="sigma_min"), 10,
     DPMSolverPP(order=2, lower_order_final=False),
     lambda s, n: _dropped(cfg("DPMSolverMultistepScheduler", use_karras_sigmas=True,
                               final_sigmas_type="sigma_min"), n)),
    (cfg("DPMSolverMultistepScheduler", solver_order=3, use_karras_sigmas=True,
         final_sigmas_type="sigma_min"), 10,
     DPMSolverPP(order=3, lower_order_final=False, final_orders=(2,), third_order="reference"),
     lambda s, n: _dropped(cfg("DPMSolverMultistepScheduler", solver_order=3,
                               use_karras_sigmas=True, final_sigmas_type="sigma_min"), n)),
    (cfg("DPMSolverMultistepScheduler", use_lu_lambdas=True), 10, DPMSolverPP(order=2), None),
    # euler_at_final: only the last step is first order
    (cfg("DPMSolverMultistepScheduler", solver_order=3, euler_at_final=True,
         lower_order_final=False, final_sigmas_type="sigma_min"), 10,
     DPMSolverPP(order=3, lower_order_final=False, final_orders=(1,), third_order="reference"),
     None),
    # defect 5: diffusers' singlestep stages on its own timesteps, its order list
    (SINGLE3, 12, DPMSolverPP(order=3, method="singlestep-grid", lower_order_final=False,
                              grid_orders=(1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 1)), None),
    (cfg("DDIMScheduler", clip_sample=False, set_alpha_to_one=False, steps_offset=1,
         timestep_spacing="leading"), 10, DDIM(), None),
    (cfg("EulerDiscreteScheduler"), 10, EulerEDM(), None),
    (cfg("HeunDiscreteScheduler"), 10, HeunEDM(), None),
]


@pytest.mark.parametrize("config,n,solver,grid_fn", TABLE)
def test_table(config, n, solver, grid_fn):
    got_solver, schedule, grid = from_diffusers_scheduler(config, n)
    assert got_solver == solver
    assert isinstance(schedule, jd.schedules.VPDiscrete)
    # diffusers gives the network integer timesteps after Karras / Lu sigmas: rounded time
    assert schedule.quantize == bool(config.get("use_karras_sigmas") or
                                     config.get("use_lu_lambdas"))
    np.testing.assert_allclose(schedule.log_alpha_knots,
                               jd.schedules.VPDiscrete.from_diffusers_config(config).log_alpha_knots)
    want = grid_fn(schedule, n) if grid_fn else jd.grids.from_diffusers(config, n)
    np.testing.assert_allclose(np.asarray(grid), np.asarray(want), rtol=1e-12)


def test_multistep_families_from_other_modules():
    unipc = from_diffusers_scheduler(cfg("UniPCMultistepScheduler", solver_order=3,
                                         solver_type="bh1"), 10).solver
    assert unipc == jd.solvers.UniPC(order=3, variant="bh1", prediction="x0", corrector=True,
                                     lower_order_final=True)
    # diffusers' DEIS default is solver_order=2
    assert from_diffusers_scheduler(cfg("DEISMultistepScheduler"), 10).solver == \
        jd.solvers.DEIS(order=2, variable="logrho")
    assert from_diffusers_scheduler(cfg("UniPCMultistepScheduler", disable_corrector=[0, 2]),
                                    10).solver.disable_corrector == (0, 2)
    assert from_diffusers_scheduler(cfg("DPMSolverMultistepScheduler", solver_order=3),
                                    20).solver == DPMSolverPP(order=3, lower_order_final=False,
                                                              third_order="reference")
    from jaxdist.solvers.sde_dpm_solver import SDEDPMSolverPP

    sde = from_diffusers_scheduler(cfg("DPMSolverMultistepScheduler", solver_order=3,
                                       algorithm_type="sde-dpmsolver++"), 10).solver
    # diffusers' sde-dpmsolver++ 3M weights d_2 by -(phi_2 / h_eta + 1/2) (k-diffusion: -phi_3)
    assert sde == SDEDPMSolverPP(order=3, lower_order_final=True, third_order="diffusers")


def test_flow_match_shift():
    config = {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000,
              "shift": 3.0}
    solver, schedule, grid = from_diffusers_scheduler(config, 8)
    assert solver == RungeKutta(EULER, variable="t")
    assert isinstance(schedule, jd.schedules.RectifiedFlow)
    s_min = 3e-3 / (1 + 2e-3)  # diffusers' (already shifted) sigma_min, shifted again below
    s = np.linspace(1.0, s_min, 8)
    np.testing.assert_allclose(np.asarray(grid), np.r_[3 * s / (1 + 2 * s), 0.0], rtol=1e-6)
    assert prediction_from_diffusers(config) == "velocity"


@pytest.mark.parametrize("config,match", [
    (cfg("ScoreSdeVeScheduler"), "_class_name"),
    # PNDM: the Runge-Kutta warm-up (diffusers' default) and v (combined before conversion)
    (cfg("PNDMScheduler", num_train_timesteps=1010), "even"),
    (cfg("PNDMScheduler", skip_prk_steps=True, prediction_type="v_prediction"),
     "prediction_type"),
    (cfg("PNDMScheduler", skip_prk_steps=True, timestep_spacing="linspace"), "leading"),
    (cfg("KDPM2DiscreteScheduler", use_karras_sigmas=True), "use_karras_sigmas"),
    (cfg("KDPM2AncestralDiscreteScheduler", use_karras_sigmas=True), "use_karras_sigmas"),
    (cfg("DDPMScheduler", clip_sample=False, variance_type="fixed_large"), "variance_type"),
    (cfg("LCMScheduler"), "n_steps=60"),
    (cfg("SASolverScheduler", lambda_min_clipped=-5.0), "lambda_min_clipped"),
    (cfg("SASolverScheduler", algorithm_type="noise_prediction"), "algorithm_type"),
    (cfg("DPMSolverMultistepScheduler", thresholding=True), "DynamicThreshold"),
    (cfg("DDIMScheduler", clip_sample=True), "ClipX0"),
    (cfg("DPMSolverMultistepScheduler", algorithm_type="sde-dpmsolver"), "algorithm_type"),
    (cfg("DPMSolverMultistepScheduler", variance_type="learned_range"),
     "denoiser_from_diffusers"),
    # defect 6: misspelled keys name the closest known one
    (cfg("DPMSolverMultistepScheduler", beta_shedule="linear"), "did you mean 'beta_schedule'"),
    (cfg("UniPCMultistepScheduler", solver_ordr=3), "did you mean 'solver_order'"),
    (cfg("UniPCMultistepScheduler", use_karras_sigmas=True, final_sigmas_type="sigma_min",
         lower_order_final=False), "lower_order_final=True"),
    (cfg("DPMSolverMultistepScheduler", prediction_type="weird"), "prediction_type"),
    ({"_class_name": "FlowMatchEulerDiscreteScheduler", "use_dynamic_shifting": True},
     "use_dynamic_shifting"),
])
def test_unsupported_options_raise(config, match):
    with pytest.raises(ValueError, match=match):
        from_diffusers_scheduler(config, 60 if config["_class_name"] == "LCMScheduler" else 10)


K_DIFFUSION_PORTS = [
    # (config, solver): the grid is jd.grids.from_diffusers (diffusers' sigmas, then 0)
    (cfg("KDPM2DiscreteScheduler"), DPMSolver(order=2, method="singlestep",
                                              lower_order_final=True)),
    (cfg("KDPM2AncestralDiscreteScheduler", use_exponential_sigmas=True), Ancestral("dpm2")),
    (cfg("LMSDiscreteScheduler", use_karras_sigmas=True), LMS(order=4)),
    (cfg("EulerAncestralDiscreteScheduler", timestep_spacing="trailing"), Ancestral("euler")),
    (cfg("PNDMScheduler", skip_prk_steps=True, steps_offset=1), PLMS()),
    (cfg("PNDMScheduler"), PLMS(warmup="prk")),
    (cfg("DDPMScheduler", clip_sample=False), DDPMAncestral()),
]


@pytest.mark.parametrize("config,solver", K_DIFFUSION_PORTS,
                         ids=[c["_class_name"] for c, _ in K_DIFFUSION_PORTS])
def test_more_schedulers(config, solver):
    got, schedule, grid = from_diffusers_scheduler(config, 10)
    assert got == solver
    assert isinstance(schedule, jd.schedules.VPDiscrete) and not schedule.quantize
    want = np.asarray(jd.grids.from_diffusers(own_keys(config), 10))  # the class's defaults
    if want[-1] == want[-2]:  # PNDM from timestep 0 to alphas_cumprod[0]: a step of zero length
        want = want[:-1]
    np.testing.assert_allclose(np.asarray(grid), want, rtol=1e-12)
    # PNDM's set_alpha_to_one=False: the last step ends at alphas_cumprod[0] (t = 1 / N)
    assert np.isclose(float(grid[-1]), 1e-3 if config["_class_name"] == "PNDMScheduler" else 0.0)


def test_deis_before_a_repeated_sigma_min_keeps_the_last_order():
    """DEIS of order 3 with Karras sigmas below 15 steps: diffusers' repeated sigma_min (a step
    that does nothing) is dropped; the real last step is second order (final_orders)."""
    config = cfg("DEISMultistepScheduler", solver_order=3, use_karras_sigmas=True)
    solver, _, grid = from_diffusers_scheduler(config, 10)
    assert solver == jd.solvers.DEIS(order=3, variable="logrho", lower_order_final=False,
                                     final_orders=(2,))
    assert solver.step_orders(10).tolist() == [1, 2, 3, 3, 3, 3, 3, 3, 3, 2]
    assert grid.shape == (10,)


def test_sa_solver_in_diffusers_convention():
    """SASolverScheduler: tau = 1 on timesteps 200..800 (at each step's start), diffusers' order
    list, a grid ending at alphas_cumprod[0]; the repeated level of converted sigmas is kept
    (its zero-length step corrects the previous point)."""
    config = cfg("SASolverScheduler", predictor_order=3, corrector_order=4)
    solver, schedule, grid = from_diffusers_scheduler(config, 10)
    assert (solver.predictor_order, solver.corrector_order, solver.convention) == \
        (3, 4, "diffusers")
    s_hi, s_lo = solver.tau_interval
    levels = np.asarray(schedule.sigma_over_alpha(jnp.asarray([801.0, 201.0, 802.0, 200.0])
                                                  / 1000))
    assert s_hi >= levels[0] and s_lo <= levels[1] and levels[2] > s_hi and levels[3] < s_lo
    assert np.isclose(float(grid[-1]), 1e-3)
    pred, corr = solver._orders(10, False)
    assert pred.tolist() == [1, 2, 3, 3, 3, 3, 3, 3, 2, 1]
    assert corr.tolist() == [0, 2, 3, 4, 4, 4, 4, 4, 4, 3]
    karras = from_diffusers_scheduler(dict(config, use_karras_sigmas=True), 10)
    assert karras.solver.accepts_zero_final_step and karras.grid[-1] == karras.grid[-2]
    with pytest.raises(ValueError, match="tau_func"):
        from_diffusers_scheduler(dict(config, tau_func=lambda t: 0), 10)


def test_lcm_timesteps_and_boundary_condition(x64):
    """LCMScheduler: 4 of the 50 original timesteps are 999, 759, 499, 259 (then t = 0); the
    denoiser is c_out x0_hat + c_skip x at 10 times diffusers' timestep."""
    config = {"_class_name": "LCMScheduler"}
    solver, schedule, grid = from_diffusers_scheduler(config, 4)
    assert solver == jd.solvers.LCM()
    np.testing.assert_allclose(np.asarray(grid), np.r_[[1000, 760, 500, 260], 0] / 1000)

    def eps(x, m):
        return 0.5 * x

    den = jd.solvers.denoiser_from_diffusers(eps, config)
    x, t = jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), jnp.asarray(0.02)  # timestep 19
    x0 = jd.Denoiser(eps, schedule)(x, t)[0]
    c_skip, c_out = 0.25 / (190.0**2 + 0.25), 190.0 / np.sqrt(190.0**2 + 0.25)
    np.testing.assert_allclose(den(x, t)[0], c_out * x0 + c_skip * x, rtol=1e-12)


def test_euler_type_timesteps_are_diffusers_sigma_to_t(x64):
    """Euler-type schedulers give the network ``_sigma_to_t`` of the level (linear in
    ``log sigma`` between integer timesteps), e.g. KDPM2's midpoints; integers stay integers."""
    config = cfg("KDPM2DiscreteScheduler")
    schedule = from_diffusers_scheduler(config, 10).schedule
    seen = []

    def eps(x, m):
        seen.append(m)
        return 0.0 * x

    den = jd.solvers.denoiser_from_diffusers(eps, config)
    train = np.sqrt(1.0 / np.asarray(schedule.alpha(jnp.arange(1, 1001) / 1000)) ** 2 - 1.0)
    mid = np.sqrt(train[3] * train[4])  # the geometric mean of the sigmas of timesteps 3 and 4
    t_mid = schedule.t_from_log_snr(-2.0 * np.log(mid))
    for t, want in ((jnp.asarray(4 / 1000), 3.0), (t_mid, 3.5)):
        den(jnp.ones((1, 2)), t)
        np.testing.assert_allclose(float(seen[-1]), want, atol=1e-9)


def test_grids_match_diffusers():
    """Noise levels of the returned grids equal diffusers' ``scheduler.sigmas``."""
    diffusers = pytest.importorskip("diffusers")
    cases = [(cfg("DPMSolverMultistepScheduler"), "DPMSolverMultistepScheduler"),
             (cfg("DPMSolverMultistepScheduler", use_karras_sigmas=True),
              "DPMSolverMultistepScheduler"),
             (cfg("EulerDiscreteScheduler", timestep_spacing="trailing"), "EulerDiscreteScheduler"),
             ({"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 3.0},
              "FlowMatchEulerDiscreteScheduler")]
    for config, name in cases:
        kwargs = {k: v for k, v in config.items() if k != "_class_name"}
        sched = getattr(diffusers, name)(**kwargs)
        sched.set_timesteps(10)
        _, schedule, grid = from_diffusers_scheduler(config, 10)
        flow = name == "FlowMatchEulerDiscreteScheduler"
        ours = np.asarray(grid if flow else schedule.sigma_over_alpha(grid))
        np.testing.assert_allclose(ours, sched.sigmas.double().numpy(), rtol=2e-5, atol=1e-6,
                                   err_msg=name)


# -- regressions of issue 11 (defects 3, 5, 6) ------------------------------------------------

def test_config_keys_of_other_schedulers_are_ignored_as_in_diffusers():
    """A config moved between classes (``from_config``) keeps other schedulers' keys; diffusers
    ignores them, and so does the translator (``clip_sample`` is no DPM-Solver option)."""
    config = cfg("DPMSolverMultistepScheduler", skip_prk_steps=True, clip_sample=True,
                 set_alpha_to_one=False, _diffusers_version="0.8.0")
    assert from_diffusers_scheduler(config, 10).solver == DPMSolverPP(order=2)


def test_missing_keys_take_diffusers_defaults():
    """DDIMScheduler's default spacing is 'leading' (timesteps 900, ..., 0 for 10 steps), its
    clip_sample is True (a denoiser option), DEIS's order is 2, singlestep's lower_order_final
    is False."""
    ddim = {"_class_name": "DDIMScheduler"}
    with pytest.raises(ValueError, match="clip_sample"):
        from_diffusers_scheduler(ddim, 10)
    grid = from_diffusers_scheduler(ddim, 10, denoiser_keys_applied=True).grid
    np.testing.assert_allclose(np.asarray(grid), np.r_[(np.arange(900, -1, -100) + 1) / 1000, 0])
    single = from_diffusers_scheduler({"_class_name": "DPMSolverSinglestepScheduler"}, 10).solver
    assert single.grid_orders == (1, 2) * 4 + (1, 1)  # final_sigmas_type='zero': last order 1


def test_denoiser_from_diffusers_learned_variance_and_ddim_clipping(x64):
    schedule = jd.schedules.VPDiscrete.from_diffusers_config(SD)
    x = jnp.linspace(-3.0, 3.0, 2 * 3 * 4).reshape(2, 3, 4)
    t = jnp.asarray(0.3)

    def eps(x, m):
        return 0.5 * x + 1e-3 * m

    def with_variance(x, m):  # channels: 3 of mean, 3 of variance
        return jnp.concatenate([eps(x, m), jnp.full_like(x, 7.0)], axis=1)

    config = cfg("DPMSolverMultistepScheduler", variance_type="learned_range")
    got = jd.solvers.denoiser_from_diffusers(with_variance, config)(x, t)
    want = jd.Denoiser(eps, schedule)(x, t)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
    # DDIM's clip_sample clips x0_hat and keeps the model's eps_hat (diffusers' DDIM step)
    ddim = cfg("DDIMScheduler", clip_sample=True, clip_sample_range=0.5)
    x0, e = jd.solvers.denoiser_from_diffusers(eps, ddim)(x, t)
    raw_x0, raw_eps = jd.Denoiser(eps, schedule)(x, t)
    np.testing.assert_allclose(x0, jnp.clip(raw_x0, -0.5, 0.5), rtol=1e-12)
    np.testing.assert_allclose(e, raw_eps, rtol=1e-12)
    # Heun's derivative (x - x0_clipped) / sigma recomputes eps (checked against diffusers: 2e-8)
    heun = cfg("HeunDiscreteScheduler", clip_sample=True)
    assert isinstance(jd.solvers.denoiser_from_diffusers(eps, heun), jd.ClipX0)
    # DPM-Solver's thresholding recomputes eps from the thresholded x0 (jd.DynamicThreshold)
    dpm = cfg("DPMSolverMultistepScheduler", thresholding=True, sample_max_value=1.5)
    assert isinstance(jd.solvers.denoiser_from_diffusers(eps, dpm), jd.DynamicThreshold)


def test_final_orders_caps_the_last_steps(x64):
    def orders(caps, n=6):
        return DPMSolverPP(order=3, lower_order_final=False, final_orders=caps).step_orders(n)

    assert orders((2,)).tolist() == [1, 2, 3, 3, 3, 2]
    assert orders((3, 1)).tolist() == [1, 2, 3, 3, 3, 1]
    assert orders((2, 1), 7).tolist() == \
        DPMSolverPP(order=3, lower_order_final=True).step_orders(7).tolist()
    for bad in ((0,), (4,), (True,)):
        with pytest.raises(ValueError, match="final_orders"):
            DPMSolverPP(order=3, final_orders=bad)
    with pytest.raises(ValueError, match="multistep option"):
        DPMSolverPP(order=2, method="singlestep", final_orders=(1,))


def _vp_problem(n=6):
    schedule = jd.schedules.VPLinear()
    gmm = jd.testing.GaussianMixture([1.0], [[0.3, -0.2]], [[0.5, 0.2]])
    x_T = jax.random.normal(jax.random.key(1), (8, 2), jnp.float64)
    return schedule, gmm.denoiser(schedule), x_T, jd.grids.logsnr_uniform(schedule, n, 1.0, 1e-2)


def _with_stages(schedule, grid, fractions):
    """The grid with the stages at log-SNR fractions of each step inserted."""
    lam = schedule.log_snr(grid)
    pts = [grid[:1]]
    for i in range(grid.shape[0] - 1):
        stages = [schedule.t_from_log_snr(lam[i] + r * (lam[i + 1] - lam[i])) for r in fractions]
        pts.append(jnp.stack(stages + [grid[i + 1]]))
    return jnp.concatenate(pts)


@pytest.mark.parametrize("family,solver_type", [(DPMSolverPP, "midpoint"), (DPMSolver, "heun")])
def test_singlestep_grid_is_singlestep_with_stages_on_the_grid(x64, family, solver_type):
    """diffusers' singlestep (stages are grid points, defect 5) on a grid holding the log-SNR
    midpoints equals jaxdist's 2S with stages at those midpoints, to rounding."""
    schedule, den, x_T, grid = _vp_problem()
    ref = jd.sample(family(order=2, method="singlestep", solver_type=solver_type,
                           lower_order_final=False), den, x_T, grid)
    fine = _with_stages(schedule, grid, (0.5,))
    solver = family(order=2, method="singlestep-grid", solver_type=solver_type,
                    grid_orders=(1, 2) * 6)
    got = jd.sample(solver, den, x_T, fine)
    assert got.nfe == ref.nfe == 12
    np.testing.assert_allclose(got.x, ref.x, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("order", [3])
def test_singlestep_grid_order(x64, order):
    """Order of diffusers' singlestep DPM-Solver++ (midpoint) on grids whose groups are uniform
    in log-SNR, against the exact Gaussian ODE solution (order 2: equal to 2S, above)."""
    schedule, den, x_T, _ = _vp_problem()
    gmm = jd.testing.GaussianMixture([1.0], [[0.3, -0.2]], [[0.5, 0.2]])
    fractions = [(), (0.5,), (1 / 3, 2 / 3)][order - 1]

    def grid_fn(n):
        return _with_stages(schedule, jd.grids.logsnr_uniform(schedule, n, 1.0, 1e-2), fractions)

    solver = DPMSolverPP(order=order, method="singlestep-grid", lower_order_final=False)
    assert solver.order == order
    steps = (8, 16, 32)
    res = jd.testing.measure_order(
        solver, den, x_T, steps, grid_fn,
        lambda grid: gmm.ode_solution(schedule, x_T, grid[0], grid[-1]))
    assert abs(res.order - order) <= 0.2, res


def test_zero_length_final_step_only_where_the_solver_takes_it(x64):
    """diffusers' repeated sigma_min: DPM-Solver++ multistep refuses it (the translator drops
    it), the singlestep-grid solver and UniPC with a first-order last step take it."""
    schedule, den, x_T, grid = _vp_problem()
    repeated = jnp.concatenate([grid, grid[-1:]])
    with pytest.raises(ValueError, match="repeats its last time"):
        jd.sample(DPMSolverPP(order=2), den, x_T, repeated)
    for solver in (DPMSolverPP(order=2, method="singlestep-grid"), jd.solvers.UniPC(order=2)):
        out = jd.sample(solver, den, x_T, repeated)
        assert np.all(np.isfinite(out.x)) and out.nfe == 7
    with pytest.raises(ValueError, match="repeats its last time"):
        jd.sample(jd.solvers.UniPC(order=2, lower_order_final=False), den, x_T, repeated)


def test_edm_schedulers_map_to_the_edm_schedule():
    """EDMDPMSolverMultistepScheduler / EDMEulerScheduler: jd.schedules.EDM, Karras sigmas (a
    repeated sigma_min dropped), EDM preconditioning of the network, v with c_out negated."""
    config = {"_class_name": "EDMDPMSolverMultistepScheduler", "sigma_max": 80.0,
              "final_sigmas_type": "sigma_min", "lower_order_final": False}
    solver, schedule, grid = from_diffusers_scheduler(config, 10)
    assert schedule == jd.schedules.EDM(sigma_min=0.002, sigma_max=80.0, sigma_data=0.5)
    assert solver == DPMSolverPP(order=2, lower_order_final=False)
    ramp = np.linspace(0, 1, 10)
    karras = (80 ** (1 / 7) + ramp * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    np.testing.assert_allclose(np.asarray(grid), karras, rtol=1e-6)  # sigma_min step dropped

    def net(x, c_noise):
        return x * c_noise

    x, t = jnp.ones((2, 3)), jnp.asarray(1.5)
    den = jd.solvers.denoiser_from_diffusers(net, config)
    assert isinstance(den, jd.EDMPreconditioned)
    v = jd.solvers.denoiser_from_diffusers(net, dict(config, prediction_type="v_prediction"))
    c_skip, c_out, c_in, c_noise = den.scalings(t)
    np.testing.assert_allclose(v(x, t)[0], c_skip * x - c_out * c_in * x * c_noise, rtol=1e-6)
    euler = from_diffusers_scheduler({"_class_name": "EDMEulerScheduler"}, 10)
    assert euler.solver == EulerEDM() and float(euler.grid[-1]) == 0.0
