"""Several engine processes (torchrun/accelerate ranks): rank 0 alone writes, every rank obeys the controls.

Light at import (torch inside functions). Rank 0 reads and deletes the control files and applies them, in order,
to the control state machine (engine/rundir/controls.py); each step its decision (paused, stop, save, eval) is
shared with one all_reduce(MAX) in which the other ranks add only their own stop signal, so the decision (and a
SIGTERM that reached any rank) takes effect on every rank at the same step. Cost: one tiny collective per step
(on CUDA a device sync); single-process runs skip it.
"""
from __future__ import annotations

import os

from engine.rundir.controls import FLAGS
from engine.rundir.runs import Run


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


class FollowerRun(Run):
    """A run as a non-zero rank sees it: readable, but it writes no status and takes no control files."""

    def write_status(self, **updates) -> dict:
        return {}

    def take_controls(self, before_ns: int | None = None) -> list[str]:
        return []


class NullEvents:
    """The events writer of a non-zero rank: writes nothing."""

    def write(self, kind: str, **fields) -> None:
        return None

    def close(self) -> None:
        return None


def for_rank(run: Run, events_factory):
    """(run, events) for this process: the real ones on rank 0, the silent ones elsewhere."""
    if rank() == 0:
        return run, events_factory(run.events_path)
    return FollowerRun(run.path), NullEvents()


def _group():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1 else None


def sync_flags(flags: dict[str, bool], stop_flag) -> dict[str, bool]:
    """The decision every rank acts on this step: rank 0's (from its control files) plus any rank's stop signal."""
    flags = {k: bool(flags.get(k)) for k in FLAGS}
    if stop_flag is not None and stop_flag.is_set():
        flags["stop"] = True
    dist = _group()
    if dist is None:
        return flags
    import torch

    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if dist.get_backend() == "nccl" else "cpu"
    mine = [int(flags[k]) if rank() == 0 or k == "stop" else 0 for k in FLAGS]  # rank 0 decides, any rank may stop
    vec = torch.tensor(mine, dtype=torch.int32, device=device)
    dist.all_reduce(vec, op=dist.ReduceOp.MAX)
    return {k: bool(v) for k, v in zip(FLAGS, vec.tolist())}


def barrier() -> None:
    dist = _group()
    if dist is not None:
        dist.barrier()
