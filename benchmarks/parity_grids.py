"""Golden noise levels for ``tests/test_grids_golden.py``: diffusers' ``set_timesteps`` and
k-diffusion's ``get_sigmas_*`` for a list of configs, written to ``tests/golden/grids_peers.json``.

Runs in a torch environment (torch, diffusers, k-diffusion, scipy; jaxdist is not imported):

    python benchmarks/parity_grids.py                      # ~10 s on CPU
    python benchmarks/parity_grids.py --comfyui ~/ComfyUI  # also ComfyUI's schedulers

With ``--comfyui DIR`` (a ComfyUI checkout) the named schedulers of ``comfy/samplers.py``, its
``ModelSamplingDiscrete`` / ``ModelSamplingDiscreteFlow`` and the ``AlignYourStepsScheduler`` and
``GITSScheduler`` nodes are run too: their function and class definitions are read from the
files and executed with torch (ComfyUI itself is not imported: its package pulls in the GPU
runtime). Without it, the ``comfyui`` section of an existing golden file is kept.

For each beta-schedule config the scheduler is run twice: as shipped (its ``alphas_cumprod`` is
float32, so sigmas carry ~1e-5 relative rounding: ``sigmas_stock``) and with its ``betas`` /
``alphas_cumprod`` (and DPM's ``alpha_t`` / ``sigma_t`` / ``lambda_t``) recomputed in float64
before ``set_timesteps`` (``sigmas``): the same algorithm without float32 rounding, which jaxdist
must match to 1e-6. k-diffusion's package ``__init__`` imports image and training dependencies,
so only its ``sampling`` module is loaded (with an empty ``k_diffusion.utils``; the ``get_sigmas_*``
functions do not use it).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "tests" / "golden" / "grids_peers.json"
SD = {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
      "beta_end": 0.012}
LINEAR = {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 0.0001,
          "beta_end": 0.02}
FLUX = {"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 3.0,
        "use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15,
        "base_image_seq_len": 256, "max_image_seq_len": 4096}
LTX = {"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 1.0, "use_dynamic_shifting": True,
       "base_shift": 0.95, "max_shift": 2.05, "base_image_seq_len": 1024,
       "max_image_seq_len": 4096, "shift_terminal": 0.1}


def flux_mu(seq_len, base_seq_len=256, max_seq_len=4096, base_shift=0.5, max_shift=1.15):
    """diffusers' ``calculate_shift`` (the Flux pipeline's)."""
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return seq_len * m + base_shift - m * base_seq_len


def cases() -> list[dict]:
    """(name, config, n_steps, set_timesteps kwargs)."""
    out = []

    def add(name, config, n, **kwargs):
        out.append({"name": name, "config": config, "n_steps": n, "kwargs": kwargs})

    fm = "FlowMatchEulerDiscreteScheduler"
    add("sd3_shift3", {"_class_name": fm, "shift": 3.0}, 28)
    add("sd3_shift3_n10", {"_class_name": fm, "shift": 3.0}, 10)
    add("flow_shift1", {"_class_name": fm}, 10)
    for seq in (1024, 4096):
        n = 10
        add(f"flux_seq{seq}", FLUX, n, mu=flux_mu(seq), sigmas=list(np.linspace(1.0, 1 / n, n)))
    add("flux_mu_default_sigmas", FLUX, 12, mu=flux_mu(2048))
    add("flux_linear_time_shift", dict(FLUX, time_shift_type="linear"), 10, mu=flux_mu(4096),
        sigmas=list(np.linspace(1.0, 0.1, 10)))
    add("ltx_shift_terminal", LTX, 8, mu=flux_mu(2048, 1024, 4096, 0.95, 2.05))
    add("static_shift_terminal", {"_class_name": fm, "shift": 3.0, "shift_terminal": 0.05}, 10)
    add("mochi_invert_sigmas", {"_class_name": fm, "invert_sigmas": True}, 10)
    for conv in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"):
        add(f"flow_{conv[4:]}", {"_class_name": fm, "shift": 3.0, conv: True}, 10)

    dpm, euler = "DPMSolverMultistepScheduler", "EulerDiscreteScheduler"
    for conv in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "use_lu_lambdas"):
        for final in ("zero", "sigma_min"):
            for n in (10, 25) if conv == "use_karras_sigmas" else (10,):
                add(f"dpm_{conv[4:]}_{final}_{n}",
                    dict(SD, _class_name=dpm, **{conv: True}, final_sigmas_type=final), n)
    add("dpm_karras_cosine", {"_class_name": dpm, "num_train_timesteps": 1000,
                              "beta_schedule": "squaredcos_cap_v2", "use_karras_sigmas": True}, 10)
    for conv in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"):
        for spacing, offset in (("linspace", 0), ("leading", 1), ("trailing", 0)):
            for final in ("zero", "sigma_min"):
                add(f"euler_{conv[4:]}_{spacing}_{final}",
                    dict(SD, _class_name=euler, **{conv: True}, timestep_spacing=spacing,
                         steps_offset=offset, final_sigmas_type=final), 10)
    add("euler_karras_sigma_range", dict(SD, _class_name=euler, use_karras_sigmas=True,
                                         sigma_min=0.1, sigma_max=10.0), 10)
    for spacing, offset in (("linspace", 0), ("leading", 1), ("trailing", 0)):
        add(f"euler_default_{spacing}", dict(SD, _class_name=euler, timestep_spacing=spacing,
                                              steps_offset=offset), 7)
    add("heun_karras", dict(SD, _class_name="HeunDiscreteScheduler", use_karras_sigmas=True), 10)
    add("lms_beta", dict(LINEAR, _class_name="LMSDiscreteScheduler", use_beta_sigmas=True), 10)
    for cls in ("UniPCMultistepScheduler", "DEISMultistepScheduler", "DPMSolverSinglestepScheduler"):
        short = cls.replace("MultistepScheduler", "").replace("Scheduler", "").lower()
        for final in ("zero",) if short == "deis" else ("zero", "sigma_min"):  # DEIS: sigma_min
            add(f"{short}_karras_{final}",
                dict(SD, _class_name=cls, use_karras_sigmas=True, final_sigmas_type=final), 10)
            add(f"{short}_flow_{final}", dict(LINEAR, _class_name=cls, use_flow_sigmas=True,
                                              flow_shift=3.0, final_sigmas_type=final,
                                              prediction_type="flow_prediction"), 10)
        add(f"{short}_default_sigma_min", dict(SD, _class_name=cls, final_sigmas_type="sigma_min",
                                               timestep_spacing="trailing"), 10)
    add("unipc_flow_dynamic", dict(LINEAR, _class_name="UniPCMultistepScheduler",
                                   use_flow_sigmas=True, use_dynamic_shifting=True,
                                   prediction_type="flow_prediction"), 10, mu=0.8)
    add("dpm_flow_mu", dict(LINEAR, _class_name=dpm, use_flow_sigmas=True,
                            use_dynamic_shifting=True, prediction_type="flow_prediction"), 10,
        mu=1.1)
    ddim = "DDIMScheduler"
    for spacing, offset in (("leading", 1), ("leading", 0), ("trailing", 0), ("linspace", 0)):
        for one in (True, False):
            add(f"ddim_{spacing}_offset{offset}_alpha_one_{one}",
                dict(SD, _class_name=ddim, timestep_spacing=spacing, steps_offset=offset,
                     set_alpha_to_one=one, clip_sample=False), 10)
    add("dpm_leading_offset1", dict(SD, _class_name=dpm, timestep_spacing="leading",
                                    steps_offset=1), 10)
    return out


def float64_schedule(sched) -> None:
    """Recomputes the scheduler's beta-derived tables in float64 (same formulas, no rounding)."""
    import torch

    cfg = sched.config
    n = cfg.num_train_timesteps
    if cfg.trained_betas is not None:
        betas = torch.tensor(cfg.trained_betas, dtype=torch.float64)
    elif cfg.beta_schedule == "linear":
        betas = torch.linspace(cfg.beta_start, cfg.beta_end, n, dtype=torch.float64)
    elif cfg.beta_schedule == "scaled_linear":
        betas = torch.linspace(cfg.beta_start**0.5, cfg.beta_end**0.5, n, dtype=torch.float64) ** 2
    elif cfg.beta_schedule == "squaredcos_cap_v2":
        import math

        def abar(u):
            return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = torch.tensor([min(1 - abar((i + 1) / n) / abar(i / n), 0.999) for i in range(n)],
                             dtype=torch.float64)
    else:
        raise ValueError(cfg.beta_schedule)
    sched.betas = betas
    sched.alphas = 1.0 - betas
    sched.alphas_cumprod = torch.cumprod(sched.alphas, dim=0)
    if hasattr(sched, "alpha_t"):
        sched.alpha_t = torch.sqrt(sched.alphas_cumprod)
        sched.sigma_t = torch.sqrt(1 - sched.alphas_cumprod)
        sched.lambda_t = torch.log(sched.alpha_t) - torch.log(sched.sigma_t)
    if hasattr(sched, "final_alpha_cumprod"):
        sched.final_alpha_cumprod = (torch.tensor(1.0, dtype=torch.float64) if cfg.set_alpha_to_one
                                     else sched.alphas_cumprod[0])


