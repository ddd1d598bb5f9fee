"""One engine per run: an exclusive flock on runs/<id>/engine.lock, held by the engine (rank 0) for its life.

Light (stdlib). The kernel drops a flock when the last descriptor of its open file goes, so a dead engine
(SIGKILL, OOM killer, reboot) never leaves a stale lock behind. The holder writes its pid into the file so a
refused engine and every reader can name it. The descriptor is close-on-exec and closed in forked children,
so no child process (a data loader worker, a torchrun agent) keeps the run locked after the engine is gone.

The same mechanism, on `.launch.lock`, marks a run whose launcher (the CLI or the workbench) is still starting
its engine: a `created` run that neither lock holds was never started (its launcher died first).
"""
from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
import weakref
from pathlib import Path

ENGINE_LOCK = "engine.lock"
LAUNCH_LOCK = ".launch.lock"
BUSY_EXIT = 75  # the engine's exit status when another engine holds the run (EX_TEMPFAIL)
_HELD: weakref.WeakSet = weakref.WeakSet()  # the locks this process holds, closed in forked children
_FORK_HOOK = threading.Lock()
_hooked = False


class Refused(Exception):
    """tunebench will not touch this run (or runs directory): the message says why, in one line, and what to do."""


class RunBusy(Refused):
    """Another engine holds the run."""

    def __init__(self, run_path: Path, pid: int | None):
        self.pid = pid
        who = f"engine pid {pid}" if pid else "another engine"
        super().__init__(f"{Path(run_path).name} is held by {who} (one engine per run); stop it first "
                         f"(tunebench stop {Path(run_path).name}) or wait for it to end")


def _close_in_child() -> None:
    # After fork the child shares the lock's open file; closing (never LOCK_UN, which would release the
    # parent's lock too) means the lock dies with the engine, not with its longest-lived child.
    for lock in list(_HELD):
        lock._forget()


def _open(path: Path) -> int:
    # O_NOFOLLOW: a symlink planted in place of the lock file is refused, not followed
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)


class RunLock:
    """An exclusive flock on one file of a run directory; release() or process death frees it."""

    def __init__(self, path: Path, fd: int):
        self.path, self._fd = path, fd

    @classmethod
    def acquire(cls, run_path: str | Path, name: str = ENGINE_LOCK, patience: float = 1.0) -> RunLock:
        """Take the lock or raise RunBusy naming the holder. Readers take a shared lock for one system call
        to test it, so a refusal is only believed after it lasts `patience` seconds."""
        global _hooked
        path = Path(run_path) / name
        fd = _open(path)
        deadline = time.monotonic() + patience
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    pid = _read_pid(fd)
                    os.close(fd)
                    raise RunBusy(Path(run_path), pid) from None
                time.sleep(0.05)
        with _FORK_HOOK:
            if not _hooked:
                os.register_at_fork(after_in_child=_close_in_child)
                _hooked = True
        # pid first, fixed width, no truncation: a reader never sees an empty file while it is rewritten
        os.pwrite(fd, f"{os.getpid():>10}\n".encode(), 0)
        lock = cls(path, fd)
        _HELD.add(lock)
        return lock

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def _forget(self) -> None:
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1

    def release(self) -> None:
        self._forget()  # closing the last descriptor of the open file releases the flock

    def __del__(self):
        self._forget()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).split()
        return int(text[0]) if text else None
    except (OSError, ValueError):
        return None


def holder(run_path: str | Path, name: str = ENGINE_LOCK) -> int | None:
    """The pid of the process holding the lock (0 when it cannot be read), or None when nobody holds it.

    Cost: an open, a non-blocking flock and a close; the shared lock taken for that instant is what a
    starting engine tolerates for `patience`."""
    try:
        fd = os.open(Path(run_path) / name, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return _read_pid(fd) or 0
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def has_lock_file(run_path: str | Path, name: str = ENGINE_LOCK) -> bool:
    """Whether an engine of this version ever took the run (older engines left no lock file)."""
    return os.path.lexists(Path(run_path) / name)
