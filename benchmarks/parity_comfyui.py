"""Golden results of ComfyUI's newer samplers for ``tests/solvers/test_parity_comfyui.py``:
``tests/golden/parity_comfyui.json``.

Runs in a torch environment (torch, numpy, scipy, torchsde, tqdm) on ComfyUI's own
``comfy/k_diffusion/sampling.py`` (and ``sa_solver.py`` beside it), which is not part of jaxdist:

    python benchmarks/parity_comfyui.py --comfyui-sampling PATH/comfy/k_diffusion/sampling.py

The few ``comfy.*`` modules it imports are stubbed here (``model_patcher``, ``model_sampling``
with an EDM ``percent_to_sigma``, ``k_diffusion.utils.append_dims``, ``k_diffusion.deis``). The
problem is ``jaxdist.testing.kdiffusion_problem``'s: the exact Gaussian-mixture denoiser in
float64 (``benchmarks/parity_kdiffusion.py``'s torch version), Karras sigmas
``get_sigmas_karras(10, 0.002, 80, rho=7)`` and 0, ``x_T = 80 z`` for 16 points, and a table of
standard normals handed out call by call as ``noise_sampler``; the start sigma of each call is
stored so that jaxdist's noise source gives the same draw to the same sub-step.

ER-SDE's quadrature nodes are a float32 ``torch.arange`` in ComfyUI (its sums run in float32):
the stored ``er_sde*`` rows use float64 nodes (the module's ``torch.float32`` read as float64), and
the printed ``er_sde (float32 nodes)`` line is how far ComfyUI's unmodified code is from them.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import sys
import types
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "tests" / "golden" / "parity_comfyui.json"
N_STEPS, BATCH, N_DRAWS = 10, 16, 40
#: data of jaxdist.testing.kdiffusion_problem.MIXTURE (copied so that no jax is needed here)
MIXTURE = ([0.5, 0.3, 0.2], [[-1.0, 0.5], [1.5, -0.5], [0.0, 2.0]],
           [[0.09, 0.04], [0.16, 0.09], [0.04, 0.25]])
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0

#: name -> (ComfyUI function, its options); the jaxdist side is in the test
CASES = {
    "res_multistep": ("sample_res_multistep", {}),
    "res_multistep_ancestral": ("sample_res_multistep_ancestral", {"eta": 1.0}),
    "res_multistep_ancestral_eta0.5": ("sample_res_multistep_ancestral", {"eta": 0.5}),
    "gradient_estimation": ("sample_gradient_estimation", {}),
    "gradient_estimation_gamma1.5": ("sample_gradient_estimation", {"ge_gamma": 1.5}),
    "er_sde": ("sample_er_sde", {}),
    "er_sde_stage2_s_noise0.5": ("sample_er_sde", {"max_stage": 2, "s_noise": 0.5}),
    "seeds_2": ("sample_seeds_2", {}),
    "seeds_2_eta0": ("sample_seeds_2", {"eta": 0.0}),
    "seeds_3": ("sample_seeds_3", {}),
    "sa_solver": ("sample_sa_solver", {}),
    "sa_solver_pece": ("sample_sa_solver_pece", {}),
    "sa_solver_p2_c3": ("sample_sa_solver", {"predictor_order": 2, "corrector_order": 3}),
}


class EDMSampling:
    """ComfyUI's ``ModelSamplingContinuousEDM`` as far as the samplers read it."""

    sigma_min, sigma_max = SIGMA_MIN, SIGMA_MAX

    def percent_to_sigma(self, percent: float) -> float:
        import math

        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        lo = math.log(self.sigma_min)
        return math.exp((math.log(self.sigma_max) - lo) * (1.0 - percent) + lo)