def run_case(case: dict, float64: bool) -> tuple[list, list]:
    import diffusers

    config = case["config"]
    sched = getattr(diffusers, config["_class_name"]).from_config(config)
    if float64 and "beta_schedule" in config:
        float64_schedule(sched)
    sched.set_timesteps(case["n_steps"], **case["kwargs"])
    timesteps = sched.timesteps.double().numpy()
    if config["_class_name"].startswith("DDIM"):
        ac = sched.alphas_cumprod.double().numpy()
        ts = timesteps.astype(int)
        sig = np.sqrt((1 - ac[ts]) / ac[ts])
        fac = float(sched.final_alpha_cumprod)
        sigmas = np.append(sig, np.sqrt((1 - fac) / fac))
    else:
        sigmas = sched.sigmas.double().numpy()
    if config["_class_name"].startswith("Heun"):  # inner points are listed twice
        sigmas = np.concatenate([sigmas[:1], sigmas[1:-1:2], sigmas[-1:]])
        timesteps = timesteps[::2]
    return sigmas.tolist(), timesteps.tolist()


def load_kdiffusion_sampling():
    spec = importlib.util.find_spec("k_diffusion")
    pkg = types.ModuleType("k_diffusion")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules.setdefault("k_diffusion", pkg)
    sys.modules.setdefault("k_diffusion.utils", types.ModuleType("k_diffusion.utils"))
    return importlib.import_module("k_diffusion.sampling")


