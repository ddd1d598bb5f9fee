"""One scheduler per runs dir: its lock (runs/queue/scheduler.lock, flock held for the process's life), and
starting one, detached, when work waits and none runs.

Light module, importable by the workbench: it starts the scheduler as a process (`python -m engine.scheduling`)
and never imports it (the scheduler may load optuna).
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from engine.rundir import launch
from engine.rundir.queue import Queue, queue_dir
from engine.scheduling import sweepfiles


def _singleton_path(runs_dir: str | Path) -> Path:
    return queue_dir(runs_dir) / "scheduler.lock"


def hold_singleton(runs_dir: str | Path, record: bool = False) -> int | None:
    """Take the runs dir's scheduler lock (non-blocking): its descriptor, or None when a scheduler runs.
    `record`: write this process's pid into the lock file (the scheduler itself; a mere check does not)."""
    queue_dir(runs_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(_singleton_path(runs_dir), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    if record:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}).encode())
    return fd


def running_scheduler(runs_dir: str | Path) -> dict | None:
    """The live scheduler's {pid, host, started}, or None."""
    fd = hold_singleton(runs_dir)
    if fd is not None:
        os.close(fd)
        return None
    try:
        return json.loads(_singleton_path(runs_dir).read_text() or "{}")
    except (OSError, ValueError):
        return {}


def has_work(runs_dir: str | Path) -> bool:
    return bool(Queue(runs_dir).entries()) or bool(sweepfiles.open_sweeps(runs_dir))


def ensure_scheduler(runs_dir: str | Path) -> int | None:
    """Start a detached scheduler for `runs_dir` when work waits and none runs; its pid, or None."""
    if not has_work(runs_dir) or running_scheduler(runs_dir) is not None:
        return None
    qdir = queue_dir(runs_dir)
    cmd = [sys.executable, "-m", "engine.scheduling", str(Path(runs_dir).resolve())]
    return launch.spawn(cmd, qdir / "scheduler.log").pid

