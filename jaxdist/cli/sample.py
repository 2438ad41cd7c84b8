"""``jaxdist sample``: sample a trained checkpoint with any solver and grid, write ``.npz`` and
``.png`` and print the quality (implementation: :func:`jaxdist.cli.runs.sample_checkpoint`); a
discrete-diffusion run with ``--sampler`` (:func:`jaxdist.cli.discrete_runs.sample_discrete`)."""

from __future__ import annotations

import argparse

from .options import nonnegative_float, nonnegative_int, positive_int
from .settings import DISCRETE_SAMPLERS
from .time_grids import GRIDS

NAME = "sample"
HELP = "sample a trained checkpoint with any solver"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME, help=HELP,
        description="Restores a run (its newest checkpoint, EMA parameters) and samples it "
                    "(a distilled or few-step student with its own sampler in --nfe steps); "
                    "writes FILE.npz and FILE.png (scatter for 2-D data, image grid for digits) "
                    "and prints sliced W2 and MMD^2 against held-out data next to the data's "
                    "floor. Example, DPM++ 2M Karras: --solver dpm++2m --grid karras. A "
                    "discrete-diffusion run samples with --sampler (--nfe: the grid samplers' "
                    "steps) and writes FILE.npz (tokens) with FILE.png (digits) or FILE.txt "
                    "(sequences), and prints the network calls made and the held-out bits per "
                    "token.",
        epilog="grids: " + "; ".join(f"{k}: {v}" for k, v in GRIDS.items()))
    p.add_argument("--checkpoint-dir", required=True,
                   help="folder of a `jaxdist train` or `jaxdist distill` run")
    p.add_argument("--solver", default=None,
                   help="a name from `jaxdist solvers`, or 'consistency' for ict runs "
                        "(default: dpm++2m; few-step students always use their own sampler)")
    p.add_argument("--sampler", default=None,
                   help="discrete runs: " + ", ".join(DISCRETE_SAMPLERS) +
                        " (default: first-hitting; tau-leaping for sedd runs)")
    p.add_argument("--gamma", type=nonnegative_float, default=None,
                   help="discrete runs, --sampler entropy-bounded: entropy bound in nats per "
                        "network call (default: 0.1)")
    p.add_argument("--grid", choices=list(GRIDS), default="default",
                   help="time grid (default: the schedule's usual one; see below)")
    p.add_argument("--nfe", type=positive_int, default=None,
                   help="model evaluations at most (default: 10; a student's own step count)")
    p.add_argument("--num", type=positive_int, default=None,
                   help="number of samples (default: 1000; 64 for discrete runs)")
    p.add_argument("--n", type=positive_int, default=None, help="the same as --num")
    p.add_argument("--step", type=nonnegative_int, default=None,
                   help="the checkpoint step to sample (default: the newest)")
    p.add_argument("--out", default="samples.npz", help="output .npz (PNG written beside it)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="random seed (default: 0)")
    p.add_argument("--no-ema", action="store_true", help="use the raw, not the EMA, parameters")
    return p


def run(args: argparse.Namespace) -> int:
    from .options import CLIError, solver_by_name
    from .plots import save_samples
    from .quality import quality
    from .runs import restore_run, sample_run

    if args.n is not None:
        if args.num is not None and args.num != args.n:
            raise CLIError(f"--n {args.n} and --num {args.num} disagree; pass one of them.")
        args.num = args.n
    kind = _kind(args.checkpoint_dir)
    if kind == "discrete":
        return _sample_discrete(args)
    for flag, given in (("--sampler", args.sampler is not None),
                        ("--gamma", args.gamma is not None)):
        if given:
            raise CLIError(f"{flag} applies to discrete-diffusion runs only; "
                           f"{args.checkpoint_dir} is a continuous run: use --solver.")
    args.num = args.num or 1000
    if args.solver not in (None, "consistency"):
        solver_by_name(args.solver)  # a mistyped name fails before the checkpoint is read
    if kind in ("distill", "fewstep"):
        x, info, dataset, solver, grid = _sample_student(args)
        what = f"{info['config']['method']} student"
    else:
        solver = args.solver or "dpm++2m"
        run_ = restore_run(args.checkpoint_dir, args.step)
        x, info = sample_run(run_, solver=solver, nfe=args.nfe or 10, num=args.num, seed=args.seed,
                             use_ema=not args.no_ema, grid=args.grid)
        dataset, what = run_.dataset, info["config"]["objective"]
        grid = "" if args.grid == "default" or solver == "consistency" else f", {args.grid} grid"
    npz, png = save_samples(x, args.out, dataset, info,
                            title=f"{what} on {dataset.name}, step {info['step']}: "
                                  f"{solver}{grid}, NFE {info['nfe']}")
    head = f"{len(x)} samples from step {info['step']} with {solver}{grid} (NFE {info['nfe']})"
    if len(x) < 2:
        print(f"{head} (quality metrics need at least 2 samples)")
    else:
        q = quality(x, dataset, seed=args.seed)
        print(f"{head}: sliced W2 {q['model']['swd']:.4f} (data floor {q['floor']['swd']:.4f}), "
              f"MMD^2 {q['model']['mmd']:.2e} (floor {q['floor']['mmd']:.2e})")
    print(f"wrote {npz} and {png}")
    return 0


def _kind(checkpoint_dir: str) -> str | None:
    """The run's ``kind``: ``"distill"``, ``"fewstep"``, ``"discrete"`` or ``None`` (a
    continuous ``jaxdist train`` run)."""
    from ..checkpoint import Checkpointer

    with Checkpointer(checkpoint_dir, read_only=True) as ckpt:
        return ckpt.restore_config().get("kind")


def _sample_discrete(args: argparse.Namespace) -> int:
    """A discrete run: ``--sampler`` (``--solver``/``--grid`` do not apply); writes the tokens
    and prints the NFE used and the held-out NELBO (and, for the Markov chain, the samples' true
    negative log-likelihood) in bits per token."""
    import numpy as np

    from ..checkpoint import Checkpointer
    from .discrete_runs import check_sampler, heldout_bits, restore_discrete, sample_discrete
    from .options import CLIError
    from .plots import save_tokens

    for flag, given in (("--solver", args.solver is not None), ("--grid", args.grid != "default")):
        if given:
            raise CLIError(f"{flag} does not apply to {args.checkpoint_dir}: a discrete-diffusion "
                           "run samples with --sampler (" + ", ".join(DISCRETE_SAMPLERS) + ").")
    with Checkpointer(args.checkpoint_dir, read_only=True) as ckpt:
        config = ckpt.restore_config(args.step)
    sampler = args.sampler or ("tau-leaping" if config["objective"].startswith("sedd")
                               else "first-hitting")
    check_sampler(config, sampler)  # before the weights are read
    run_ = restore_discrete(args.checkpoint_dir, args.step)
    tokens, info = sample_discrete(run_, sampler=sampler, nfe=args.nfe, num=args.num or 64,
                                   seed=args.seed, use_ema=not args.no_ema, gamma=args.gamma)
    bits, se = heldout_bits(run_, use_ema=not args.no_ema)
    info.update(heldout_bits_per_token=bits, heldout_stderr=se)
    steps = "" if info["steps"] is None else f", {info['steps']} steps"
    head = (f"{len(tokens)} sequences from step {info['step']} of the {config['objective']} run "
            f"with {sampler}{steps} (NFE {info['nfe']})")
    exact = run_.dataset.entropy_bits_per_token
    line = f"{head}; held-out NELBO {bits:.3f} +- {se:.3f} bits/token"
    if exact is not None:
        from ..discrete import markov_chain

        nll = -markov_chain().log_prob(tokens) / (tokens.shape[1] * np.log(2.0))
        info["sample_nll_bits_per_token"] = float(nll.mean())
        line += f" (exact entropy {exact:.3f}); samples' true NLL {nll.mean():.3f} bits/token"
    print(line)
    npz, other = save_tokens(tokens, args.out, config["data"], info,
                             title=f"{config['objective']} on {config['data']}, step "
                                   f"{info['step']}: {sampler}{steps}, NFE {info['nfe']}")
    print(f"wrote {npz} and {other}")
    return 0


def _sample_student(args: argparse.Namespace):
    """Samples a student with its own sampler; ``--solver``/``--grid`` do not apply."""
    from ..data import get_dataset
    from .distill_runs import sample_student
    from .options import CLIError

    for flag, given in (("--solver", args.solver is not None), ("--grid", args.grid != "default")):
        if given:
            raise CLIError(f"{flag} does not apply to {args.checkpoint_dir}: a few-step student "
                           "samples with its own sampler; drop it and set the steps with --nfe.")
    x, info = sample_student(args.checkpoint_dir, nfe=args.nfe, num=args.num, seed=args.seed,
                             use_ema=not args.no_ema, step=args.step)
    return x, info, get_dataset(info["config"]["data"]), info["config"]["method"], ""