def kdiffusion_cases() -> list[dict]:
    kd = load_kdiffusion_sampling()
    out = []
    for fn, args in (("karras", dict(n=18, sigma_min=0.002, sigma_max=80.0, rho=7.0)),
                     ("karras", dict(n=10, sigma_min=0.0291675, sigma_max=14.614642, rho=7.0)),
                     ("karras", dict(n=12, sigma_min=0.002, sigma_max=80.0, rho=3.0)),
                     ("exponential", dict(n=10, sigma_min=0.002, sigma_max=80.0)),
                     ("polyexponential", dict(n=10, sigma_min=0.002, sigma_max=80.0, rho=1.0)),
                     ("polyexponential", dict(n=15, sigma_min=0.002, sigma_max=80.0, rho=2.0)),
                     ("polyexponential", dict(n=8, sigma_min=0.01, sigma_max=50.0, rho=0.5))):
        import torch

        torch.set_default_dtype(torch.float64)
        sig = getattr(kd, f"get_sigmas_{fn}")(**args)
        torch.set_default_dtype(torch.float32)
        out.append({"fn": fn, "args": args, "sigmas": rounded(sig.double().numpy().tolist())})
    return out


def _definitions(path: Path, names: tuple[str, ...], namespace: dict) -> None:
    """Executes the top-level functions, classes and assignments called ``names`` of a file."""
    import ast

    tree = ast.parse(path.read_text())
    keep = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in names:
            keep.append(node)
        elif isinstance(node, ast.Assign) and any(getattr(t, "id", None) in names
                                                   for t in node.targets):
            keep.append(node)
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(path), "exec"), namespace)


