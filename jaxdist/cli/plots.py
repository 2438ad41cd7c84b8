"""The command line's plots (matplotlib, written as PNG files).

* :func:`draw_samples` / :func:`save_samples`: a scatter plot (2-D data) or an image grid (digits);
* :func:`save_tokens`: discrete samples (``.npz``, and a digit grid or a text file of sequences);
* :func:`plot_loss`: the training loss, smoothed, on a linear axis;
* :func:`plot_bench`: error against NFE, one panel per solver family (DDIM in every panel as the
  grey reference), distinct colours and markers within a panel;
* :func:`plot_stochastic`: Frechet distance and weight error against NFE.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Dataset

__all__ = ["draw_samples", "save_samples", "samples_figure", "plot_loss", "smooth",
           "plot_bench", "plot_stochastic", "FAMILY_TITLES"]

#: solver module -> panel title of ``bench.png``
FAMILY_TITLES = {"ddim": "DDIM", "dpm_solver": "DPM-Solver and DPM-Solver++", "unipc": "UniPC",
                 "deis": "DEIS and iPNDM", "edm": "EDM Euler and Heun",
                 "runge_kutta": "Runge-Kutta", "adaptive": "adaptive DPM-Solver",
                 "sde": "reverse SDE", "sde_dpm_solver": "SDE-DPM-Solver++",
                 "edm_sde": "EDM stochastic", "langevin": "predictor-corrector"}
_MARKERS = "osD^vP*Xh<>"
_REFERENCE = "ddim"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_samples(ax, x: np.ndarray, dataset: Dataset, title: str = "") -> None:
    """Draws samples on a matplotlib axis: a scatter plot for 2-D data, an image grid (up to
    10x10, grey levels clipped to [-1, 1]) for image data sets."""
    if dataset.image_shape is not None:
        _image_grid(ax, x, dataset.image_shape)
    else:
        ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.5)
        ax.set_xlim(-3.5, 3.5)
        ax.set_ylim(-3.5, 3.5)
        ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)


def _image_grid(ax, x: np.ndarray, shape: tuple[int, int]) -> None:
    """Up to 10x10 images of grey levels in [-1, 1] (clipped) on one axis."""
    h, w = shape
    k = int(np.ceil(np.sqrt(min(len(x), 100))))
    canvas = np.ones((k * (h + 1), k * (w + 1)))
    for i, img in enumerate(x[: k * k]):
        r, c = divmod(i, k)
        canvas[r * (h + 1): r * (h + 1) + h, c * (w + 1): c * (w + 1) + w] = \
            (np.clip(img.reshape(h, w), -1, 1) + 1) / 2
    ax.imshow(canvas, cmap="gray_r", vmin=0, vmax=1)
    ax.axis("off")


def save_tokens(tokens: np.ndarray, out: str | Path, data: str, info: dict | None = None,
                title: str = "") -> tuple[Path, Path]:
    """Writes ``out`` (``.npz`` with ``tokens [n, L]`` and JSON ``info``) and beside it a PNG
    grid of the 8x8 digits (``data = "digits-tokens"``, level ``v`` shown at ``v / 8 - 1``) or a
    text file of the sequences, one a line (other token data)."""
    out = Path(out)
    if out.suffix != ".npz":
        out = out.with_suffix(".npz")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, tokens=tokens, info=np.array(json.dumps(info or {})))
    if data != "digits-tokens":
        txt = out.with_suffix(".txt")
        sep = "" if int(tokens.max(initial=0)) < 10 else " "
        txt.write_text("".join(sep.join(str(int(v)) for v in row) + "\n" for row in tokens))
        return out, txt
    png = out.with_suffix(".png")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    _image_grid(ax, np.asarray(tokens, np.float64) / 8.0 - 1.0, (8, 8))
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return out, png


def save_samples(x: np.ndarray, out: str | Path, dataset: Dataset, info: dict | None = None,
                 title: str = "") -> tuple[Path, Path]:
    """Writes ``out`` (``.npz`` with ``samples`` and JSON ``info``) and a PNG beside it."""
    out = Path(out)
    if out.suffix != ".npz":
        out = out.with_suffix(".npz")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, samples=x, info=np.array(json.dumps(info or {})))
    png = out.with_suffix(".png")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    draw_samples(ax, x, dataset, title)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return out, png


def samples_figure(panels: list[tuple[str, np.ndarray]], dataset: Dataset, path: Path,
                   title: str) -> None:
    """One row of sample panels ``(panel title, samples)`` under a figure title."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.7))
    for ax, (name, x) in zip(np.atleast_1d(axes), panels):
        draw_samples(ax, x, dataset, name)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def smooth(values: Any, window: int) -> np.ndarray:
    """Moving average over ``window`` points (shorter windows at the start)."""
    v = np.asarray(values, np.float64)
    c = np.cumsum(np.concatenate([[0.0], v]))
    i = np.arange(1, len(v) + 1)
    lo = np.maximum(0, i - window)
    return (c[i] - c[lo]) / (i - lo)


