"""Several engine processes (torchrun/accelerate ranks): rank 0 alone writes, every rank obeys the controls.

Light at import (torch inside functions). Rank 0 reads and deletes the control files; each step the
decision is combined across ranks with one all_reduce(MAX) of a few flags, so stop/pause/save/eval (and a
SIGTERM that reached any rank) take effect on every rank at the same step. Cost: one tiny collective per
step (on CUDA a device sync); single-process runs skip it.
"""
from __future__ import annotations

import os

from engine.rundir.runs import Run

ORDER = ("save", "eval", "pause", "resume", "stop")


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


class FollowerRun(Run):
    """A run as a non-zero rank sees it: readable, but it writes no status and takes no control files."""

    def write_status(self, **updates) -> dict:
        return {}

    def take_controls(self) -> list[str]:
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


def sync_commands(cmds: list[str], stop_flag) -> list[str]:
    """The commands every rank acts on this step: rank 0's control files plus any rank's stop signal."""
    dist = _group()
    if dist is None:
        return cmds
    import torch

    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if dist.get_backend() == "nccl" else "cpu"
    flags = torch.tensor([int(c in cmds) for c in ORDER], dtype=torch.int32, device=device)
    if stop_flag is not None and stop_flag.is_set():
        flags[ORDER.index("stop")] = 1
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    return [c for c, f in zip(ORDER, flags.tolist()) if f]


def barrier() -> None:
    dist = _group()
    if dist is not None:
        dist.barrier()
