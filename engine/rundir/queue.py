"""The run queue: runs waiting in state `queued` for the scheduler, kept as files in the runs dir.

Light module. runs/queue/ holds one JSON file per waiting run (`<run-id>.json`: its place `order`, when it was
queued, and a `claimed` mark once a scheduler has spawned its engine) and `lock`, a file every writer flocks
(the kernel drops the lock when its holder dies, so a killed scheduler never leaves the queue locked).

Who may start a run is decided by one atomic step: the engine, holding the lock, unlinks its run's entry and
writes `starting` to status.json. A second engine for the same run (two schedulers racing, or a relaunch after a
scheduler died between spawning and recording) finds no entry and exits without touching the run, so no run
starts twice; a run whose status says queued but that has no entry (a crash between creating the run and adding
the entry) is added back by `repair`, so no queued run is lost.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from engine import config as cfgmod
from engine.rundir.atomic import atomic_write
from engine.rundir.runs import Run, create_run, list_runs

QUEUE_DIR = "queue"


@dataclass
class Entry:
    """One waiting run: its place (`order`, lower first) and the claim of the scheduler that spawned its engine."""

    run_id: str
    order: float
    queued: float
    claimed: dict | None = None  # {"by": scheduler pid, "by_started": its create time, "time", "engine_pid"}
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"run": self.run_id, "order": self.order, "queued": self.queued, "claimed": self.claimed,
                           **self.extra}, indent=1)


def queue_dir(runs_dir: str | Path) -> Path:
    return Path(runs_dir) / QUEUE_DIR


class Queue:
    """The queue of one runs dir; every read-modify-write happens inside `locked()`."""

    def __init__(self, runs_dir: str | Path):
        self.runs_dir = Path(runs_dir)
        self.dir = queue_dir(runs_dir)

    @contextmanager
    def locked(self):
        """Hold the queue's flock for the block (blocking; held for milliseconds by every writer)."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    # -- reading (safe without the lock: entries are replaced atomically) ---------------------------
    def entries(self) -> list[Entry]:
        """Waiting runs in queue order."""
        out = []
        try:
            names = [n for n in os.listdir(self.dir) if n.endswith(".json") and not n.startswith(".")]
        except FileNotFoundError:
            return out
        for name in names:
            try:
                d = json.loads((self.dir / name).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # vanished (taken) between listdir and read
            run_id = d.pop("run", name[:-5])
            out.append(Entry(run_id, float(d.pop("order", 0)), float(d.pop("queued", 0)), d.pop("claimed", None), d))
        return sorted(out, key=lambda e: (e.order, e.queued, e.run_id))

    def positions(self) -> dict[str, int]:
        """run id -> 1-based place in the queue."""
        return {e.run_id: i + 1 for i, e in enumerate(self.entries())}

    def entry_path(self, run_id: str) -> Path:
        return self.dir / f"{run_id}.json"

    # -- writing (hold the lock) ---------------------------------------------------------------------
    def write(self, entry: Entry) -> None:
        atomic_write(self.entry_path(entry.run_id), entry.to_json())

    def add(self, run: Run, **extra) -> Entry:
        """Append `run` (its status already says queued) at the end of the queue."""
        es = self.entries()
        entry = Entry(run.id, (es[-1].order + 1) if es else 1.0, time.time(), None, extra)
        self.write(entry)
        return entry

    def remove(self, run_id: str) -> bool:
        try:
            os.unlink(self.entry_path(run_id))
            return True
        except FileNotFoundError:
            return False

    def move(self, run_id: str, where: str) -> int:
        """Move a waiting run `up`, `down`, to the `top` or the `bottom`; returns its new 1-based place."""
        es = self.entries()
        i = next((k for k, e in enumerate(es) if e.run_id == run_id), None)
        if i is None:
            raise LookupError(f"{run_id} is not in the queue (started, cancelled or never queued)")
        j = {"up": i - 1, "down": i + 1, "top": 0, "bottom": len(es) - 1}.get(where)
        if j is None:
            raise ValueError(f"move where? {where!r}; one of up, down, top, bottom")
        j = max(0, min(len(es) - 1, j))
        if j == i:
            return i + 1
        moved = es.pop(i)
        es.insert(j, moved)
        for k, e in enumerate(es):  # renumber: orders stay small and distinct however often runs move
            if e.order != k + 1.0:
                e.order = k + 1.0
                self.write(e)
        return j + 1

    def cancel(self, run_id: str) -> Run:
        """Take a waiting run out of the queue and mark it stopped (cancelled). An engine spawned for it but not
        yet started finds no entry and exits without touching the run."""
        if not self.remove(run_id):
            raise LookupError(f"{run_id} is not waiting in the queue (it started already: `tunebench stop {run_id}`)")
        run = Run(self.runs_dir / run_id)
        run.write_status(state="stopped", cancelled=True, ended=time.time(),
                         error=None, note="cancelled while queued: it never started")
        return run

    def repair(self) -> dict:
        """Make the entries agree with the runs: drop entries of runs no longer queued, add back queued runs that
        lost theirs (a crash between creating the run and queuing it). Returns what changed."""
        es = {e.run_id: e for e in self.entries()}
        dropped, added = [], []
        for run_id in es:
            st = Run(self.runs_dir / run_id).status()
            if st.get("state") != "queued":  # taken by its engine, cancelled, or the run deleted
                self.remove(run_id)
                dropped.append(run_id)
        for run in reversed(list_runs(self.runs_dir)):  # oldest first: they rejoin in creation order
            if run.id not in es and run.status().get("state") == "queued":
                self.add(run)
                added.append(run.id)
        return {"dropped": dropped, "added": added}


def enqueue(runs_dir: str | Path, cfg: cfgmod.Config, **extra) -> tuple[Run, int]:
    """Create the run in state `queued` and put it at the end of the queue; returns (run, its place)."""
    run = create_run(runs_dir, cfg, state="queued", queued=time.time(), **extra)
    q = Queue(runs_dir)
    with q.locked():
        q.add(run)
        return run, q.positions()[run.id]


@contextmanager
def taking(run: Run, queued: bool = False):
    """Engine side: yield True when this engine may start `run`. A queued run is ours only if we remove its
    entry; the caller writes its `starting` status inside the block, under the queue's lock, so no scheduler
    sees a queued run without entry in between. `queued`: the engine was spawned for a queued run (by a
    scheduler), so a run no longer queued was taken by another engine: False. Otherwise a run whose status is
    not `queued` was started directly or is resumed: True."""
    status = run.status()
    if status.get("slurm") or (status.get("state") != "queued" and not queued):  # Slurm's queue is Slurm's
        yield True
        return
    q = Queue(run.path.parent)
    with q.locked():
        yield run.status().get("state") == "queued" and q.remove(run.id)
