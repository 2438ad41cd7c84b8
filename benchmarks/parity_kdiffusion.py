"""Golden results of k-diffusion's samplers for ``tests/solvers/test_parity_golden.py``:
``tests/golden/parity_kdiffusion.json``.

Runs in a torch environment with k-diffusion (its ``sampling`` module only, as
``parity_grids.py`` loads it; needs scipy, torchsde, torchdiffeq) and jaxdist installed:

    python benchmarks/parity_kdiffusion.py        # ~20 s on CPU

The problem (``jaxdist.testing.kdiffusion_problem``): an exact Gaussian-mixture denoiser in
float64 (written here in torch: the posterior mean of ``x0`` given ``x = x0 + sigma eps``),
``get_sigmas_karras(10, 0.002, 80, rho=7)``, ``x_T = 80 z`` for 16 points, and one table of
standard normals per step given to k-diffusion as ``noise_sampler`` (and to jaxdist as the
solver's noise source). Stored: ``x_T``, the noise table and, per sampler, k-diffusion's final
points (32 numbers). jaxdist then runs each pair and the table prints the largest relative
difference (target 1e-14 in float64: the runs agree to ~2e-15).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity_grids import (load_kdiffusion_sampling, print_verdicts, rounded,  # noqa: E402
                          write_golden)

OUT = Path(__file__).resolve().parents[1] / "tests" / "golden" / "parity_kdiffusion.json"
N_STEPS, BATCH = 10, 16


def torch_denoiser():
    """The exact mixture denoiser ``D(x, sigma) = E[x0 | x]`` in torch float64."""
    import torch

    from jaxdist.testing.kdiffusion_problem import MIXTURE

    w, mu, var = (torch.tensor(a, dtype=torch.float64) for a in MIXTURE)

    def model(x, sigma, **kwargs):
        s2 = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, 1, 1) ** 2  # [b or 1, 1, 1]
        v = var[None] + s2                                     # [b, k, d]
        r = x[:, None, :] - mu[None]                           # [b, k, d]
        logp = torch.log(w)[None] - 0.5 * torch.sum(r**2 / v + torch.log(v), -1)
        gamma = torch.softmax(logp, -1)[..., None]             # [b, k, 1]
        post = mu[None] + var[None] / v * r
        return torch.sum(gamma * post, 1)

    return model


def kdiffusion_run(kd, name: str, x_T: np.ndarray, noise: np.ndarray,
                   stage_noise: np.ndarray) -> np.ndarray:
    import torch

    from jaxdist.testing.kdiffusion_problem import (SAMPLERS, SIGMA_MAX, SIGMA_MIN, _samplers)

    _samplers()
    fn_name, options, _, kind = SAMPLERS[name]
    fn = getattr(kd, fn_name)
    x = torch.tensor(x_T, dtype=torch.float64)
    draws = iter(torch.tensor(noise, dtype=torch.float64))
    kwargs = dict(options)
    if fn_name not in ("sample_euler", "sample_heun", "sample_dpmpp_2m", "sample_dpm_2",
                       "sample_lms"):
        kwargs["noise_sampler"] = lambda sigma, sigma_next: next(draws)
    if kind in ("karras", "karras_positive"):
        sigmas = kd.get_sigmas_karras(N_STEPS + (kind != "karras"), SIGMA_MIN, SIGMA_MAX,
                                      rho=7.0, device="cpu").double()
        sigmas = sigmas if kind == "karras" else sigmas[:-1]
        if fn_name == "sample_dpmpp_sde":  # two draws a step: the stage's and the step's
            kwargs["noise_sampler"] = stage_sampler(sigmas, noise, stage_noise)
        out = fn(torch_denoiser(), x, sigmas, disable=True, **kwargs)
    else:
        out = fn(torch_denoiser(), x, SIGMA_MIN, SIGMA_MAX, disable=True, **kwargs)
    return out.double().numpy()


def stage_sampler(sigmas, noise: np.ndarray, stage_noise: np.ndarray):
    """``noise[i]`` for a call on the step from ``sigmas[i]`` to ``sigmas[i + 1]``,
    ``stage_noise[i]`` for a call to a point inside it (``NoiseTable`` with ``stage``)."""
    import torch

    grid = sigmas.numpy()

    def sample(sigma, sigma_next):
        i = int(np.argmin(np.abs(grid[:-1] - float(sigma))))
        on_grid = abs(grid[i + 1] - float(sigma_next)) <= 1e-12 * abs(grid[i])
        return torch.tensor((noise if on_grid else stage_noise)[i], dtype=torch.float64)

    return sample


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--rtol", type=float, default=1e-14)
    args = ap.parse_args()
    import jax
    import torch

    jax.config.update("jax_enable_x64", True)
    torch.set_default_dtype(torch.float64)
    kd = load_kdiffusion_sampling()
    if not hasattr(kd.utils, "append_dims"):  # the only utils function sampling uses
        kd.utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]
    from jaxdist.testing.kdiffusion_problem import NOT_EXPRESSIBLE, SAMPLERS, _samplers, run

    _samplers()
    rng = np.random.default_rng(0)
    x_T = np.round(80.0 * rng.standard_normal((BATCH, 2)), 10)
    noise = np.round(rng.standard_normal((N_STEPS, BATCH, 2)), 10)
    stage_noise = np.round(rng.standard_normal((N_STEPS, BATCH, 2)), 10)
    rows, table = [], []
    for name in SAMPLERS:
        want = kdiffusion_run(kd, name, x_T, noise, stage_noise)
        ours = run(name, x_T, noise, N_STEPS, stage_noise)
        err = float(np.abs(ours - want).max() / np.abs(want).max())
        rows.append({"name": name, "function": SAMPLERS[name][0], "options": SAMPLERS[name][1],
                     "x": [rounded(r, 15) for r in want.tolist()]})
        table.append((name, f"{err:.1e}", "yes" if err <= args.rtol else "NO"))
        print(f"{name}: relative {err:.2e}")
    for fn_name, reason in NOT_EXPRESSIBLE.items():
        table.append((fn_name, "-", f"not expressible: {reason[:60]}"))
    golden = {"about": "Generated by benchmarks/parity_kdiffusion.py; do not edit.",
              "versions": {"k-diffusion": _version("k-diffusion"), "torch": torch.__version__},
              "n_steps": N_STEPS, "rtol": args.rtol, "x_T": x_T.tolist(),
              "noise": noise.tolist(), "stage_noise": stage_noise.tolist(), "samplers": rows}
    write_golden(args.out, golden)
    matched = print_verdicts(table)
    print(f"k-diffusion parity: {matched} matched / {len(SAMPLERS)} expressible / "
          f"{len(table)} total (relative {args.rtol:g}, float64)")


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    main()
