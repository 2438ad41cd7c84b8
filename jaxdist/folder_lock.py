"""A lock on a folder that one process writes, e.g. a run's checkpoint folder.

``FolderLock(directory)`` takes an exclusive, non-blocking ``flock`` on ``directory/.jaxdist.lock``
and writes the owner (pid, host, start time, command) into it. A second process is told at once
who holds the folder (:class:`FolderLockedError`). The kernel releases the lock when its process
ends, however it ends, so the lock of a dead process (a stale lock file) is simply taken over.
The file itself stays (removing it would race with a process that has just opened it).
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import socket
import sys
from pathlib import Path

__all__ = ["FolderLock", "FolderLockedError", "LOCK_NAME"]

LOCK_NAME = ".jaxdist.lock"


class FolderLockedError(RuntimeError):
    """Another live process holds the folder's lock; ``owner`` is what it wrote (may be empty)."""

    def __init__(self, message: str, owner: dict):
        super().__init__(message)
        self.owner = owner


def _describe(owner: dict) -> str:
    if not owner:
        return "another process"
    parts = [f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')}"]
    if owner.get("started"):
        parts.append(f"since {owner['started']}")
    if owner.get("command"):
        parts.append(f"running `{owner['command']}`")
    return "another run (" + ", ".join(parts) + ")"


def _command() -> str:
    """The command line of this process, the interpreter's path shortened to its name."""
    argv = list(getattr(sys, "orig_argv", sys.argv))
    return shlex.join([Path(argv[0]).name] + argv[1:]) if argv else ""


class FolderLock:
    """Holds the lock of ``directory`` from construction until :meth:`release`.

    Raises:
      FolderLockedError: another live process holds it (the message names its pid and host).
    """

    def __init__(self, directory: str | Path):
        import fcntl  # POSIX

        self.path = Path(directory) / LOCK_NAME
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = self._read()
            os.close(self._fd)
            self._fd = None
            raise FolderLockedError(
                f"{_describe(owner)} writes to {Path(directory)}; wait for it to finish or use "
                "another folder (the lock is released when that process ends).", owner) from None
        owner = {"pid": os.getpid(), "host": socket.gethostname(),
                 "started": datetime.datetime.now().isoformat(timespec="seconds"),
                 "command": _command()}
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, json.dumps(owner).encode(), 0)

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Clears the owner and releases the lock (idempotent)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the last descriptor releases the flock

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
