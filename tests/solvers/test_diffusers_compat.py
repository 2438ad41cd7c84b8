"""from_diffusers_scheduler: a table of diffusers scheduler configs -> jaxdist (solver, schedule,
grid); clear errors for options that are not reproduced; and, when diffusers is installed (the
optional 'bench' extra), the grids against diffusers' own ``set_timesteps``."""

import numpy as np
import pytest

import jaxdist as jd
from jaxdist.solvers import (DDIM, DPMSolver, DPMSolverPP, EulerEDM, HeunEDM, RungeKutta,
                             from_diffusers_scheduler)
from jaxdist.solvers.tableaux import EULER
from jaxdist.solvers.diffusers_compat import prediction_from_diffusers

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
    assert sde == SDEDPMSolverPP(order=3, lower_order_final=True)


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
    (cfg("LMSDiscreteScheduler"), "_class_name"),
    (cfg("DPMSolverMultistepScheduler", thresholding=True), "DynamicThreshold"),
    (cfg("DDIMScheduler", clip_sample=True), "ClipX0"),
    (cfg("DPMSolverMultistepScheduler", algorithm_type="sde-dpmsolver"), "algorithm_type"),
    (cfg("DPMSolverMultistepScheduler", variance_type="learned_range"),
     "denoiser_from_diffusers"),
    # defect 6: misspelled keys name the closest known one
    (cfg("DPMSolverMultistepScheduler", beta_shedule="linear"), "did you mean 'beta_schedule'"),
    (cfg("UniPCMultistepScheduler", solver_ordr=3), "did you mean 'solver_order'"),
    (cfg("DEISMultistepScheduler", solver_order=3, use_karras_sigmas=True), "solver_order=2"),
    (cfg("UniPCMultistepScheduler", use_karras_sigmas=True, final_sigmas_type="sigma_min",
         lower_order_final=False), "lower_order_final=True"),
    (cfg("DPMSolverMultistepScheduler", prediction_type="weird"), "prediction_type"),
    ({"_class_name": "FlowMatchEulerDiscreteScheduler", "use_dynamic_shifting": True},
     "use_dynamic_shifting"),
])
def test_unsupported_options_raise(config, match):
    with pytest.raises(ValueError, match=match):
        from_diffusers_scheduler(config, 10)


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
