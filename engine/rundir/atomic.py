"""Atomic file replacement: the one way tunebench rewrites a file that someone else may be reading.

Light (stdlib only). It lives in the lowest layer that writes files, so every writer above it (rundir,
monitor, system, checkpoints) imports the same function.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path


def atomic_write(path: Path, data: str | bytes, mode: int = 0o600, fsync: bool = True) -> None:
    """Write a temp file beside `path`, fsync it, rename it over `path`: readers see old or new, never half.
    fsync=False for caches a reader can rebuild: after a power cut they may be empty, never torn."""
    path = Path(path)
    # pid and a random suffix: two threads or processes writing one path never share a temp file
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())  # cost: one disk flush per status update (a few per run, not per step)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
