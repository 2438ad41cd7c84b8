"""Fixtures of the command-line tests: one tiny trained run shared by the sampling tests."""

import pytest

from jaxdist.cli.runs import train_run

from .helpers import TINY_SETTINGS


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A flow-matching run on two-moons with checkpoints at steps 10 and 20 (read it only)."""
    path = tmp_path_factory.mktemp("tiny-run")
    train_run(path, data="two-moons", objective="fm", steps=20, save_every=10, progress=False,
              seed=3, **TINY_SETTINGS)
    return path
