"""Fault injection for the reliability suite: `TUNEBENCH_FAULTS=kind=N[,kind=N]` in the engine's environment.

Kinds (N counts checkpoint saves from 1):
  kill_during_save=N   SIGKILL the engine after the model weights of save N are written, before the optimizer
  kill_before_rename=N SIGKILL after save N is complete in the staging directory, before it is renamed into place
  enospc_during_save=N raise OSError(ENOSPC) after the weights of save N are written, as a full disk would
Without the variable nothing is patched and nothing costs anything. Light module.
"""
from __future__ import annotations

import errno
import os
import signal

ENV = "TUNEBENCH_FAULTS"


def parse(spec: str | None) -> dict[str, int]:
    out = {}
    for part in (spec or "").split(","):
        if "=" in part:
            k, _, v = part.partition("=")
            out[k.strip()] = int(v)
    return out


def install(trainer, callback) -> dict[str, int]:
    """Wrap the trainer's save steps according to $TUNEBENCH_FAULTS; returns the faults armed."""
    faults = parse(os.environ.get(ENV))
    if not faults:
        return faults
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
