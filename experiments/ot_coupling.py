"""Exact minibatch OT (optax Hungarian) vs entropic OT (ott-jax Sinkhorn) at batch 256.

For noise ``eps ~ N(0, I)`` and data ``x`` (8-Gaussians ring in 2-D, and a 64-D Gaussian mixture
like the digits), we measure per coupling: wall time per solve (jitted, after compilation, median
of ``--repeats``), the mean squared transport cost of the pairs actually used for training, and
whether the coupling is a permutation (every data point paired with exactly one noise vector).
Sinkhorn's plan ``P`` is turned into pairs the two ways people use: sampling ``n`` pairs from ``P``
with replacement (torchcfm / ott ``sample_joint``) and taking each row's argmax.

    python experiments/ot_coupling.py [--batch 256] [--repeats 5]

ott-jax is an experiment-only dependency (``pip install ott-jax``).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxdist.objectives.ot import ot_permutation, squared_distances, transport_cost


def eight_gaussians(key, n):
    k1, k2 = jax.random.split(key)
    angles = jax.random.randint(k1, (n,), 0, 8) * (jnp.pi / 4)
    centres = 2.0 * jnp.stack([jnp.cos(angles), jnp.sin(angles)], 1)
    return centres + 0.1 * jax.random.normal(k2, (n, 2))


def mixture_64d(key, n):
    k1, k2, k3 = jax.random.split(key, 3)
    means = jax.random.normal(jax.random.key(123), (10, 64))
    comp = jax.random.randint(k1, (n,), 0, 10)
    return means[comp] + 0.5 * jax.random.normal(k2, (n, 64))


def timed(fn, *args, repeats):
    jax.block_until_ready(fn(*args))  # compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", type=int, default=3, help="independent batches averaged")
    args = parser.parse_args()
    from ott.geometry import pointcloud
    from ott.solvers import linear

    hungarian = jax.jit(ot_permutation)

    def sinkhorn_fn(rel_eps):
        @jax.jit
        def solve(x, y):
            geom = pointcloud.PointCloud(x, y, relative_epsilon="mean", epsilon=rel_eps)
            out = linear.solve(geom, threshold=1e-3, max_iterations=2000)
            return out.matrix, out.converged, out.n_iters
        return solve

    rows = []
    for data_name, data_fn in [("8-gaussians 2-D", eight_gaussians), ("mixture 64-D", mixture_64d)]:
        stats: dict[str, list] = {}
        for b in range(args.batches):
            kx, ke, ks = jax.random.split(jax.random.key(b), 3)
            x = data_fn(kx, args.batch)
            eps = jax.random.normal(ke, x.shape)
            c = np.asarray(squared_distances(x, eps))
            stats.setdefault("independent", []).append((0.0, float(transport_cost(x, eps)), True, ""))
            t = timed(hungarian, x, eps, repeats=args.repeats)
            perm = np.asarray(hungarian(x, eps))
            stats.setdefault("exact (optax Hungarian)", []).append(
                (t, float(c[np.arange(len(perm)), perm].mean()),
                 len(set(perm.tolist())) == len(perm), ""))
            for rel_eps in (0.05, 0.01, 0.002):
                solve = sinkhorn_fn(rel_eps)
                t = timed(solve, x, eps, repeats=args.repeats)
                p, conv, iters = solve(x, eps)
                p = np.asarray(p, np.float64)
                n = p.shape[0]
                plan_cost = float((p * c).sum())
                flat = p.ravel() / p.sum()
                draws = np.asarray(jax.random.choice(ks, n * n, (n,), p=jnp.asarray(flat)))
                i, j = draws // n, draws % n
                sampled_cost = float(c[i, j].mean())
                distinct = len(set(i.tolist()))
                amax = p.argmax(1)
                is_perm = len(set(amax.tolist())) == n
                note = (f"converged={bool(conv)}, iters={int(iters)}, sampled pairs cover "
                        f"{distinct}/{n} data points, argmax rows a permutation: {is_perm}")
                stats.setdefault(f"Sinkhorn eps={rel_eps}*mean(C), <P,C>", []).append(
                    (t, plan_cost, False, note))
                stats.setdefault(f"Sinkhorn eps={rel_eps}*mean(C), sampled pairs", []).append(
                    (t, sampled_cost, distinct == n, ""))
        for name, vals in stats.items():
            t = np.mean([v[0] for v in vals]) * 1e3
            cost = np.mean([v[1] for v in vals])
            perm_ok = all(v[2] for v in vals)
            rows.append((data_name, name, t, cost, perm_ok, vals[-1][3]))
    print(f"batch {args.batch}, {jax.device_count()} x {jax.devices()[0].platform}, "
          f"median of {args.repeats} timed solves, mean over {args.batches} batches\n")
    print("| data | coupling | time / solve (ms) | mean pair cost | permutation | notes |")
    print("|---|---|---|---|---|---|")
    for data_name, name, t, cost, perm_ok, note in rows:
        print(f"| {data_name} | {name} | {t:.1f} | {cost:.4f} | {'yes' if perm_ok else 'no'} | "
              f"{note} |")


if __name__ == "__main__":
    main()
