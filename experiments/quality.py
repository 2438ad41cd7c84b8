"""Sample quality of every training objective on the built-in data sets, measured.

For each data set and objective a small MLP is trained with a fixed budget (same steps, batch,
width, EMA and seed for all objectives; Adam at the CLI's learning rate), then sampled with
DPM-Solver++(2M) at 10 and 20 NFE (consistency models: 1 and 2 consistency steps). Reported:
sliced Wasserstein-2 and unbiased MMD^2 against held-out data, next to the floor (a fresh
training draw of the same size against the same held-out data), and for digits the bits/dim of
held-out images under the probability-flow ODE (exact divergence; uniform dequantisation of the
17 grey levels, so an upper bound on the discrete NLL) where the model has one (not for
consistency models).
Writes ``experiments/out/quality[-DATA].{json,md,png}``.

    .venv/bin/python experiments/quality.py                       # 2-D sets, ~10 min on 2 cores
    .venv/bin/python experiments/quality.py --data digits --steps 4000 --hidden 256
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import jax
import numpy as np

from jaxdist.cli.plots import draw_samples
from jaxdist.cli.quality import quality
from jaxdist.cli.runs import restore_run, sample_run, train_run
from jaxdist.data import DIGIT_BINS_RANGE, DIGIT_LEVELS, digit_levels, get_dataset
from jaxdist.likelihood import bits_per_dim, bits_per_dim_from_log_prob, dequantise

OUT = Path(__file__).parent / "out"
OBJECTIVES = ("dsm", "edm", "fm", "ot-fm", "ict")


def digits_bits_per_dim(run: tuple, n: int, seed: int) -> float:
    """Mean bits/dim of ``n`` held-out digits: each level's dequantisation bin is centred on
    its stored value (``jaxdist.data.DIGIT_BINS_RANGE``)."""
    config, dataset, apply_fn, obj, state = run
    den = obj.denoiser(apply_fn, state.ema_params)
    # log-density at the schedule's t_min (noise 0.001-0.01, far below the bin width 0.125)
    bpd = jax.jit(lambda v, k: bits_per_dim(den, v, k, n_bins=DIGIT_LEVELS, t0=obj.schedule.t_min,
                                            data_range=DIGIT_BINS_RANGE))
    return float(np.mean(bpd(digit_levels(dataset.held_out(n)), jax.random.key(seed))))


def gaussian_bits_per_dim(dataset, n: int, seed: int) -> float:
    """The same bound for a full-covariance Gaussian fitted to 20000 training draws: the
    baseline a model must beat (uniform over the 17 levels would be log2(17) = 4.09)."""
    train = np.asarray(dataset.sample(jax.random.key(seed + 2), 20_000), np.float64)
    k_deq = jax.random.split(jax.random.key(seed))[0]  # the points digits_bits_per_dim uses
    z = dequantise(digit_levels(dataset.held_out(n)), k_deq, n_bins=DIGIT_LEVELS,
                   data_range=DIGIT_BINS_RANGE)
    log_p = jax.scipy.stats.multivariate_normal.logpdf(z, train.mean(0), np.cov(train.T))
    return float(np.mean(bits_per_dim_from_log_prob(log_p, dataset.dim, n_bins=DIGIT_LEVELS,
                                                    data_range=DIGIT_BINS_RANGE)))


def run(datasets, objectives, steps: int, num: int, seed: int, keep: bool,
        hidden: int = 128, bpd_num: int = 256) -> list[dict]:
    rows = []
    for data in datasets:
        dataset = get_dataset(data)
        n = min(num, dataset.held_out_size or num)
        floor = quality(np.asarray(dataset.sample(jax.random.key(seed + 1), n)),
                        dataset, n_ref=n, seed=seed, floor=False)["model"]
        for obj in objectives:
            ck = OUT / "runs" / f"{data}-{obj}"
            if not keep and ck.exists():
                shutil.rmtree(ck)
            tic = time.perf_counter()
            _, history = train_run(ck, data=data, objective=obj, steps=steps, progress=False,
                                   save_every=steps, hidden=hidden, depth=3, batch_size=256,
                                   ema_decay=0.995, seed=seed)  # lr: the CLI's default
            train_s = time.perf_counter() - tic if history else None  # None: a kept run
            restored = restore_run(ck)
            plans = [("consistency", 1), ("consistency", 2)] if obj == "ict" else \
                [("dpm++2m", 10), ("dpm++2m", 20)]
            bpd = None
            if dataset.image_shape is not None and obj != "ict":
                bpd = digits_bits_per_dim(restored, bpd_num, seed)
            for solver, nfe in plans:
                x, info = sample_run(restored, solver=solver, nfe=nfe, num=n, seed=seed)
                q = quality(x, dataset, n_ref=n, seed=seed, floor=False)["model"]
                rows.append({"data": data, "objective": obj, "solver": solver, "nfe": info["nfe"],
                             "swd": q["swd"], "mmd": q["mmd"], "floor_swd": floor["swd"],
                             "floor_mmd": floor["mmd"], "bits_per_dim": bpd,
                             "final_loss": history[-1]["loss"] if history else None,
                             "train_seconds": train_s, "samples": x[:1000].tolist()})
                print(f"{data:12s} {obj:6s} {solver:12s} NFE {info['nfe']:3d}  "
                      f"SWD {q['swd']:.4f} (floor {floor['swd']:.4f})  "
                      f"MMD^2 {q['mmd']:.2e} (floor {floor['mmd']:.2e})"
                      + (f"  bits/dim {bpd:.3f}" if bpd is not None else ""), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    with_bpd = any(r.get("bits_per_dim") is not None for r in rows)
    lines = ["| data | objective | sampler | NFE | sliced W2 | MMD^2 | floor SW2 | floor MMD^2 |"
             + (" bits/dim |" if with_bpd else ""),
             "|---|---|---|---:|---:|---:|---:|---:|" + ("---:|" if with_bpd else "")]
    for r in rows:
        bpd = r.get("bits_per_dim")
        lines.append(f"| {r['data']} | {r['objective']} | {r['solver']} | {r['nfe']} | "
                     f"{r['swd']:.4f} | {r['mmd']:.2e} | {r['floor_swd']:.4f} | "
                     f"{r['floor_mmd']:.2e} |"
                     + ((f" {bpd:.3f} |" if bpd is not None else " - |") if with_bpd else ""))
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = {}
    for r in rows:  # the larger budget of each (data, objective)
        best[(r["data"], r["objective"])] = r
    datas = sorted({d for d, _ in best})
    objs = [o for o in OBJECTIVES if any(o == ob for _, ob in best)]
    fig, axes = plt.subplots(len(datas), len(objs), figsize=(2.6 * len(objs), 2.6 * len(datas)),
                             squeeze=False)
    for i, d in enumerate(datas):
        for j, o in enumerate(objs):
            ax = axes[i][j]
            r = best.get((d, o))
            if r is not None:
                draw_samples(ax, np.asarray(r["samples"]), get_dataset(d),
                             f"{o}: SW2 {r['swd']:.3f}")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(d)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="two-moons,checkerboard,gmm")
    p.add_argument("--objectives", default=",".join(OBJECTIVES))
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--num", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hidden", type=int, default=128, help="MLP width")
    p.add_argument("--bpd-num", type=int, default=256, help="held-out digits for bits/dim")
    p.add_argument("--keep", action="store_true", help="resume existing runs instead of retraining")
    a = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    rows = run(a.data.split(","), a.objectives.split(","), a.steps, a.num, a.seed, a.keep,
               a.hidden, a.bpd_num)
    tag = "quality" if a.data == "two-moons,checkerboard,gmm" else "quality-" + a.data.replace(",", "-")
    (OUT / f"{tag}.json").write_text(json.dumps(
        {"steps": a.steps, "num": a.num, "seed": a.seed, "hidden": a.hidden,
         "rows": [{k: v for k, v in r.items() if k != "samples"} for r in rows]}, indent=2))
    md = table(rows)
    if "digits" in a.data.split(","):
        md += (f"\n\nBits/dim baselines on the same held-out digits: a full-covariance Gaussian "
               f"{gaussian_bits_per_dim(get_dataset('digits'), a.bpd_num, a.seed):.3f}, "
               f"uniform over the {DIGIT_LEVELS} levels {np.log2(DIGIT_LEVELS):.3f}.")
    (OUT / f"{tag}.md").write_text(md + "\n")
    plot(rows, OUT / f"{tag}.png")
    print("\n" + md)
    print(f"\nwrote {OUT / (tag + '.json')}, {OUT / (tag + '.md')}, {OUT / (tag + '.png')}")


if __name__ == "__main__":
    main()