def plot_loss(history: list[dict], path: Path, title: str, ylabel: str = "loss") -> None:
    """The logged losses (light) and their moving average over a tenth of the run (bold)."""
    steps = [h["step"] for h in history]
    loss = [h["loss"] for h in history]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(steps, loss, color="tab:blue", alpha=0.3, lw=1, label="logged")
    window = max(1, len(loss) // 10)
    ax.plot(steps, smooth(loss, window), color="tab:blue", lw=2,
            label=f"moving average of {window}")
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _panels(results: dict[str, dict]) -> dict[str, list[str]]:
    """Family title -> solver names, in the order of ``results``."""
    panels: dict[str, list[str]] = {}
    for name, row in results.items():
        family = row.get("family", "other")
        panels.setdefault(FAMILY_TITLES.get(family, family), []).append(name)
    return panels


def _grid_of_axes(plt, n: int, width: float = 4.2, height: float = 3.4):
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False,
                             sharex=True, sharey=True)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat[:n]


def _log_axes(ax, xlabel: str | None, ylabel: str | None, xticks=()) -> None:
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    if xticks:
        ax.set_xticks(sorted(xticks))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="both", alpha=0.3)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)


def plot_bench(report: dict, path: Path) -> None:
    """Error against NFE on log-log axes, one panel per solver family."""
    plt = _pyplot()
    results = report["results"]
    panels = _panels(results)
    reference = results.get(_REFERENCE)
    if reference is not None and len(panels) > 1:
        panels.pop(FAMILY_TITLES["ddim"], None)  # DDIM is drawn in every panel instead
    fig, axes = _grid_of_axes(plt, len(panels))
    colours = plt.get_cmap("tab10").colors
    for i, (ax, (title, names)) in enumerate(zip(axes, panels.items())):
        if reference is not None and _REFERENCE not in names:
            ax.plot(reference["nfe"], reference["error"], color="0.55", ls="--", lw=1.5,
                    label="ddim (reference)")
        for j, name in enumerate(names):
            row = results[name]
            ax.plot(row["nfe"], row["error"], color=colours[j % 10], marker=_MARKERS[j % 11],
                    ms=5, lw=1.5, label=name)
        _log_axes(ax, "model evaluations (NFE)" if i >= len(axes) - 3 else None,
                  "RMS error" if i % 3 == 0 else None, report["nfe_budget"])
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle(f"jaxdist solvers on an 8-component Gaussian mixture ({report['schedule']} "
                 f"schedule, {report['grid']} grid): RMS error to the exact ODE solution",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_stochastic(report: dict, path: Path) -> None:
    """Frechet distance and weight TV against NFE (log-log), one line per sampler."""
    plt = _pyplot()
    colours = plt.get_cmap("tab10").colors
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for key, ax, label in (("frechet", axes[0], "Frechet distance"),
                           ("weight_tv", axes[1], "component-weight TV")):
        for j, (name, row) in enumerate(report["results"].items()):
            ax.plot(row["nfe"], np.maximum(row[key], 1e-6), color=colours[j % 10],
                    marker=_MARKERS[j % 11], ms=5, label=name)
        ax.axhline(max(report["exact_samples"][key], 1e-6), color="k", ls="--", lw=1,
                   label="exact samples (floor)")
        _log_axes(ax, "model evaluations (NFE)", label, report["nfe_budget"])
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"jaxdist stochastic samplers on a Gaussian mixture ({report['schedule']} "
                 "schedule)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
