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
  the directory and the step, and for a damaged step the newest older step that restores;
* one writer per folder: a writing :class:`Checkpointer` holds the folder's
  :class:`jaxdist.folder_lock.FolderLock` until :meth:`Checkpointer.close`, so a second run on the
  same folder fails at once naming the first one's pid and host; ``read_only=True`` opens a
  folder to restore from without locking it, creating it or cleaning it.
"""

from __future__ import annotations

import json
import shutil
import weakref
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from .folder_lock import FolderLock

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
      directory: the run's checkpoint folder (created if missing, unless ``read_only``).
      save_every: save when ``step % save_every == 0`` (``save(..., force=True)`` always saves).
      max_to_keep: number of newest checkpoints kept (``None`` keeps all).
      async_save: write in a background thread (turn off on storage where async writes hang).
      read_only: only restore: the folder must exist, is not locked, created or cleaned, and
        :meth:`save` is an error.

    Raises:
      CheckpointError: the folder is a file, lies under a file, or (``read_only``) is missing.
      jaxdist.folder_lock.FolderLockedError: another live process writes to the folder.

    Use as a context manager, or call :meth:`close` (in a ``finally``) so the last save lands
    and the folder's lock is released.
    """

    def __init__(self, directory: str | Path, *, save_every: int = 1000, max_to_keep: int | None = 3,
                 async_save: bool = True, read_only: bool = False):
        if save_every < 1:
            raise ValueError(f"save_every={save_every} must be a positive number of steps.")
        if max_to_keep is not None and max_to_keep < 1:
            raise ValueError(f"max_to_keep={max_to_keep} must be >= 1 (or None to keep all).")
        self.directory = Path(directory).expanduser().resolve()
        self.read_only = read_only
        self.save_every = save_every
        self._pending: int | None = None  # the step of the save in flight, if any
        self._lock: FolderLock | None = None
        _check_folder(self.directory, create=not read_only)
        if not read_only and jax.process_index() == 0:
            self._lock = FolderLock(self.directory)
            weakref.finalize(self, self._lock.release)  # a Checkpointer dropped without close()
            _remove_temporary(self.directory)  # what a killed run left (we hold the lock)
        try:
            # Orbax's own clean-up of temporary folders runs in a thread that outlives a short
            # process (tracebacks at shutdown), so it is done above, synchronously.
            options = ocp.CheckpointManagerOptions(
                save_interval_steps=save_every, max_to_keep=max_to_keep, create=False,
                cleanup_tmp_directories=False, enable_async_checkpointing=async_save)
            self._manager = ocp.CheckpointManager(self.directory, options=options,
                                                  item_names=("state", "config"))
        except BaseException:
            self._release()
            raise

    # ---------------------------------------------------------------- queries
    def latest_step(self) -> int | None:
        """The newest complete step, or ``None`` when the directory has none."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """All complete steps, oldest first."""
        return sorted(self._manager.all_steps())

    def is_save_step(self, step: int, force: bool = False) -> bool:
        """Whether :meth:`save` at ``step`` would write (a save step not on disk yet)."""
        return (force or int(step) % self.save_every == 0) and \
            int(step) not in self._manager.all_steps()

    # ---------------------------------------------------------------- saving
    def save(self, step: int, state: PyTree, *, config: dict | None = None,
             force: bool = False) -> bool:
        """Starts saving ``state`` (and ``config``) at ``step`` if it is a save step.

        Returns whether a save was started. An existing step is left untouched (returns False).
        """
        step = int(step)
        if self.read_only:
            raise CheckpointError(f"{self.directory} was opened read_only; open it with "
                                  "Checkpointer(directory) to save.")
        if not self.is_save_step(step, force):
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
        """Waits for pending saves, releases the manager and the folder's lock (errors are
        raised, not swallowed)."""
        try:
            self.wait()
        finally:
            try:
                self._manager.close()
            finally:
                self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()

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

    def _read_config(self, step: int) -> dict:
        out = self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        return dict(out.config or {})

    def _read_state(self, step: int, abstract: PyTree) -> PyTree:
        out = self._manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
        return jax.block_until_ready(out.state)

    def newest_good_step(self, below: int | None = None, target: PyTree | None = None) -> int | None:
        """The newest step (below ``below``) whose config, and state onto ``target`` if given,
        restore; ``None`` if none does."""
        abstract = None if target is None else abstract_state(target)
        for step in reversed([s for s in self.all_steps() if below is None or s < below]):
            try:
                self._read_config(step)
                if abstract is not None:
                    self._read_state(step, abstract)
            except Exception:
                continue
            return step
        return None

    def _damaged(self, step: int, what: str, err: Exception,
                 target: PyTree | None) -> CheckpointError:
        message = (f"cannot restore step {step} from {self.directory} ({what}: files truncated/"
                   f"corrupt or saved with a different structure): {type(err).__name__}: "
                   f"{str(err)[:400]}")
        good = self.newest_good_step(below=step, target=target)
        if good is not None:
            message += (f". Step {good} restores: read it with restore(step={good}) (jaxdist "
                        f"sample --step {good}); to resume training from it, move "
                        f"{self.directory / str(step)} out of {self.directory} and run again")
        elif any(s < step for s in self.all_steps()):
            message += "; no older step restores either"
        return CheckpointError(message + ".")

    def restore_config(self, step: int | None = None) -> dict:
        """The JSON config saved at ``step`` (default: the newest)."""
        step = self._step_or_latest(step)
        try:
            return self._read_config(step)
        except Exception as err:
            raise self._damaged(step, "the config", err, None) from err

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
          CheckpointError: nothing to restore, the files are incomplete or corrupt (naming the
            newest older step that restores), or the saved structure/shapes/config differ from
            the target.
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
            state = self._read_state(step, abstract)
        except Exception as err:
            raise self._damaged(step, "the state", err, abstract) from err
        if jax.tree.structure(state) != jax.tree.structure(abstract):
            raise CheckpointError(f"checkpoint step {step} in {self.directory} restored with tree "
                                  f"structure {jax.tree.structure(state)}, expected "
                                  f"{jax.tree.structure(abstract)}.")
        return state, config


def _check_folder(directory: Path, create: bool) -> None:
    """Checks (and with ``create`` makes) the folder, with errors that say what is wrong."""
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} is a file, not a folder.")
    parent = directory.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} lies under {parent}, which is a "
                              "file, not a folder; pick another path.")
    if not create:
        if not directory.is_dir():
            raise CheckpointError(f"no checkpoint folder {directory}; check the path (train "
                                  "first: jaxdist train --checkpoint-dir ...).")
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CheckpointError(f"cannot create checkpoint directory {directory}: "
                              f"{err.strerror or err}.") from err


def _remove_temporary(directory: Path) -> None:
    """Removes the temporary step folders an interrupted save left (Orbax renames a step's
    folder into place when it is complete, so these were never a checkpoint)."""
    for path in directory.iterdir():
        if ocp.utils.TMP_DIR_SUFFIX in path.name:
            shutil.rmtree(path, ignore_errors=True)
