"""`jaxdist train` / `jaxdist sample` of discrete-diffusion runs (jaxdist.cli.discrete_runs):
bitwise resume, the files written, the NFE and bits reported, and one-line errors."""

import jax
import numpy as np
import pytest

from jaxdist.checkpoint import Checkpointer
from jaxdist.cli.discrete_runs import check_sampler, restore_discrete, train_discrete_run
from jaxdist.cli.options import CLIError

from .helpers import run_cli

#: a tiny transformer (width 16, one block) on the Markov chain (vocabulary 8, length 32)
SMALL = {"batch_size": 16, "hidden": 16, "depth": 1}
SMALL_ARGS = ["--batch-size", "16", "--hidden", "16", "--depth", "1", "--quiet"]


@pytest.fixture(scope="module")
def mdlm_run(tmp_path_factory):
    """An MDLM run of 4 steps (checkpoints at 2 and 4) trained through the command line."""
    path = tmp_path_factory.mktemp("mdlm-run")
    code = run_cli_plain("train", "--objective", "mdlm", "--data", "markov", "--steps", "4",
                         "--save-every", "2", "--checkpoint-dir", path, *SMALL_ARGS)
    assert code == 0
    return path


def run_cli_plain(*argv) -> int:
    from jaxdist.cli import main

    return main([str(a) for a in argv])


def test_resume_is_bitwise_and_the_config_rebuilds_the_run(mdlm_run, tmp_path):
    """4 steps at once equal 2 steps, then resumed to 4, bit for bit (state and EMA)."""
    half = tmp_path / "half"
    train_discrete_run(half, data="markov", objective="mdlm", steps=2, save_every=2, progress=False,
                       **SMALL)
    train_discrete_run(half, data="markov", objective="mdlm", steps=4, save_every=2, progress=False,
                       **SMALL)
    whole, resumed = restore_discrete(mdlm_run), restore_discrete(half)
    assert Checkpointer(half, read_only=True).all_steps() == [2, 4]
    assert int(whole.state.step) == int(resumed.state.step) == 4
    for a, b in zip(jax.tree.leaves(whole.state), jax.tree.leaves(resumed.state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    first = restore_discrete(mdlm_run, step=2).state.params
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(first),
                                                         jax.tree.leaves(whole.state.params)))
    cfg = whole.config
    assert (cfg["kind"], cfg["objective"], cfg["data"], cfg["vocab_size"], cfg["length"]) == \
        ("discrete", "mdlm", "markov", 8, 32)
    assert whole.process.mask_id == 8 and whole.prediction == "logits"


def test_sample_writes_tokens_and_reports_nfe_and_bits(mdlm_run, tmp_path, capsys):
    dest = tmp_path / "s.npz"
    code, out, err = run_cli(capsys, "sample", "--checkpoint-dir", mdlm_run, "--sampler",
                             "ancestral", "--nfe", "4", "--n", "8", "--out", dest)
    assert code == 0, err
    tokens = np.load(dest)["tokens"]
    assert tokens.shape == (8, 32) and tokens.min() >= 0 and tokens.max() < 8
    lines = dest.with_suffix(".txt").read_text().splitlines()
    assert lines == ["".join(str(v) for v in row) for row in tokens]
    assert "with ancestral, 4 steps (NFE 4)" in out and "held-out NELBO" in out
    bits = float(out.split("held-out NELBO ")[1].split()[0])
    assert 1.6 < bits < 6.0  # above the exact entropy 1.603; untrained: about 3 = log2(8)


@pytest.mark.parametrize("argv,message", [
    (["--solver", "ddim"], "--solver does not apply to"),
    (["--sampler", "first-hiting"], "did you mean 'first-hitting'?"),
    (["--sampler", "ancestral", "--gamma", "0.5"], "--gamma applies to --sampler entropy-bounded"),
    (["--sampler", "first-hitting", "--nfe", "8"], "--nfe does not apply to --sampler first-hit"),
], ids=["solver", "unknown-sampler", "gamma", "nfe"])
def test_options_that_do_not_apply_are_one_line_errors(mdlm_run, argv, message, tmp_path, capsys):
    code, _, err = run_cli(capsys, "sample", "--checkpoint-dir", mdlm_run, *argv, "--out",
                           tmp_path / "x.npz")
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert not list(tmp_path.iterdir())


def test_samplers_the_process_or_network_cannot_use_are_refused():
    assert check_sampler({"objective": "sedd-uniform"}, "tau-leaping") == "tau_leaping"
    assert check_sampler({"objective": "radd"}, "entropy-bounded") == "entropy_bounded"
    for objective in ("sedd", "sedd-uniform"):
        with pytest.raises(CLIError, match="returns log scores: use --sampler tau-leaping"):
            check_sampler({"objective": objective}, "first-hitting")


def test_token_data_names_are_the_library_ones():
    from jaxdist.cli import settings
    from jaxdist.data import TOKEN_DATASETS
    from jaxdist.discrete import SAMPLERS

    assert settings.TOKEN_DATA_NAMES == tuple(TOKEN_DATASETS)
    assert set(settings.DISCRETE_SAMPLERS.values()) == set(SAMPLERS)
