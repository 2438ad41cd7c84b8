"""Two processes on 127.0.0.1 through jax.distributed (gloo CPU collectives) train exactly like one.

Each child process owns 2 CPU devices; together they form a 4-device ``"data"`` mesh. Each feeds
its half of every global batch (``parallel.process_rows``). Process 0 writes the losses and the
final parameters, which must equal an in-process run on a 4-device mesh to 1e-5. Both processes
also write an Orbax checkpoint half-way into one shared folder; a second pair of processes
restores it and finishes the run, bitwise equal to the uninterrupted one.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

from jaxdist import parallel
from jaxdist.train import init_train_state

from train_helpers import tiny_batch, tiny_loss, tiny_params

STEPS = 8
TESTS = str(Path(__file__).parent)

_CHILD = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    from jaxdist import parallel
    parallel.initialize_distributed(sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
    import numpy as np, optax
    from jaxdist.checkpoint import Checkpointer
    from jaxdist.train import init_train_state
    from train_helpers import tiny_batch, tiny_loss, tiny_params
    assert jax.device_count() == 4 and jax.local_device_count() == 2, jax.devices()
    mesh = parallel.data_mesh()
    tx = optax.adam(1e-2)
    state = parallel.replicate(init_train_state(tiny_params(), tx, jax.random.key(0)), mesh)
    step = parallel.sharded_train_step(tiny_loss, tx, mesh, ema_decay=0.9)
    steps, half = int(sys.argv[3]), int(sys.argv[3]) // 2
    ckpt = Checkpointer(sys.argv[4], save_every=half)
    if sys.argv[5] == "resume":
        state, _ = ckpt.restore(state)
        assert int(state.step) == half, int(state.step)
    losses = []
    for i in range(int(state.step), steps):
        local = {"x": tiny_batch(i)["x"][parallel.process_rows(64)]}
        state, metrics = step(state, parallel.shard_batch(local, mesh))
        losses.append(float(metrics["loss"]))
        if i + 1 == half:
            ckpt.save(half, state, config={"steps": steps})
    ckpt.close()
    if jax.process_index() == 0:
        params = {k: np.asarray(v.addressable_data(0)).tolist() for k, v in state.params.items()}
        print("RESULT " + json.dumps({"losses": losses, "params": params}), flush=True)
    jax.distributed.shutdown()
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gloo_available() -> str | None:
    try:
        from jax._src.lib import _jax  # noqa: F401  (jaxlib >= 0.5 keeps the CPU collectives here)

        if not hasattr(_jax, "make_gloo_tcp_collectives"):
            return "this jaxlib has no gloo CPU collectives"
    except ImportError:
        return "cannot inspect jaxlib for gloo support"
    return None


def _run_pair(tmp_path: Path, mode: str) -> dict:
    """Runs the child script as processes 0 and 1; returns process 0's result."""
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    address = f"127.0.0.1:{_free_port()}"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               PYTHONPATH=os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]))
    env.pop("JAX_NUM_CPU_DEVICES", None)
    procs = [subprocess.Popen([sys.executable, str(script), address, str(i), str(STEPS),
                               str(tmp_path / "ckpt"), mode],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
             for i in range(2)]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=240))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, f"child failed:\n{err[-3000:]}"
    line = [ln for ln in outs[0][0].splitlines() if ln.startswith("RESULT ")]
    assert line, outs[0]
    return json.loads(line[0][len("RESULT "):])


@pytest.mark.skipif(_gloo_available() is not None, reason=str(_gloo_available()))
def test_two_processes_match_single_process_and_resume_from_a_shared_checkpoint(tmp_path):
    result = _run_pair(tmp_path, "fresh")
    resumed = _run_pair(tmp_path, "resume")  # a new pair restores the step-4 checkpoint
    assert resumed["losses"] == result["losses"][STEPS // 2:]
    assert resumed["params"] == result["params"]  # bitwise: JSON floats round-trip exactly

    # the same run in this process on a 4-device mesh
    mesh = parallel.data_mesh(jax.devices()[:4])
    tx = optax.adam(1e-2)
    state = parallel.replicate(init_train_state(tiny_params(), tx, jax.random.key(0)), mesh)
    step = parallel.sharded_train_step(tiny_loss, tx, mesh, ema_decay=0.9)
    losses = []
    for i in range(STEPS):
        state, metrics = step(state, parallel.shard_batch(tiny_batch(i), mesh))
        losses.append(float(metrics["loss"]))
    np.testing.assert_allclose(result["losses"], losses, rtol=1e-5, atol=1e-6)
    for k, v in state.params.items():
        np.testing.assert_allclose(np.array(result["params"][k]), np.asarray(v), rtol=1e-5,
                                   atol=1e-6)
