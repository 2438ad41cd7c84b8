"""Shared pieces of the command-line tests: tiny run settings and a runner of ``main``."""

from __future__ import annotations

from jaxdist.cli import main

#: the smallest model and batch the CLI trains (8 devices: the batch must be a multiple of 8)
TINY = ["--batch-size", "64", "--hidden", "16", "--depth", "1", "--quiet"]
TINY_SETTINGS = {"batch_size": 64, "hidden": 16, "depth": 1}


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``(exit status, stdout, stderr)`` of ``jaxdist ARGV`` run in this process."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def train_tiny(checkpoint_dir, steps: int = 20, save_every: int = 10, *extra: str) -> list[str]:
    """The argv of a tiny flow-matching run on two-moons."""
    return ["train", "--data", "two-moons", "--objective", "fm", "--steps", str(steps),
            "--save-every", str(save_every), "--checkpoint-dir", str(checkpoint_dir), *TINY,
            *extra]
