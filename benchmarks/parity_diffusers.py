"""Golden full-loop results of diffusers' own scheduler tests for
``tests/solvers/test_parity_golden.py``: ``tests/golden/parity_diffusers.json``.

Runs in a torch environment with diffusers 0.42.1 and jaxdist installed (the ``bench`` extra):

    python benchmarks/parity_diffusers.py          # ~1 min on 2 CPU cores

Each case is a full loop of diffusers' ``tests/schedulers/test_scheduler_*.py`` (their
``get_scheduler_config`` plus the test's options, ``num_inference_steps``, and ``t_start`` for
``test_full_loop_with_noise``), on their ``dummy_sample_deter`` with ``model(x, t) = x t / (t + 1)``
(``jaxdist.testing.scheduler_tests``, the same values in NumPy). diffusers runs in float64: the
scheduler's ``betas`` / ``alphas_cumprod`` (and DPM's ``alpha_t`` / ``sigma_t`` / ``lambda_t``)
are recomputed in float64 before ``set_timesteps`` (``parity_grids.float64_schedule``), the
sample is float64; ``stock`` is the shipped float32 run, for reference. Euler-type schedulers run
diffusers' plain loop (``model(scale_model_input(x, t), t)``); diffusers' tests write the scaled
input back into the sample, which no ODE sampler reproduces.

Stored per case: the config, ``sum_abs`` / ``mean_abs`` of the final sample and ``slice`` (every
32nd value, 24 numbers; the dummy model is linear, so a slice sees every factor). Then jaxdist
runs each case (``jaxdist.testing.scheduler_tests.full_loop`` in float64) and the table prints
the relative error; ``expressible: false`` rows raise in ``from_diffusers_scheduler`` with the
reason (stored as ``reason``).
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity_grids import float64_schedule, print_verdicts, rounded, write_golden  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "tests" / "golden" / "parity_diffusers.json"
LINEAR = {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02,
          "beta_schedule": "linear"}
# get_scheduler_config of each test file
DPM_MULTI = dict(LINEAR, _class_name="DPMSolverMultistepScheduler", solver_order=2,
                 prediction_type="epsilon", thresholding=False, sample_max_value=1.0,
                 algorithm_type="dpmsolver++", solver_type="midpoint", lower_order_final=False,
                 euler_at_final=False, lambda_min_clipped=-float("inf"), variance_type=None,
                 final_sigmas_type="sigma_min")
DPM_SINGLE = dict(LINEAR, _class_name="DPMSolverSinglestepScheduler", solver_order=2,
                  prediction_type="epsilon", thresholding=False, sample_max_value=1.0,
                  algorithm_type="dpmsolver++", solver_type="midpoint",
                  lambda_min_clipped=-float("inf"), variance_type=None,
                  final_sigmas_type="sigma_min")
UNIPC = dict(LINEAR, _class_name="UniPCMultistepScheduler", solver_order=2, solver_type="bh2",
             final_sigmas_type="sigma_min")
DEIS = dict(LINEAR, _class_name="DEISMultistepScheduler", solver_order=2)
DDIM = dict(LINEAR, _class_name="DDIMScheduler", clip_sample=True)
EULER = dict(LINEAR, _class_name="EulerDiscreteScheduler", num_train_timesteps=1100)
HEUN = dict(LINEAR, _class_name="HeunDiscreteScheduler", num_train_timesteps=1100)
FLOW = {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000}
EDM_DPM = {"_class_name": "EDMDPMSolverMultistepScheduler", "sigma_min": 0.002, "sigma_max": 80.0,
           "sigma_data": 0.5, "num_train_timesteps": 1000, "solver_order": 2,
           "prediction_type": "epsilon", "thresholding": False, "sample_max_value": 1.0,
           "algorithm_type": "dpmsolver++", "solver_type": "midpoint",
           "lower_order_final": False, "euler_at_final": False, "final_sigmas_type": "sigma_min"}
LMS = dict(LINEAR, _class_name="LMSDiscreteScheduler", num_train_timesteps=1100)
KDPM2 = dict(LINEAR, _class_name="KDPM2DiscreteScheduler", num_train_timesteps=1100)
KDPM2_ANCESTRAL = dict(LINEAR, _class_name="KDPM2AncestralDiscreteScheduler",
                       num_train_timesteps=1100)
LCM = {"_class_name": "LCMScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085,
       "beta_end": 0.0120, "beta_schedule": "scaled_linear", "prediction_type": "epsilon"}
TCD = dict(LCM, _class_name="TCDScheduler")
DPM_SDE = dict(LINEAR, _class_name="DPMSolverSDEScheduler", num_train_timesteps=1100)
SA = dict(LINEAR, _class_name="SASolverScheduler", num_train_timesteps=1100)
PNDM = dict(LINEAR, _class_name="PNDMScheduler")
DDPM = dict(LINEAR, _class_name="DDPMScheduler", variance_type="fixed_small", clip_sample=True)
EULER_ANCESTRAL = dict(LINEAR, _class_name="EulerAncestralDiscreteScheduler",
                       num_train_timesteps=1100)
EDM_EULER = {"_class_name": "EDMEulerScheduler", "num_train_timesteps": 256, "sigma_min": 0.002,
             "sigma_max": 80.0}


def cases() -> list[dict]:
    """(name, test, config, n_steps, t_start)."""
    out = []

    def add(name, test, base, n=10, t_start=0, **options):
        out.append({"name": name, "test": test, "config": dict(base, **options), "n_steps": n,
                    "t_start": t_start})

    # test_scheduler_dpm_multi.py
    add("dpm_multi", "test_full_loop_no_noise", DPM_MULTI)
    add("dpm_multi_noise", "test_full_loop_with_noise", DPM_MULTI, t_start=5)
    add("dpm_multi_thres", "test_full_loop_no_noise_thres", DPM_MULTI, thresholding=True,
        dynamic_thresholding_ratio=0.87, sample_max_value=0.5)
    add("dpm_multi_v", "test_full_loop_with_v_prediction", DPM_MULTI,
        prediction_type="v_prediction")
    add("dpm_multi_karras_v", "test_full_loop_with_karras_and_v_prediction", DPM_MULTI,
        prediction_type="v_prediction", use_karras_sigmas=True)
    add("dpm_multi_lu_v", "test_full_loop_with_lu_and_v_prediction", DPM_MULTI,
        prediction_type="v_prediction", use_lu_lambdas=True)
    for order in (1, 2, 3):
        for algo in ("dpmsolver", "dpmsolver++"):
            for stype in ("midpoint", "heun") if order == 3 else ("midpoint",):  # heun: o3
                add(f"dpm_multi_{algo}_o{order}_{stype}", "test_solver_order_and_type", DPM_MULTI,
                    solver_order=order, algorithm_type=algo, solver_type=stype)
    add("dpm_multi_lower_order_final", "test_lower_order_final", DPM_MULTI, solver_order=3,
        lower_order_final=True)
    add("dpm_multi_euler_at_final", "test_euler_at_final (options)", DPM_MULTI,
        euler_at_final=True)
    add("dpm_multi_final_zero", "test_final_sigmas_type (options)", DPM_MULTI,
        final_sigmas_type="zero")
    add("dpm_multi_lambda_min_clipped", "(options)", DPM_MULTI, lambda_min_clipped=-5.1,
        beta_schedule="squaredcos_cap_v2")
    add("dpm_multi_learned_range", "(options)", DPM_MULTI, variance_type="learned_range")
    add("dpm_multi_beta_sigmas", "(options)", DPM_MULTI, use_beta_sigmas=True)
    add("dpm_multi_exponential_sigmas", "(options)", DPM_MULTI, use_exponential_sigmas=True)
    add("dpm_multi_flow_sigmas", "(options)", DPM_MULTI, use_flow_sigmas=True, flow_shift=3.0,
        prediction_type="flow_prediction")
    add("dpm_multi_sample", "test_prediction_type (options)", DPM_MULTI,
        prediction_type="sample")
    add("dpm_multi_o3_karras_lof", "(options)", DPM_MULTI, solver_order=3, use_karras_sigmas=True,
        lower_order_final=True)
    # SDE-DPM-Solver++ with a shared table of variance noise (step(..., variance_noise=))
    add("dpm_multi_sde", "(options: stochastic)", DPM_MULTI, algorithm_type="sde-dpmsolver++",
        final_sigmas_type="zero")
    add("dpm_multi_sde_o3_karras", "(options: stochastic)", DPM_MULTI,
        algorithm_type="sde-dpmsolver++", solver_order=3, use_karras_sigmas=True,
        final_sigmas_type="zero")
    add("dpm_multi_sde_noise", "(options: stochastic)", DPM_MULTI,
        algorithm_type="sde-dpmsolver++", final_sigmas_type="zero", t_start=5)
    add("dpm_multi_sde_karras_sigma_min", "(options: stochastic, repeated sigma_min)", DPM_MULTI,
        algorithm_type="sde-dpmsolver++", use_karras_sigmas=True, lower_order_final=True)
    add("dpm_multi_sde_o3_karras_sigma_min", "(options: stochastic, repeated sigma_min)",
        DPM_MULTI, algorithm_type="sde-dpmsolver++", solver_order=3, use_karras_sigmas=True,
        lower_order_final=True)
    add("dpm_multi_sde_euler_at_final", "(options: stochastic)", DPM_MULTI,
        algorithm_type="sde-dpmsolver++", euler_at_final=True)
    # test_scheduler_dpm_single.py
    add("dpm_single", "test_full_loop_no_noise", DPM_SINGLE)
    add("dpm_single_karras", "test_full_loop_with_karras", DPM_SINGLE, use_karras_sigmas=True)
    add("dpm_single_v", "test_full_loop_with_v_prediction", DPM_SINGLE,
        prediction_type="v_prediction")
    add("dpm_single_karras_v", "test_full_loop_with_karras_and_v_prediction", DPM_SINGLE,
        prediction_type="v_prediction", use_karras_sigmas=True)
    add("dpm_single_noise", "test_full_loop_with_noise", DPM_SINGLE, t_start=5)
    add("dpm_single_o3", "test_solver_order_and_type", DPM_SINGLE, solver_order=3)
    add("dpm_single_o3_n12", "(options)", DPM_SINGLE, n=12, solver_order=3)
    add("dpm_single_o3_lower_order_final", "(options)", DPM_SINGLE, solver_order=3,
        lower_order_final=True)
    # test_scheduler_unipc.py
    add("unipc", "test_full_loop_no_noise", UNIPC)
    add("unipc_karras", "test_full_loop_with_karras", UNIPC, use_karras_sigmas=True)
    add("unipc_v", "test_full_loop_with_v_prediction", UNIPC, prediction_type="v_prediction")
    add("unipc_karras_v", "test_full_loop_with_karras_and_v_prediction", UNIPC,
        prediction_type="v_prediction", use_karras_sigmas=True)
    add("unipc_noise", "test_full_loop_with_noise", UNIPC, t_start=8)
    for order in (1, 2, 3):
        for stype in ("bh1", "bh2"):
            add(f"unipc_o{order}_{stype}", "test_solver_order_and_type", UNIPC,
                solver_order=order, solver_type=stype)
    add("unipc_disable_corrector", "(options)", UNIPC, disable_corrector=[0, 3])
    add("unipc_beta_sigmas", "(options)", UNIPC, use_beta_sigmas=True)
    # test_scheduler_deis.py
    add("deis", "test_full_loop_no_noise", DEIS)
    add("deis_v", "test_full_loop_with_v_prediction", DEIS, prediction_type="v_prediction")
    add("deis_noise", "test_full_loop_with_noise", DEIS, t_start=8)
    add("deis_o3", "test_solver_order_and_type", DEIS, solver_order=3)
    add("deis_flow_sigmas", "(options)", DEIS, use_flow_sigmas=True, flow_shift=3.0,
        prediction_type="flow_prediction")
    add("deis_o3_karras", "(options: repeated sigma_min)", DEIS, solver_order=3,
        use_karras_sigmas=True)
    # test_scheduler_ddim.py
    add("ddim", "test_full_loop_no_noise", DDIM)
    add("ddim_v", "test_full_loop_with_v_prediction", DDIM, prediction_type="v_prediction")
    add("ddim_alpha_one", "test_full_loop_with_set_alpha_to_one", DDIM, set_alpha_to_one=True,
        beta_start=0.01)
    add("ddim_no_alpha_one", "test_full_loop_with_no_set_alpha_to_one", DDIM,
        set_alpha_to_one=False, beta_start=0.01)
    add("ddim_noise", "test_full_loop_with_noise", DDIM, t_start=8)
    add("ddim_leading_offset1", "(options)", DDIM, clip_sample=False, set_alpha_to_one=False,
        timestep_spacing="leading", steps_offset=1)
    # test_scheduler_euler.py / test_scheduler_heun.py (plain loop, see the module docstring)
    for short, base in (("euler", EULER), ("heun", HEUN)):
        add(short, "test_full_loop_no_noise", base)
        add(f"{short}_v", "test_full_loop_with_v_prediction", base,
            prediction_type="v_prediction")
        add(f"{short}_karras", "test_full_loop_device_karras_sigmas", base,
            use_karras_sigmas=True)
        add(f"{short}_noise", "test_full_loop_with_noise", base, t_start=8)
    add("euler_exponential_sigmas", "(options)", EULER, use_exponential_sigmas=True)
    # test_scheduler_edm_dpmsolver_multistep.py / test_scheduler_edm_euler.py (the plain loop:
    # the network gets scale_model_input's c_in x)
    add("edm_dpm", "test_full_loop_no_noise", EDM_DPM)
    add("edm_dpm_noise", "test_full_loop_with_noise", EDM_DPM, t_start=5)
    add("edm_dpm_thres", "test_full_loop_no_noise_thres", EDM_DPM, thresholding=True,
        dynamic_thresholding_ratio=0.87, sample_max_value=0.5)
    add("edm_dpm_v", "test_full_loop_with_v_prediction", EDM_DPM, prediction_type="v_prediction")
    # (order 3 before the repeated sigma_min is NaN in diffusers: 0/0 in its zero-length step)
    add("edm_dpm_o3_heun", "test_solver_order_and_type (full loop)", EDM_DPM, solver_order=3,
        solver_type="heun", final_sigmas_type="zero")
    add("edm_dpm_exponential", "(options)", EDM_DPM, sigma_schedule="exponential",
        final_sigmas_type="zero")
    add("edm_euler", "test_full_loop_no_noise", EDM_EULER)
    # test_scheduler_lms.py / test_scheduler_kdpm2_discrete.py (the plain loop, as Euler)
    add("lms", "test_full_loop_no_noise", LMS)
    add("lms_karras", "test_full_loop_device_karras_sigmas", LMS, use_karras_sigmas=True)
    add("kdpm2", "test_full_loop_no_noise", KDPM2)
    add("kdpm2_v", "test_full_loop_with_v_prediction", KDPM2, prediction_type="v_prediction")
    add("lms_v", "test_full_loop_with_v_prediction", LMS, prediction_type="v_prediction")
    add("lms_exponential_sigmas", "(options)", LMS, use_exponential_sigmas=True)
    add("kdpm2_noise", "(options)", KDPM2, t_start=5)
    add("kdpm2_exponential_sigmas", "(options)", KDPM2, use_exponential_sigmas=True)
    add("kdpm2_trailing", "(options)", KDPM2, timestep_spacing="trailing")
    add("kdpm2_karras", "test_full_loop_device_karras_sigmas", KDPM2, use_karras_sigmas=True)
    # test_scheduler_pndm.py: PLMS (skip_prk_steps=True) and the tests' default Runge-Kutta
    # warm-up, diffusers' plain loop over its timesteps (prk, then plms: the tests' loop)
    add("pndm_plms", "test_full_loop_no_noise (skip_prk_steps)", PNDM, skip_prk_steps=True)
    add("pndm_plms_v", "test_full_loop_with_v_prediction (skip_prk_steps)", PNDM,
        skip_prk_steps=True, prediction_type="v_prediction")
    add("pndm_plms_alpha_one", "test_full_loop_with_set_alpha_to_one (skip_prk_steps)", PNDM,
        skip_prk_steps=True, set_alpha_to_one=True, beta_start=0.01)
    add("pndm_plms_no_alpha_one", "test_full_loop_with_no_set_alpha_to_one (skip_prk_steps)",
        PNDM, skip_prk_steps=True, set_alpha_to_one=False, beta_start=0.01)
    add("pndm_plms_offset1_n20", "test_steps_offset (skip_prk_steps, 20 steps)", PNDM, n=20,
        skip_prk_steps=True, steps_offset=1)
    add("pndm_prk", "test_full_loop_no_noise", PNDM)
    add("pndm_prk_alpha_one", "test_full_loop_with_set_alpha_to_one", PNDM,
        set_alpha_to_one=True, beta_start=0.01)
    add("pndm_prk_no_alpha_one", "test_full_loop_with_no_set_alpha_to_one", PNDM,
        set_alpha_to_one=False, beta_start=0.01)
    add("pndm_prk_v", "test_full_loop_with_v_prediction", PNDM, prediction_type="v_prediction")
    # test_scheduler_kdpm2_ancestral.py (shared noise)
    add("kdpm2_ancestral", "test_full_loop_no_noise (shared noise)", KDPM2_ANCESTRAL)
    add("kdpm2_ancestral_v", "test_full_loop_with_v_prediction (shared noise)", KDPM2_ANCESTRAL,
        prediction_type="v_prediction")
    add("kdpm2_ancestral_noise", "(options: shared noise)", KDPM2_ANCESTRAL, t_start=5)
    # test_scheduler_lcm.py (shared noise; 10 and 4 steps of the 50 original ones)
    add("lcm", "test_full_loop_onestep_deter / multistep (10 steps, shared noise)", LCM)
    add("lcm_4", "test_full_loop_multistep (4 steps, shared noise)", LCM, n=4)
    add("lcm_v", "(options: shared noise)", LCM, prediction_type="v_prediction")
    add("lcm_original_30_clip", "(options: shared noise)", LCM, original_inference_steps=30,
        clip_sample=True, clip_sample_range=0.3)
    add("lcm_scaling_0.05", "(options: shared noise; the boundary condition acts)", LCM,
        timestep_scaling=0.05)
    # test_scheduler_tcd.py (step's default gamma = eta = 0.3; shared noise)
    add("tcd", "test_full_loop_multistep (10 steps, shared noise)", TCD)
    add("tcd_4", "test_full_loop_onestep_deter / multistep (4 steps, shared noise)", TCD, n=4)
    add("tcd_v", "(options: shared noise)", TCD, prediction_type="v_prediction")
    # test_scheduler_dpm_sde.py (k-diffusion's dpmpp_sde: both draws of each step from tables)
    add("dpm_sde", "test_full_loop_no_noise (shared noise)", DPM_SDE)
    add("dpm_sde_v", "test_full_loop_with_v_prediction (shared noise)", DPM_SDE,
        prediction_type="v_prediction")
    add("dpm_sde_karras", "test_full_loop_device_karras_sigmas (shared noise)", DPM_SDE,
        use_karras_sigmas=True)
    add("dpm_sde_noise", "(options: shared noise)", DPM_SDE, t_start=5)
    # test_scheduler_sasolver.py (shared noise)
    add("sasolver", "test_full_loop_no_noise (shared noise)", SA)
    add("sasolver_v", "test_full_loop_with_v_prediction (shared noise)", SA,
        prediction_type="v_prediction")
    add("sasolver_karras", "test_full_loop_device_karras_sigmas (shared noise)", SA,
        use_karras_sigmas=True)
    add("sasolver_o3", "(options: shared noise)", SA, predictor_order=3, corrector_order=4)
    # test_scheduler_ddpm.py (10 steps; the noise of each step from the shared table)
    add("ddpm", "test_full_loop_no_noise (10 steps, shared noise)", DDPM)
    add("ddpm_v", "test_full_loop_with_v_prediction (10 steps, shared noise)", DDPM,
        prediction_type="v_prediction")
    add("ddpm_no_clip_trailing", "(options: shared noise)", DDPM, clip_sample=False,
        timestep_spacing="trailing")
    add("ddpm_fixed_large", "test_variance_type (options)", DDPM, variance_type="fixed_large")
    # test_scheduler_euler_ancestral.py (the noise drawn by each step from a shared table)
    add("euler_ancestral", "test_full_loop_no_noise (shared noise)", EULER_ANCESTRAL)
    add("euler_ancestral_v", "test_full_loop_with_v_prediction (shared noise)", EULER_ANCESTRAL,
        prediction_type="v_prediction")
    add("euler_ancestral_noise", "test_full_loop_with_noise (shared noise)", EULER_ANCESTRAL,
        t_start=8)
    # flow matching (the dummy model on diffusers' flow schedulers)
    add("flow_euler", "(options)", FLOW)
    add("flow_euler_shift3", "(options)", FLOW, shift=3.0)
    return out


def scheduler_of(config: dict):
    import diffusers

    cls = getattr(diffusers, config["_class_name"])
    return cls.from_config({k: v for k, v in config.items() if k != "_class_name"})


def diffusers_loop(case: dict, float64: bool) -> np.ndarray:
    """The full loop in diffusers (plain loop; float64 tables and sample with ``float64``)."""
    import torch

    from jaxdist.testing.scheduler_tests import (EULER_TYPE, dummy_noise_deter,
                                                 dummy_sample_deter, stage_noise, variance_noise)

    config = case["config"]
    sched = scheduler_of(config)
    if float64 and "beta_schedule" in config:
        float64_schedule(sched)
    dtype = torch.float64 if float64 else torch.float32
    sched.set_timesteps(case["n_steps"])
    euler = config["_class_name"] in EULER_TYPE
    edm = config["_class_name"].startswith("EDM")

    def model(x, t):
        t = torch.as_tensor(t, dtype=x.dtype)
        return x * t / (t + 1)

    sample = torch.tensor(dummy_sample_deter(), dtype=dtype)
    if euler or config["_class_name"] == "EDMEulerScheduler":
        sample = sample * sched.init_noise_sigma
    timesteps = sched.timesteps
    if case["t_start"]:
        timesteps = timesteps[case["t_start"] * sched.order:]
        noise = torch.tensor(dummy_noise_deter(), dtype=dtype)
        sample = sched.add_noise(sample, noise, timesteps[:1])
    generator = torch.manual_seed(0)
    step_args = inspect.signature(sched.step).parameters
    table = torch.tensor(variance_noise(len(sched.timesteps)), dtype=dtype)[case["t_start"]:]
    stochastic = "sde" in str(config.get("algorithm_type", ""))
    full_table = torch.tensor(variance_noise(len(sched.timesteps)), dtype=dtype)
    module = sys.modules[type(sched).__module__]
    drawn = [case["t_start"]]  # a step's own draws: the next row of the table

    def table_row(shape, **kw):
        drawn[0] += 1
        return full_table[drawn[0] - 1].reshape(shape)

    if hasattr(module, "randn_tensor"):
        module.randn_tensor = table_row
    if hasattr(sched, "noise_sampler"):  # DPMSolverSDE: the stage's draw, then the step's
        stages = torch.tensor(stage_noise(len(sched.timesteps)), dtype=dtype)
        calls = [0]

        def noise_sampler(sigma, sigma_next):
            calls[0] += 1
            row = case["t_start"] + (calls[0] - 1) // 2
            return (stages if calls[0] % 2 else full_table)[row]

        sched.noise_sampler = noise_sampler
    with torch.no_grad():
        for i, t in enumerate(timesteps):
            x_in = sched.scale_model_input(sample, t) if (euler or edm) else sample
            extra = {"generator": generator} if "generator" in step_args else {}
            if stochastic:
                extra = {"variance_noise": table[i]}
            out = sched.step(model(x_in, t), t, sample, **extra)
            sample = out.prev_sample.to(dtype)
    return sample.double().numpy()


def summary(x: np.ndarray) -> dict:
    flat = x.reshape(-1)
    return {"sum_abs": float(np.abs(flat).sum()), "mean_abs": float(np.abs(flat).mean()),
            "slice": rounded(flat[::32].tolist(), 15)}


def relative_error(ours: np.ndarray, row: dict) -> float:
    flat = ours.reshape(-1)
    want = np.asarray(row["slice"])
    scale = np.abs(want).max()
    return float(max(np.abs(flat[::32] - want).max() / scale,
                     abs(np.abs(flat).sum() - row["sum_abs"]) / row["sum_abs"]))


def jaxdist_result(case: dict):
    """(expressible, final sample or the reason it is not expressible)."""
    from jaxdist.testing.scheduler_tests import full_loop

    try:
        return True, full_loop(case)
    except ValueError as err:
        return False, str(err)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--only", default=None, help="substring of the case names to run")
    args = ap.parse_args()
    import diffusers
    import jax
    import torch

    jax.config.update("jax_enable_x64", True)
    rows, table = [], []
    for case in cases():
        if args.only and args.only not in case["name"]:
            continue
        row = dict(case, **summary(diffusers_loop(case, float64=True)))
        row["stock_sum_abs"] = summary(diffusers_loop(case, float64=False))["sum_abs"]
        ok, ours = jaxdist_result(case)
        row["expressible"] = ok
        if ok:
            err = relative_error(ours, row)
            table.append((case["name"], f"{err:.1e}", "yes" if err <= args.rtol else "NO"))
        else:
            row["reason"] = ours
            table.append((case["name"], "-", f"not expressible: {ours[:70]}"))
        rows.append(row)
    golden = {"about": "Generated by benchmarks/parity_diffusers.py; do not edit.",
              "versions": {"diffusers": diffusers.__version__, "torch": torch.__version__},
              "rtol": args.rtol, "cases": rows}
    if not args.only:
        write_golden(args.out, golden)
    matched = print_verdicts(table)
    expressible = sum(r[1] != "-" for r in table)
    print(f"diffusers parity: {matched} matched / {expressible} expressible / {len(table)} total "
          f"(relative {args.rtol:g})")


if __name__ == "__main__":
    main()
