"""Orbax checkpoints that never lose work: :class:`Checkpointer` around ``CheckpointManager``.

Layout of ``directory/<step>/``: ``state/`` (the train state, written by Orbax's
``StandardSave``: tensorstore arrays plus JSON metadata) and ``config/`` (a JSON document saved
beside every state). Nothing is pickled, so loading never executes code from the checkpoint.

Guarantees (each has a test in ``tests/test_checkpoint.py``):

* saves are asynchronous (the device-to-host copy blocks, the write happens in the background)
  and atomic: Orbax writes into a temporary directory and renames it when complete, so a process
  killed mid-save leaves the previous checkpoints intact and resumes from the newest complete one
  (temporary leftovers are removed when the next :class:`Checkpointer` opens the directory);
* an existing step is never overwritten; the newest ``max_to_keep`` steps are kept;
* restoring takes an *abstract* target (``jax.ShapeDtypeStruct`` with shardings, from
  :func:`abstract_state`), so containers, dtypes and placements come from the program, not from
  the files; a missing, truncated or mismatched checkpoint raises :class:`CheckpointError` naming
  the directory and the step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

PyTree = Any

__all__ = ["Checkpointer", "CheckpointError", "abstract_state"]


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or does not match the program restoring it."""


def abstract_state(tree: PyTree, sharding: jax.sharding.Sharding | None = None) -> PyTree:
    """``jax.ShapeDtypeStruct`` leaves (with shardings) for ``tree`` of arrays or structs.

    Use the result of ``jax.eval_shape(init_fn, ...)`` or a freshly initialised state. Each leaf
    keeps its own sharding unless ``sharding`` is given (e.g. ``parallel.replicated(mesh)``);
    leaves without one are placed on the first local device.
    """
    default = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

    def leaf(x):
        s = sharding or getattr(x, "sharding", None) or default
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s)

    return jax.tree.map(leaf, tree)


