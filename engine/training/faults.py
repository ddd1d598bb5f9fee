"""Fault injection for the reliability suite: `TUNEBENCH_FAULTS=kind=N[,kind=N]` in the engine's environment.

Kinds (N counts checkpoint saves from 1, or event writes from 1 after the trainer is built):
  kill_during_save=N   SIGKILL the engine after the model weights of save N are written, before the optimizer
  kill_before_rename=N SIGKILL after save N is complete in staging, before it is renamed into place
  enospc_during_save=N raise OSError(ENOSPC) after the weights of save N are written, as a full disk would
  short_write=N        the training thread's event write N stores half its line and the rest fails with ENOSPC,
                       as on a disk that fills mid-line (outside a save); the writer cuts the half line back off
Without the variable nothing is patched and nothing costs anything. Light module.
"""
from __future__ import annotations

import errno
import os
import signal
import threading

ENV = "TUNEBENCH_FAULTS"


def parse(spec: str | None) -> dict[str, int]:
    out = {}
    for part in (spec or "").split(","):
        if "=" in part:
            k, _, v = part.partition("=")
            out[k.strip()] = int(v)
    return out


def short_writes(events, n: int) -> None:
    """Make the n-th os.write of `events` (an EventWriter) short, and the write that would finish it fail."""
    count = {"n": 0, "cut": False}
    real = events._os_write

    def write(fd, data):
        if threading.current_thread() is not threading.main_thread():
            return real(fd, data)  # telemetry: its thread swallows errors; the fault is for the training loop
        count["n"] += 1
        if count["n"] == n:
            count["cut"] = True
            return real(fd, bytes(data[: max(1, len(data) // 2)]))
        if count["cut"]:
            count["cut"] = False
            raise OSError(errno.ENOSPC, "No space left on device", str(events.path))
        return real(fd, data)

    events._os_write = write


def install(trainer, callback, events=None) -> dict[str, int]:
    """Wrap the trainer's save steps (and the event writer) according to $TUNEBENCH_FAULTS; returns the faults armed."""
    faults = parse(os.environ.get(ENV))
    if not faults:
        return faults
    if "short_write" in faults and hasattr(events, "_os_write"):
        short_writes(events, faults["short_write"])
    count = {"n": 0}
    save_opt = trainer._save_optimizer_and_scheduler
    save_ckpt = trainer._save_checkpoint

    def counted_save(model, trial, *a, **kw):
        count["n"] += 1
        return save_ckpt(model, trial, *a, **kw)

    def faulty_optimizer_save(output_dir, *a, **kw):
        n = count["n"]
        if faults.get("kill_during_save") == n:
            os.kill(os.getpid(), signal.SIGKILL)
        if faults.get("enospc_during_save") == n:
            with open(os.path.join(output_dir, "optimizer.pt"), "wb") as f:
                f.write(b"\0" * 4096)  # a partial file, as a full disk leaves behind
            raise OSError(errno.ENOSPC, "No space left on device", os.path.join(output_dir, "optimizer.pt"))
        return save_opt(output_dir, *a, **kw)

    trainer._save_checkpoint = counted_save
    trainer._save_optimizer_and_scheduler = faulty_optimizer_save
    if "kill_before_rename" in faults:
        callback.before_rename = lambda step: (count["n"] == faults["kill_before_rename"]
                                               and os.kill(os.getpid(), signal.SIGKILL))
    return faults
