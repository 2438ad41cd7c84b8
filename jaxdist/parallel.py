"""Data parallelism with ``jax.sharding``: one mesh axis ``"data"``, batch split, state replicated.

The recommended path (works the same on CPU devices, a multi-GPU host and a TPU pod slice):

    mesh  = data_mesh()                           # all devices of all processes
    state = replicate(state, mesh)                # NamedSharding(mesh, P())
    step  = sharded_train_step(loss, tx, mesh)    # jit; XLA inserts the gradient all-reduce
    state, metrics = step(state, shard_batch(batch, mesh))   # batch at P("data")

The mesh uses ``AxisType.Explicit``, so shardings are part of the array types
(``jax.typeof(x)`` shows ``float32[256@data, 2]``). With several processes, call
:func:`initialize_distributed` first; :func:`shard_batch` then takes each process's *local*
rows and builds the global array with ``jax.make_array_from_process_local_data``.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import jax
import numpy as np
import optax

from .train import LossFn, StepFn, make_train_step

Array = jax.Array
PyTree = Any

__all__ = ["data_mesh", "replicated", "batch_sharding", "shard_batch", "replicate",
           "sharded_train_step", "sharded_step", "sharded_sample", "initialize_distributed",
           "process_rows"]

DATA = "data"


def data_mesh(devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
    """A 1-D mesh ``("data",)`` over ``devices`` (default: every device of every process)."""
    devices = list(devices) if devices is not None else jax.devices()
    if not devices:
        raise ValueError("devices is empty; pass at least one jax.Device.")
    return jax.make_mesh((len(devices),), (DATA,), axis_types=(jax.sharding.AxisType.Explicit,),
                         devices=devices)


def replicated(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
    """``NamedSharding(mesh, P())``: a full copy on every device."""
    return jax.sharding.NamedSharding(mesh, jax.P())


def batch_sharding(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
    """``NamedSharding(mesh, P("data"))``: the leading (batch) axis split over devices."""
    return jax.sharding.NamedSharding(mesh, jax.P(DATA))


def replicate(tree: PyTree, mesh: jax.sharding.Mesh) -> PyTree:
    """Places every leaf of ``tree`` on all devices of ``mesh`` (every process passes the same
    values)."""
    def put(x):
        # P(None, ..., None) rather than P(): the spelling jit gives its replicated outputs, so
        # a step's output state hits the same compilation cache entry as its input.
        sharding = jax.sharding.NamedSharding(mesh, jax.P(*(None,) * np.ndim(x)))
        if jax.process_count() == 1:
            return jax.device_put(x, sharding)
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

    return jax.tree.map(put, tree)


def process_rows(global_batch: int) -> slice:
    """The rows of a global batch that this process feeds (``jax.process_index()``-th block)."""
    n = jax.process_count()
    if global_batch % n:
        raise ValueError(f"global batch {global_batch} is not divisible by the {n} processes.")
    per = global_batch // n
    return slice(jax.process_index() * per, (jax.process_index() + 1) * per)


def shard_batch(batch: PyTree, mesh: jax.sharding.Mesh) -> PyTree:
    """Splits the leading axis of every leaf over the ``"data"`` axis of ``mesh``.

    In one process ``batch`` is the global batch; with several processes it is this process's
    rows (``process_rows``) and the result is the global array. The global batch must be a
    multiple of the number of devices. Scalars are replicated.
    """
    n_dev = mesh.shape[DATA]
    sharding, rep = batch_sharding(mesh), replicated(mesh)

    def put(x):
        x = np.asarray(x) if not isinstance(x, jax.Array) else x
        if np.ndim(x) == 0:
            return jax.device_put(x, rep) if jax.process_count() == 1 else replicate(x, mesh)
        global_rows = x.shape[0] * jax.process_count()
        if global_rows % n_dev:
            raise ValueError(f"batch size {global_rows} is not divisible by the {n_dev} devices "
                             "of the mesh; use a multiple of jax.device_count().")
        if jax.process_count() == 1:
            return jax.device_put(x, sharding)
        return jax.make_array_from_process_local_data(sharding, np.asarray(x))

    return jax.tree.map(put, batch)


def sharded_train_step(loss_fn: LossFn, tx: optax.GradientTransformation,
                       mesh: jax.sharding.Mesh, ema_decay: float = 0.999,
                       grad_clip: float | None = 1.0, **kwargs) -> StepFn:
    """:func:`jaxdist.train.make_train_step` compiled for ``mesh``: the state stays replicated
    (``P()``), the batch is ``P("data")``, and the per-device gradients are summed by XLA.

    Call it with a state from :func:`replicate` and a batch from :func:`shard_batch`.
    """
    return sharded_step(make_train_step(loss_fn, tx, ema_decay, grad_clip, jit=False, **kwargs),
                        mesh)


def sharded_step(step: StepFn, mesh: jax.sharding.Mesh) -> StepFn:
    """Any un-jitted ``step(state, batch) -> (state, metrics)`` compiled for ``mesh``: state and
    metrics replicated (``P()``), the batch at ``P("data")``, the input state donated.

    :func:`sharded_train_step` is this around :func:`jaxdist.train.make_train_step`; the
    multi-network distillation step (:func:`jaxdist.distill.make_distill_step`) uses it too.
    """
    rep = replicated(mesh)

    def constrained(state, batch):
        # Losses and models are written for single arrays, not sharding types (a replicated
        # `t` concatenated with a sharded `x` is a type error in Explicit mode), so the step runs
        # with the "data" axis switched to Auto: XLA propagates the shardings inside, and the
        # outputs are pinned to P() (state and metrics replicated).
        return jax.sharding.auto_axes(step, axes=DATA, out_sharding=rep)(state, batch)

    compiled = jax.jit(constrained, donate_argnums=(0,))

    def run(state, batch):
        with jax.set_mesh(mesh):
            return compiled(state, batch)

    run.jitted = compiled  # for tests that inspect compilation
    run.nonfinite = getattr(step, "nonfinite", "error")  # read by fit
    return run


def sharded_sample(sample_fn: Callable[[Array], Array], x_T: Array,
                   mesh: jax.sharding.Mesh) -> Array:
    """Runs ``sample_fn(x_T)`` (e.g. ``lambda x: jd.sample(solver, den, x, grid).x``) with the
    batch of ``x_T`` split over the mesh. Outputs whose leading axis is the batch stay sharded
    at ``P("data")``; other outputs (NFE counts, flags) are replicated."""
    n = np.shape(x_T)[0]
    x_T = shard_batch(x_T, mesh)
    shapes = jax.eval_shape(sample_fn, jax.ShapeDtypeStruct(x_T.shape, x_T.dtype))
    # outputs with the batch as leading axis stay split; the rest (e.g. NFE counts) replicated
    out_sharding = jax.tree.map(
        lambda o: batch_sharding(mesh) if o.ndim and o.shape[0] == n else
        jax.sharding.NamedSharding(mesh, jax.P(*(None,) * o.ndim)), shapes)
    run = jax.sharding.auto_axes(sample_fn, axes=DATA, out_sharding=out_sharding)
    with jax.set_mesh(mesh):
        return jax.jit(run)(x_T)


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None, *, cpu_collectives: str | None = None,
                           local_device_ids: Sequence[int] | None = None) -> None:
    """Joins a multi-process run: a thin wrapper around ``jax.distributed.initialize``.

    On TPU pod slices, SLURM and Open MPI every argument is detected automatically (call it with
    none). Elsewhere pass them, or set ``JAXDIST_COORDINATOR`` (``host:port``),
    ``JAXDIST_NUM_PROCESSES`` and ``JAXDIST_PROCESS_ID``. ``cpu_collectives="gloo"`` enables
    cross-process collectives for CPU devices (tests and CPU clusters). Must run before any
    other JAX call that touches devices.
    """
    env = os.environ
    coordinator_address = coordinator_address or env.get("JAXDIST_COORDINATOR")
    if num_processes is None and "JAXDIST_NUM_PROCESSES" in env:
        num_processes = int(env["JAXDIST_NUM_PROCESSES"])
    if process_id is None and "JAXDIST_PROCESS_ID" in env:
        process_id = int(env["JAXDIST_PROCESS_ID"])
    if cpu_collectives is not None:
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id, local_device_ids=local_device_ids)
