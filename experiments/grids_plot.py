"""The named time grids in log-SNR against the step index: writes ``docs/img/grids.png``.

Left: 10 steps on Stable Diffusion 1.5's discrete schedule (``VPDiscrete`` of its diffusers
config), every grid that applies there. Right: 28 steps of the flow-matching grids on
``RectifiedFlow`` (SD3's shift, Flux's resolution-dependent shift, LTX's ``shift_terminal``,
Mochi's linear-quadratic). The final step to clean data (log-SNR ``+inf``) and, for the flows,
the pure-noise start (``-inf``) are left out.

    python experiments/grids_plot.py [--out docs/img/grids.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import jaxdist as jd  # noqa: E402

SD = {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
      "beta_end": 0.012}
SD_GRIDS = [  # label, name, options
    ("time_uniform (normal)", "normal", {}), ("logsnr_uniform / exponential", "exponential", {}),
    ("karras (rho 7)", "karras", {}), ("polyexponential (rho 2)", "polyexponential", {"rho": 2.0}),
    ("kl_optimal", "kl_optimal", {}), ("simple", "simple", {}), ("sgm_uniform", "sgm_uniform", {}),
    ("ddim_uniform", "ddim_uniform", {}), ("beta (0.6, 0.6)", "beta", {}),
    ("trailing (diffusers)", "trailing", {}), ("leading (diffusers)", "leading", {}),
    ("AYS SD 1.5", "ays_sd1", {}), ("AYS SDXL", "ays_sdxl", {}), ("GITS (1.20)", "gits", {}),
]
FLUX = {"use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15, "shift": 3.0}
LTX = {"use_dynamic_shifting": True, "base_shift": 0.95, "max_shift": 2.05,
       "base_image_seq_len": 1024, "max_image_seq_len": 4096, "shift_terminal": 0.1}


def flow_grids(n: int) -> list[tuple[str, np.ndarray]]:
    rf = jd.schedules.RectifiedFlow()
    flux_sigmas = np.linspace(1.0, 1.0 / n, n)
    return [
        ("uniform (shift 1)", jd.grids.flow_match({}, n)),
        ("SD3 (shift 3)", jd.grids.flow_match({"shift": 3.0}, n)),
        ("Flux, 1024 tokens (mu 0.71)",
         jd.grids.flow_match(FLUX, n, image_seq_len=1024, sigmas=flux_sigmas)),
        ("Flux, 4096 tokens (mu 1.15)",
         jd.grids.flow_match(FLUX, n, image_seq_len=4096, sigmas=flux_sigmas)),
        ("Flux 4096, linear time shift",
         jd.grids.flow_match(dict(FLUX, time_shift_type="linear"), n, image_seq_len=4096,
                             sigmas=flux_sigmas)),
        ("LTX (shift_terminal 0.1)", jd.grids.flow_match(LTX, n, image_seq_len=2048)),
        ("linear_quadratic (Mochi)", jd.grids.linear_quadratic(rf, n)),
        ("kl_optimal", jd.grids.kl_optimal(rf, n)),
    ]


def _plot(ax, schedule, grids, title, legend_loc):
    markers = "os^vD<>pP*hX+x"
    colors = list(plt.get_cmap("tab10").colors) + list(plt.get_cmap("Dark2").colors)[:6]
    for k, (label, grid) in enumerate(grids):
        t = np.asarray(grid)
        lam = np.asarray(jd.grids.common.evaluate(schedule, "log_snr", t))
        keep = np.isfinite(lam)
        ax.plot(np.arange(t.size)[keep], lam[keep], marker=markers[k % len(markers)],
                color=colors[k % len(colors)], ms=4, lw=1.2, label=label)
    ax.set_xlabel("step index i (grid point t_i)")
    ax.set_ylabel("log-SNR  lambda(t_i) = log(alpha^2 / sigma^2)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, ncol=2, loc=legend_loc)


def main() -> None:
    ap = argparse.ArgumentParser(description="Plot the named grids in log-SNR.")
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).resolve().parents[1] / "docs" / "img" / "grids.png")
    args = ap.parse_args()
    sd = jd.schedules.VPDiscrete.from_diffusers_config(SD)
    sd_grids = [(label, jd.grids.by_name(name, sd, 10, **opts)) for label, name, opts in SD_GRIDS]
    fig, axes = plt.subplots(1, 2, figsize=(15, 6.5))
    _plot(axes[0], sd, sd_grids, "10 steps on SD 1.5 (VPDiscrete, 1000 training steps)",
          "lower right")
    _plot(axes[1], jd.schedules.RectifiedFlow(), flow_grids(28),
          "28 steps of flow-matching grids (RectifiedFlow)", "upper left")
    fig.suptitle("jd.grids: where each named grid puts its steps (final step to t = 0 not shown)")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