def comfyui_cases(root: Path) -> list[dict]:
    """ComfyUI's schedulers on SD 1.5's discrete sampling and on an unshifted flow model."""
    import math
    import types as _types

    import scipy.stats
    import torch

    io = _types.SimpleNamespace(ComfyNode=object, NodeOutput=lambda x: x, Schema=None)
    ns = {"torch": torch, "math": math, "np": np, "numpy": np, "scipy": scipy, "io": io,
          "override": lambda f: f, "ComfyExtension": object}
    _definitions(root / "comfy/ldm/modules/diffusionmodules/util.py", ("make_beta_schedule",), ns)
    _definitions(root / "comfy/model_sampling.py", ("rescale_zero_terminal_snr_sigmas",
                 "ModelSamplingDiscrete", "time_snr_shift", "ModelSamplingDiscreteFlow"), ns)
    _definitions(root / "comfy/k_diffusion/sampling.py",
                 ("append_zero", "get_sigmas_karras", "get_sigmas_exponential"), ns)
    _definitions(root / "comfy/samplers.py", ("simple_scheduler", "ddim_scheduler",
                 "normal_scheduler", "beta_scheduler", "linear_quadratic_schedule",
                 "kl_optimal_scheduler"), ns)
    sd, flow = ns["ModelSamplingDiscrete"](), ns["ModelSamplingDiscreteFlow"]()

    def by_ms(fn):
        return lambda ms, n: fn(ms, n)

    def by_range(fn):
        return lambda ms, n: fn(n=n, sigma_min=float(ms.sigma_min), sigma_max=float(ms.sigma_max))

    fns = {"simple": by_ms(ns["simple_scheduler"]), "normal": by_ms(ns["normal_scheduler"]),
           "sgm_uniform": by_ms(lambda ms, n: ns["normal_scheduler"](ms, n, sgm=True)),
           "ddim_uniform": by_ms(ns["ddim_scheduler"]), "beta": by_ms(ns["beta_scheduler"]),
           "linear_quadratic": by_ms(ns["linear_quadratic_schedule"]),
           "kl_optimal": by_range(ns["kl_optimal_scheduler"]),
           "karras": by_range(ns["get_sigmas_karras"]),
           "exponential": by_range(ns["get_sigmas_exponential"])}
    out = []
    for name, steps in (("simple", (7, 10, 30)), ("normal", (1, 7, 10, 30)),
                        ("sgm_uniform", (7, 10, 30)), ("ddim_uniform", (7, 10, 30)),
                        ("beta", (7, 10, 30)), ("kl_optimal", (7, 10, 30)),
                        ("karras", (7, 10)), ("exponential", (7, 10))):
        for n in steps:
            out.append({"scheduler": name, "model": "sd1", "steps": n,
                        "sigmas": rounded(fns[name](sd, n).double().tolist())})
    for name, steps in (("simple", (10, 20)), ("normal", (7, 10)), ("sgm_uniform", (7, 10)),
                        ("linear_quadratic", (1, 2, 7, 10, 30))):
        for n in steps:
            out.append({"scheduler": name, "model": "flow", "steps": n,
                        "sigmas": rounded(fns[name](flow, n).double().tolist())})
    _definitions(root / "comfy_extras/nodes_align_your_steps.py",
                 ("loglinear_interp", "NOISE_LEVELS", "AlignYourStepsScheduler"), ns)
    ays = ns["AlignYourStepsScheduler"]
    for model, steps in (("SD1", (3, 10, 20, 32)), ("SDXL", (5, 10, 20)), ("SVD", (10, 25))):
        for n in steps:
            out.append({"scheduler": "ays", "model": model.lower(), "steps": n,
                        "sigmas": rounded(torch.as_tensor(ays.execute(model, n, 1.0)).double().tolist())})
    _definitions(root / "comfy_extras/nodes_gits.py", ("loglinear_interp", "NOISE_LEVELS",
                                                      "GITSScheduler"), ns)
    gits = ns["GITSScheduler"]
    for coeff in (0.80, 1.20, 1.50):
        for n in (2, 5, 10, 20, 25, 40):
            out.append({"scheduler": "gits", "model": "sd1", "steps": n, "coeff": coeff,
                        "sigmas": rounded(torch.as_tensor(gits.execute(coeff, n, 1.0)).double().tolist())})
    return out


def rounded(values, digits: int = 12) -> list:
    """Floats to ``digits`` significant digits (the tests compare to 1e-6), keeping JSON small."""
    return [float(f"{v:.{digits}g}") for v in values]


def write_golden(path: Path, golden: dict) -> None:
    """Compact JSON with one case (``{"name": ...}``) per line, so diffs of goldens read well."""
    path.write_text(json.dumps(golden, separators=(",", ":")).replace('{"name"', '\n{"name"')
                    + "\n")


def print_verdicts(table: list[tuple[str, str, str]]) -> int:
    """Prints ``(name, error, verdict)`` rows aligned; returns how many matched (``"yes"``)."""
    width = max(len(r[0]) for r in table)
    for name, err, verdict in table:
        print(f"{name:<{width}}  {err:>8}  {verdict}")
    return sum(r[2] == "yes" for r in table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--comfyui", type=Path, default=None, help="a ComfyUI checkout")
    args = ap.parse_args()
    import diffusers
    import torch
    from tqdm.auto import tqdm

    rows = []
    for case in tqdm(cases(), desc="diffusers configs"):
        sigmas, timesteps = run_case(case, float64=True)
        row = dict(case, sigmas=rounded(sigmas), timesteps=rounded(timesteps))
        if "beta_schedule" in case["config"]:
            row["sigmas_stock"] = rounded(run_case(case, float64=False)[0], 9)
        rows.append(row)
    from diffusers.schedulers import AysSchedules

    golden = {
        "about": "Generated by benchmarks/parity_grids.py; do not edit.",
        "versions": {"diffusers": diffusers.__version__, "torch": torch.__version__},
        "diffusers": rows,
        "kdiffusion": kdiffusion_cases(),
        "diffusers_ays": {k: list(v) for k, v in AysSchedules.items()},
    }
    if args.comfyui is not None:
        golden["comfyui"] = comfyui_cases(args.comfyui.expanduser())
    elif args.out.exists():
        golden["comfyui"] = json.loads(args.out.read_text()).get("comfyui", [])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(golden, indent=None, separators=(",", ":")).replace(
        '{"name"', '\n{"name"').replace('{"fn"', '\n{"fn"').replace('{"scheduler"', '\n{"scheduler"') + "\n")
    print(f"{len(rows)} diffusers configs, {len(golden['kdiffusion'])} k-diffusion grids and "
          f"{len(golden.get('comfyui', []))} ComfyUI schedules -> {args.out}")


if __name__ == "__main__":
    main()
