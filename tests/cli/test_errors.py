"""Every user mistake is one line `error: ...` on stderr and a non-zero exit status (a fuzz of
the bad inputs found in issue 11, run through `jaxdist.cli.main`)."""

import os
import subprocess
import sys

import pytest

from .helpers import TINY, run_cli

RUN = "{run}"  # a trained run (the tiny_run fixture)
DIR = "{tmp}/new"  # a fresh folder
FILE = "{tmp}/a-file"  # an existing file

BAD = [
    # (argv, a part of the message, exit status)
    (["trian"], "did you mean 'train'?", 2),
    (["train", "--steps", "5"], "the following arguments are required: --checkpoint-dir", 2),
    (["train", "--checkpoint-dir", DIR, "--steps", "0"], "--steps: must be a positive integer", 2),
    (["train", "--checkpoint-dir", DIR, "--save-every", "0"], "--save-every: must be a positive", 2),
    (["train", "--checkpoint-dir", DIR, "--batch-size", "0"], "--batch-size: must be a positive", 2),
    (["train", "--checkpoint-dir", DIR, "--batch-size", "12", "--steps", "1"],
     "must be a multiple of the 8 devices", 1),
    (["train", "--checkpoint-dir", DIR, "--hidden", "0"], "--hidden: must be a positive", 2),
    (["train", "--checkpoint-dir", DIR, "--depth", "-1"], "--depth: must be a positive", 2),
    (["train", "--checkpoint-dir", DIR, "--lr", "nan"], "--lr: must be a positive finite", 2),
    (["train", "--checkpoint-dir", DIR, "--lr", "inf"], "--lr: must be a positive finite", 2),
    (["train", "--checkpoint-dir", DIR, "--lr", "0"], "--lr: must be a positive finite", 2),
    (["train", "--checkpoint-dir", DIR, "--lr=-1e-3"], "--lr: must be a positive finite", 2),
    (["train", "--checkpoint-dir", DIR, "--lr", "-1e-3"], "written with '=', e.g. --lr=-1e-3", 2),
    (["train", "--checkpoint-dir", DIR, "--lr", "fast"], "--lr: must be a positive finite", 2),
    (["train", "--checkpoint-dir", DIR, "--ema-decay", "1"], "--ema-decay: must be a number in", 2),
    (["train", "--checkpoint-dir", DIR, "--grad-clip", "0"], "--grad-clip: must be a positive", 2),
    (["train", "--checkpoint-dir", DIR, "--seed", "-3"], "--seed: must be an integer >= 0", 2),
    (["train", "--checkpoint-dir", DIR, "--data", "moons"], "did you mean 'two-moons'?", 2),
    (["train", "--checkpoint-dir", DIR, "--objective", "fmm"], "did you mean 'fm'?", 2),
    (["train", "--checkpoint-dir", DIR, "--learning-rate", "1"], "unrecognized arguments", 2),
    (["train", "--checkpoint-dir", FILE + "/run", "--steps", "1", *TINY], "which is a file", 1),
    (["train", "--checkpoint-dir", FILE, "--steps", "1", *TINY], "is a file, not a folder", 1),
    (["sample", "--checkpoint-dir", RUN, "--nfe", "0"], "--nfe: must be a positive integer", 2),
    (["sample", "--checkpoint-dir", RUN, "--num", "0"], "--num: must be a positive integer", 2),
    (["sample", "--checkpoint-dir", RUN, "--num", "-5"], "--num: must be a positive integer", 2),
    (["sample", "--checkpoint-dir", RUN, "--solver", "dpmpp2mm"], "did you mean 'dpm++2m'", 2),
    (["sample", "--checkpoint-dir", RUN, "--grid", "karas"], "did you mean 'karras'?", 2),
    (["sample", "--checkpoint-dir", RUN, "--step", "7"], "no checkpoint at step 7", 1),
    (["sample", "--checkpoint-dir", RUN, "--num", "8", "--out", FILE + "/x.npz"], "a-file", 1),
    (["sample", "--checkpoint-dir", DIR], "no checkpoint folder", 1),
    (["sample", "--checkpoint-dir", RUN, "--solver", "consistency"], "needs an ict run", 2),
    (["bench", "--nfe", "0"], "--nfe: must be a positive integer", 2),
    (["bench", "--nfe", ","], "--nfe: must be comma-separated positive integers", 2),
    (["bench", "--nfe", "5,x"], "--nfe: must be a positive integer, got 'x'", 2),
    (["bench", "--samples", "1"], "--samples: must be at least 2", 2),
    (["bench", "--solvers", ","], "--solvers: must be comma-separated names", 2),
    (["bench", "--schedule", "ve"], "invalid choice: 've'", 2),
    (["bench", "--out", DIR, "--solvers", "nope"], "unknown solver 'nope'", 2),
    (["bench", "--out", DIR, "--schedule", "edm", "--grid", "linspace", "--solvers", "ddim",
      "--nfe", "4"], "use --grid karras", 2),
    (["demo", "--data", "digits"], "invalid choice: 'digits'", 2),
    (["distill", "--teacher", DIR, "--method", "dmd", "--checkpoint-dir", "{tmp}/s"],
     "is not a folder of a jaxdist train run", 1),
    (["distill", "--teacher", RUN, "--method", "dmdd", "--checkpoint-dir", "{tmp}/s"],
     "did you mean 'dmd'?", 2),
    (["distill", "--teacher", RUN, "--method", "dmd", "--n-critic", "0", "--checkpoint-dir",
      "{tmp}/s"], "--n-critic: must be a positive integer", 2),
    (["train", "--checkpoint-dir", DIR, "--objective", "meanflow", "--skip-nonfinite"],
     "--skip-nonfinite does not apply", 2),
    # discrete diffusion
    (["train", "--checkpoint-dir", DIR, "--objective", "mdlm", "--data", "two-moons"],
     "do not go together", 2),
    (["train", "--checkpoint-dir", DIR, "--objective", "fm", "--data", "markov"],
     "do not go together", 2),
    (["train", "--checkpoint-dir", DIR, "--objective", "radd", "--prediction", "eps"],
     "--prediction does not apply to --objective radd", 2),
    (["sample", "--checkpoint-dir", RUN, "--sampler", "ancestral"],
     "--sampler applies to discrete-diffusion runs only", 2),
]


