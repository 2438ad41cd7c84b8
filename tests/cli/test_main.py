"""The `jaxdist` front door (jaxdist.cli.main): help, version, and a start without JAX."""

import os
import subprocess
import sys

import jaxdist
from jaxdist.cli import COMMANDS, main

from .helpers import run_cli


def test_help_lists_commands(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    for name in COMMANDS:
        assert name in out
    assert main([]) == 0  # no command: the help


def test_version(capsys):
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == f"jaxdist {jaxdist.__version__}"


def test_help_and_usage_errors_do_not_start_jax():
    """`jaxdist --help` and a mistyped argument answer without importing JAX (4.4 s and 9 s
    before the package loaded lazily; about 0.05 s over Python's own start now)."""
    script = ("import sys\nfrom jaxdist.cli import main\n"
              "codes = [main(['--help']), main(['sample', '--nfe', 'x']),\n"
              "         main(['train', '--help'])]\n"
              "assert codes == [0, 2, 0], codes\n"
              "heavy = sorted(m for m in ('jax', 'numpy', 'orbax', 'flax') if m in sys.modules)\n"
              "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=os.getcwd()), timeout=60)
    assert proc.returncode == 0, proc.stderr