class Checkpointer:
    """Saves and restores a train state plus a JSON config under ``directory``.

    Args:
      directory: the run's checkpoint folder (created if missing).
      save_every: save when ``step % save_every == 0`` (``save(..., force=True)`` always saves).
      max_to_keep: number of newest checkpoints kept (``None`` keeps all).
      async_save: write in a background thread (turn off on storage where async writes hang).

    Use as a context manager, or call :meth:`close` (in a ``finally``) so the last save lands.
    """

    def __init__(self, directory: str | Path, *, save_every: int = 1000, max_to_keep: int | None = 3,
                 async_save: bool = True):
        if save_every < 1:
            raise ValueError(f"save_every={save_every} must be a positive number of steps.")
        if max_to_keep is not None and max_to_keep < 1:
            raise ValueError(f"max_to_keep={max_to_keep} must be >= 1 (or None to keep all).")
        self.directory = Path(directory).expanduser().resolve()
        if self.directory.exists() and not self.directory.is_dir():
            raise CheckpointError(f"checkpoint directory {self.directory} is a file, not a folder.")
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=save_every, max_to_keep=max_to_keep, create=True,
            cleanup_tmp_directories=True, enable_async_checkpointing=async_save)
        self._manager = ocp.CheckpointManager(self.directory, options=options,
                                              item_names=("state", "config"))
        self.save_every = save_every
        self._pending: int | None = None  # the step of the save in flight, if any

    # ---------------------------------------------------------------- queries
    def latest_step(self) -> int | None:
        """The newest complete step, or ``None`` when the directory has none."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """All complete steps, oldest first."""
        return sorted(self._manager.all_steps())

    # ---------------------------------------------------------------- saving
    def save(self, step: int, state: PyTree, *, config: dict | None = None,
             force: bool = False) -> bool:
        """Starts saving ``state`` (and ``config``) at ``step`` if it is a save step.

        Returns whether a save was started. An existing step is left untouched (returns False).
        """
        step = int(step)
        if not force and step % self.save_every:
            return False
        if step in self._manager.all_steps():
            return False
        cfg = json.loads(json.dumps(config or {}))  # JSON-able now, not in the background thread
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  config=ocp.args.JsonSave(cfg))
        self.wait()  # a failure of the previous save surfaces here, not one save later
        started = bool(self._manager.save(step, args=args, force=True))
        self._pending = step if started else None
        return started

    def wait(self) -> None:
        """Blocks until the pending save is on disk.

        Raises:
          CheckpointError: the background write failed (naming the step and the directory);
            the earlier checkpoints are untouched and remain the ones a restore uses.
        """
        step, self._pending = self._pending, None
        try:
            self._manager.wait_until_finished()
            self._manager.check_for_errors()
        except Exception as err:
            self._manager.reload()  # forget the step that never landed
            raise CheckpointError(
                f"saving step {step} to {self.directory} failed: {type(err).__name__}: {err}. "
                f"The newest complete checkpoint is step {self.latest_step()}.") from err

    def close(self) -> None:
        """Waits for pending saves and releases the manager (errors are raised, not swallowed)."""
        try:
            self.wait()
        finally:
            self._manager.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- restoring
    def _step_or_latest(self, step: int | None) -> int:
        steps = self.all_steps()
        if not steps:
            raise CheckpointError(f"no complete checkpoint in {self.directory}; train first "
                                  "(jaxdist train --checkpoint-dir ...) or check the path.")
        if step is None:
            return steps[-1]
        if int(step) not in steps:
            raise CheckpointError(f"no checkpoint at step {step} in {self.directory}; "
                                  f"available steps: {steps}.")
        return int(step)

    def restore_config(self, step: int | None = None) -> dict:
        """The JSON config saved at ``step`` (default: the newest)."""
        step = self._step_or_latest(step)
        try:
            out = self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        except Exception as err:
            raise CheckpointError(f"cannot read the config of step {step} in {self.directory}: "
                                  f"{type(err).__name__}: {err}") from err
        return dict(out.config or {})

    def restore(self, target: PyTree, step: int | None = None, *,
                expected_config: dict | None = None) -> tuple[PyTree, dict]:
        """Restores ``(state, config)`` at ``step`` (default: the newest complete one).

        Args:
          target: the abstract state (:func:`abstract_state`), or a concrete state whose
            structure, shapes, dtypes and shardings the result must have.
          step: which step; ``None`` for the newest.
          expected_config: entries that must equal the saved config (e.g. model sizes); a
            difference is a :class:`CheckpointError` listing the keys.

        Raises:
          CheckpointError: nothing to restore, the files are incomplete or corrupt, or the saved
            structure/shapes/config differ from the target.
        """
        step = self._step_or_latest(step)
        config = self.restore_config(step)
        if expected_config:
            diff = {k: (config.get(k), v) for k, v in expected_config.items() if config.get(k) != v}
            if diff:
                detail = ", ".join(f"{k}: saved {s!r}, requested {r!r}" for k, (s, r) in diff.items())
                raise CheckpointError(f"checkpoint step {step} in {self.directory} was made with a "
                                      f"different configuration ({detail}); use another "
                                      "--checkpoint-dir or the saved settings.")
        abstract = abstract_state(target)
        try:
            out = self._manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
            state = out.state
            jax.block_until_ready(state)
        except Exception as err:
            raise CheckpointError(f"cannot restore step {step} from {self.directory} (files "
                                  f"truncated/corrupt or saved with a different structure): "
                                  f"{type(err).__name__}: {str(err)[:600]}") from err
        if jax.tree.structure(state) != jax.tree.structure(abstract):
            raise CheckpointError(f"checkpoint step {step} in {self.directory} restored with tree "
                                  f"structure {jax.tree.structure(state)}, expected "
                                  f"{jax.tree.structure(abstract)}.")
        return state, config