@pytest.mark.parametrize("argv,message,status", BAD, ids=[" ".join(a[:4]) for a, _, _ in BAD])
def test_bad_input_is_one_line_error(argv, message, status, tiny_run, tmp_path, capsys):
    (tmp_path / "a-file").write_text("not a folder")
    argv = [a.format(run=tiny_run, tmp=tmp_path) for a in argv]
    code, _, err = run_cli(capsys, *argv)
    assert code == status, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert not (tmp_path / "new").exists()  # a mistake writes nothing


_SEVERAL = """
import sys
from jaxdist.cli import main
codes = [main(a) for a in (["sample", "--checkpoint-dir", sys.argv[1] + "/no/run"],
                           ["train", "--checkpoint-dir", sys.argv[1] + "/f/run", "--steps", "1"])]
sys.exit(0 if codes == [1, 1] else 3)
"""


def test_no_traceback_at_interpreter_shutdown(tmp_path):
    """Orbax's background threads printed tracebacks after the one-line error when the process
    ended right after it; a separate process shows what a user sees."""
    (tmp_path / "f").write_text("")
    env = dict(os.environ, PYTHONPATH=os.getcwd(),
               XLA_FLAGS="--xla_force_host_platform_device_count=1")
    proc = subprocess.run([sys.executable, "-c", _SEVERAL, str(tmp_path)], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 2 and all(line.startswith("error: ") for line in lines), proc.stderr
    assert not (tmp_path / "no").exists()