def load_comfyui_sampling(path: Path, float64_nodes: bool):
    """ComfyUI's ``sampling`` module loaded from ``path`` with the ``comfy.*`` stubs."""
    import torch

    comfy = types.ModuleType("comfy")
    kd = types.ModuleType("comfy.k_diffusion")
    kd.__path__ = [str(path.parent)]
    patcher = types.ModuleType("comfy.model_patcher")
    patcher.set_model_options_post_cfg_function = lambda options, fn, **kw: options
    sampling_mod = types.ModuleType("comfy.model_sampling")
    sampling_mod.CONST = type("CONST", (), {})
    utils = types.ModuleType("comfy.k_diffusion.utils")
    utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]
    deis = types.ModuleType("comfy.k_diffusion.deis")
    comfy.model_patcher, comfy.model_sampling, comfy.k_diffusion = patcher, sampling_mod, kd
    sys.modules.update({"comfy": comfy, "comfy.k_diffusion": kd, "comfy.model_patcher": patcher,
                        "comfy.model_sampling": sampling_mod, "comfy.k_diffusion.utils": utils,
                        "comfy.k_diffusion.deis": deis})
    for name in ("sa_solver", "sampling"):
        spec = importlib.util.spec_from_file_location(f"comfy.k_diffusion.{name}",
                                                      path.parent / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        setattr(kd, name, module)
    if float64_nodes:
        proxy = types.ModuleType("torch_float64_nodes")
        proxy.__getattr__ = lambda name: getattr(torch, name)
        proxy.float32 = torch.float64
        module.torch = proxy
    return module


def torch_model():
    """The exact mixture denoiser ``E[x0 | x = x0 + sigma eps]`` in torch float64, wrapped as a
    ComfyUI model (``model.inner_model.model_patcher.get_model_object``)."""
    import torch

    w, mu, var = (torch.tensor(a, dtype=torch.float64) for a in MIXTURE)
    sampling = EDMSampling()

    def model(x, sigma, **kwargs):
        s2 = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, 1, 1) ** 2
        v = var[None] + s2
        r = x[:, None, :] - mu[None]
        logp = torch.log(w)[None] - 0.5 * torch.sum(r**2 / v + torch.log(v), -1)
        gamma = torch.softmax(logp, -1)[..., None]
        return torch.sum(gamma * (mu[None] + var[None] / v * r), 1)

    patcher = types.SimpleNamespace(get_model_object=lambda name: sampling)
    model.inner_model = types.SimpleNamespace(model_patcher=patcher)
    return model


def comfyui_run(sampling, name: str, x_T: np.ndarray, draws: np.ndarray):
    """ComfyUI's result and the start sigma of each ``noise_sampler`` call."""
    import torch

    fn_name, options = CASES[name]
    sigmas = sampling.get_sigmas_karras(N_STEPS, SIGMA_MIN, SIGMA_MAX, rho=7.0).double()
    table = iter(torch.tensor(draws, dtype=torch.float64))
    starts = []

    def noise_sampler(sigma, sigma_next):
        starts.append(float(sigma))
        return next(table)

    x = torch.tensor(x_T, dtype=torch.float64)
    fn = getattr(sampling, fn_name)
    kwargs = dict(options)
    if "noise_sampler" in inspect.signature(fn).parameters:
        kwargs["noise_sampler"] = noise_sampler
    out = fn(torch_model(), x, sigmas, disable=True, **kwargs)
    return out.double().numpy(), starts, sigmas.numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--comfyui-sampling", type=Path, required=True,
                    help="ComfyUI's comfy/k_diffusion/sampling.py")
    ap.add_argument("--comfyui-commit", default="", help="recorded in the golden")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    import torch

    torch.set_default_dtype(torch.float64)
    rng = np.random.default_rng(0)
    x_T = np.round(80.0 * rng.standard_normal((BATCH, 2)), 10)
    draws = np.round(rng.standard_normal((N_DRAWS, BATCH, 2)), 10)
    exact = load_comfyui_sampling(args.comfyui_sampling, float64_nodes=True)
    rows = []
    for name in CASES:
        out, starts, sigmas = comfyui_run(exact, name, x_T, draws)
        rows.append({"name": name, "function": CASES[name][0], "options": CASES[name][1],
                     "noise_starts": [float(repr_round(s)) for s in starts],
                     "x": [[float(repr_round(v)) for v in r] for r in out.tolist()]})
        print(f"{name:<32} {len(starts):>3} noise calls  sum|x| = {np.abs(out).sum():.12g}")
    stock = load_comfyui_sampling(args.comfyui_sampling, float64_nodes=False)
    for row in rows:
        if row["function"] == "sample_er_sde":
            out = comfyui_run(stock, row["name"], x_T, draws)[0]
            err = np.abs(out - np.asarray(row["x"])).max() / np.abs(out).max()
            print(f"{row['name']} (float32 nodes, ComfyUI unmodified): relative {err:.1e}")
    golden = {"about": "Generated by benchmarks/parity_comfyui.py; do not edit.",
              "versions": {"comfyui": args.comfyui_commit, "torch": torch.__version__},
              "n_steps": N_STEPS, "sigmas": sigmas.tolist(), "x_T": x_T.tolist(),
              "noise": draws.tolist(), "samplers": rows}
    args.out.write_text(json.dumps(golden, separators=(",", ":")).replace('{"name"', '\n{"name"')
                        + "\n")
    print(f"wrote {args.out}")


def repr_round(v: float) -> str:
    """``v`` to 17 significant digits (float64 round trip)."""
    return f"{v:.17g}"


if __name__ == "__main__":
    main()
