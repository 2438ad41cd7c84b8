"""Discrete diffusion, measured: samplers on the exact oracle, objectives on held-out data.

1. Oracle (vocab 3, length 4, the exact conditionals of ``jd.testing.SequenceDistribution``):
   exact total variation of each grid sampler's output law against ``p`` per step count
   (masked process with the cosine schedule, uniform process with the log-linear one), the
   first-hitting sampler's TV from 20000 draws (its Monte Carlo floor is listed beside it),
   and the NFE of a time-agnostic (cached) ancestral run.
2. Trained (a small bidirectional transformer, Adam): per objective (MDLM, RADD, SEDD on the
   masked process; SEDD on the uniform process) the held-out NELBO in bits per token against the
   exact entropy of the built-in Markov chain (vocab 8, length 32); the samples' quality per
   sampler and NFE as the mean true ``-log p(x)`` of the draws (bits per token; the entropy is
   the ideal) and the fraction of distinct sequences. With ``--digits``: RADD on the digits as
   17-level tokens, bits per token on the 297 held-out images (the continuous models' bits/dim
   are 2.57-2.72).

    python experiments/discrete.py [--steps 1500] [--digits] [--out experiments/out/discrete.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

import jaxdist as jd
from jaxdist.testing.discrete import exact_sampler_law
from jaxdist.train import fit, init_train_state, make_train_step

D = jd.discrete


def oracle_table(bar) -> list[dict]:
    jax.config.update("jax_enable_x64", True)
    dist = jd.testing.SequenceDistribution.random(0)
    rows = []
    for label, process in (("masked/cosine", D.MaskedProcess(3, schedule="cosine")),
                           ("uniform/loglinear", D.UniformProcess(3))):
        fn = dist.conditionals(process)
        for sampler in (D.Ancestral(), D.TauLeaping(), D.Analytic()):
            for n in (4, 8, 16, 32, 64):
                law, left = exact_sampler_law(dist, sampler, process, fn, np.linspace(1, 0, n + 1))
                rows.append({"process": label, "sampler": sampler.name, "nfe": n,
                             "tv": 0.5 * (np.abs(law - dist.probs).sum() + left)})
                bar.update()
        if process.absorbing:
            out = D.sample(D.FirstHitting(), process, fn, jax.random.key(0), (20000, 4))
            exact = dist.sample(jax.random.key(1), 20000)
            rows.append({"process": label, "sampler": "first_hitting", "nfe": int(out.nfe),
                         "tv": dist.tv(out.tokens), "mc_floor": dist.tv(exact)})
            cached = D.sample(D.Ancestral(), process, fn, jax.random.key(2), (1, 4), n_steps=64,
                              time_agnostic=True)
            rows.append({"process": label, "sampler": "ancestral (cached, time-agnostic)",
                         "nfe": int(cached.nfe), "steps": 64, "tv": None})
            bar.update()
    jax.config.update("jax_enable_x64", False)
    return rows


def train(objective: str, process, data, length: int, steps: int, seed: int = 0, *,
          dim: int = 64, depth: int = 2, batch: int = 128, lr: float = 2e-3):
    n_out = process.n_states if objective == "sedd" else process.vocab_size
    model = jd.models.DiscreteTransformer(process.n_states, n_out, length, dim=dim, depth=depth,
                                          time_conditioned=objective != "radd",
                                          rngs=nnx.Rngs(seed))
    apply_fn, params = jd.models.as_apply_fn(model)
    loss = D.make_discrete_loss(objective, apply_fn, process)
    tx = optax.adamw(optax.warmup_cosine_decay_schedule(0.0, lr, min(100, steps // 10),
                                                          steps, lr / 10))
    state = init_train_state(params, tx, jax.random.key(seed))
    step = make_train_step(loss, tx, ema_decay=0.99)
    tic = time.perf_counter()
    state, history = fit(state, step, lambda i: {"tokens": data(jax.random.fold_in(
        jax.random.key(seed + 1), i), batch)}, steps, log_every=max(steps // 10, 1),
        progress=False)
    params = state.ema_params
    fn = jax.jit(lambda x, t: apply_fn(params, x, t))
    return fn, history, time.perf_counter() - tic


def heldout_bits(process, fn, objective, tokens, n_samples=16) -> tuple[float, float]:
    pred = "log_score" if objective == "sedd" else "logits"
    run = jax.jit(lambda x, k: D.nelbo(process, fn, x, k, n_samples, objective=objective,
                                       prediction=pred))
    nats, ses = [], []
    for i in range(0, tokens.shape[0], 256):
        r = run(jnp.asarray(tokens[i:i + 256]), jax.random.key(i))
        nats.append(np.asarray(r.nats))
        ses.append(np.asarray(r.stderr))
    nats, ses = np.concatenate(nats), np.concatenate(ses)
    scale = tokens.shape[1] * math.log(2.0)
    se = math.sqrt(np.mean(ses ** 2) / nats.size + nats.var() / nats.size)
    return float(nats.mean() / scale), float(se / scale)


def sample_quality(process, fn, chain, sampler, n_steps, objective, n=500):
    pred = "log_score" if objective == "sedd" else "logits"
    kw = {} if isinstance(sampler, D.FirstHitting) else {"n_steps": n_steps}
    out = jax.jit(lambda k: D.sample(sampler, process, fn, k, (n, chain.length), prediction=pred,
                                     time_agnostic=objective == "radd", **kw))(jax.random.key(7))
    tokens = np.asarray(out.tokens)
    if tokens.max() >= chain.vocab_size:
        return {"nfe": int(out.nfe), "nll_bits_per_token": float("nan"), "distinct": 0.0,
                "leftover_masks": float((tokens >= chain.vocab_size).mean())}
    nll = -chain.log_prob(tokens) / (chain.length * math.log(2.0))
    return {"nfe": int(out.nfe), "nll_bits_per_token": float(nll.mean()),
            "distinct": len({tuple(r) for r in tokens}) / n}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--digits", action="store_true")
    parser.add_argument("--digits-steps", type=int, default=1500)
    parser.add_argument("--out", default="experiments/out/discrete.json")
    parser.add_argument("--only", default=None,
                        help="rerun one Markov run, e.g. 'sedd/masked', into the existing --out")
    args = parser.parse_args()
    results = {}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    runs = [("mdlm", "masked", D.MaskedProcess(8, schedule="linear")),
            ("radd", "masked", D.MaskedProcess(8, schedule="linear")),
            ("sedd", "masked", D.MaskedProcess(8, schedule="loglinear")),
            ("sedd", "uniform", D.UniformProcess(8))]
    chain = D.markov_chain()
    held = np.asarray(chain.sample(jax.random.key(2**20 + 11), 1024))
    if args.only:
        with open(args.out) as f:
            results = json.load(f)
        runs = [r for r in runs if f"{r[0]}/{r[1]}" == args.only]
        results["markov"]["runs"] = [r for r in results["markov"]["runs"]
                                     if f"{r['objective']}/{r['process']}" != args.only]
        args.digits = False
    bar = tqdm(total=32 + len(runs) + int(args.digits), desc="discrete", dynamic_ncols=True)
    if not args.only:
        results["oracle"] = oracle_table(bar)
        results["markov"] = {"exact_bits_per_token": chain.bits_per_token(), "runs": []}
    for objective, kind, process in runs:
        fn, history, seconds = train(objective, process, chain.sample, chain.length, args.steps)
        bits, se = heldout_bits(process, fn, objective, held)
        row = {"objective": objective, "process": kind, "steps": args.steps,
               "train_seconds": seconds, "heldout_bits_per_token": bits, "stderr": se,
               "final_loss_bits": history[-1]["loss"] / math.log(2.0), "samples": []}
        if objective == "sedd":            # a log-score network: rate-based samplers only
            samplers = [(D.TauLeaping(), 8), (D.TauLeaping(), 32), (D.Analytic(), 32)]
        else:
            samplers = [(D.Ancestral(), 8), (D.Ancestral(), 32), (D.TauLeaping(), 32),
                        (D.FirstHitting(), None)]
        for sampler, n in samplers:
            q = sample_quality(process, fn, chain, sampler, n, objective)
            row["samples"].append({"sampler": sampler.name, "steps": n, **q})
        results["markov"]["runs"].append(row)
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
        bar.update()
    with open(args.out, "w") as f:   # partial results first (the digits run is the longest)
        json.dump(results, f, indent=1)
    if args.digits:
        data = jd.data.digit_tokens()
        process = D.MaskedProcess(data.vocab_size)
        fn, history, seconds = train("radd", process, data.sample, 64, args.digits_steps)
        bits, se = heldout_bits(process, fn, "radd", data.held_out(297))
        results["digits"] = {"objective": "radd", "steps": args.digits_steps,
                             "train_seconds": seconds, "heldout_bits_per_token": bits,
                             "stderr": se}
        bar.update()
    bar.close()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print_tables(results)
    print(f"wrote {args.out}")


def print_tables(results):
    print("\nOracle (vocab 3, length 4): total variation to p")
    print(f"{'process':<20}{'sampler':<36}{'NFE':>5}{'TV':>10}")
    for r in results["oracle"]:
        tv = "-" if r.get("tv") is None else f"{r['tv']:.4f}"
        extra = f"  (MC floor {r['mc_floor']:.4f})" if "mc_floor" in r else ""
        extra += f"  ({r['steps']} steps)" if "steps" in r else ""
        print(f"{r['process']:<20}{r['sampler']:<36}{r['nfe']:>5}{tv:>10}{extra}")
    m = results["markov"]
    print(f"\nMarkov chain (vocab 8, length 32), exact entropy {m['exact_bits_per_token']:.4f} "
          "bits/token")
    print(f"{'objective':<8}{'process':<9}{'held-out NELBO':>16}{'+-':>8}  sampler (NFE): "
          "sample NLL bits/token, distinct")
    for r in m["runs"]:
        samples = "; ".join(f"{s['sampler']} ({s['nfe']}): {s['nll_bits_per_token']:.3f}, "
                            f"{s['distinct']:.2f}" for s in r["samples"])
        print(f"{r['objective']:<8}{r['process']:<9}{r['heldout_bits_per_token']:>16.4f}"
              f"{r['stderr']:>8.4f}  {samples}")
    if "digits" in results:
        d = results["digits"]
        print(f"\nDigits as 17-level tokens, RADD, {d['steps']} steps: "
              f"{d['heldout_bits_per_token']:.3f} +- {d['stderr']:.3f} bits/token (held-out)")


if __name__ == "__main__":
    main()
