"""One writer per folder (jaxdist.folder_lock), tested with two processes."""

import os
import signal
import socket
import subprocess
import sys

import pytest

from jaxdist.folder_lock import LOCK_NAME, FolderLock, FolderLockedError

_HOLDER = """
import sys, time
from jaxdist.folder_lock import FolderLock
lock = FolderLock(sys.argv[1])
print("LOCKED", flush=True)
time.sleep(120)
"""


def _holder(folder):
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder)], stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert proc.stdout.readline().strip() == "LOCKED"
    return proc


def test_second_process_is_told_who_holds_the_folder_and_takes_over_a_dead_ones(tmp_path):
    holder = _holder(tmp_path)
    try:
        with pytest.raises(FolderLockedError) as info:
            FolderLock(tmp_path)
        assert info.value.owner["pid"] == holder.pid
        assert info.value.owner["host"] == socket.gethostname()
        assert f"another run (pid {holder.pid} on host {socket.gethostname()}" in str(info.value)
        assert "-c" in info.value.owner["command"]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert str(holder.pid) in (tmp_path / LOCK_NAME).read_text()  # a stale lock file
    with FolderLock(tmp_path) as lock:  # taken over: the dead process holds nothing
        assert lock.held and str(os.getpid()) in (tmp_path / LOCK_NAME).read_text()
    assert not lock.held and (tmp_path / LOCK_NAME).read_text() == ""


def test_the_same_process_cannot_take_a_folder_twice(tmp_path):
    first = FolderLock(tmp_path)
    with pytest.raises(FolderLockedError, match=f"pid {os.getpid()}"):
        FolderLock(tmp_path)
    first.release()
    first.release()  # idempotent
    FolderLock(tmp_path).release()
