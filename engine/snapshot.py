"""The history snapshot: a run's bounded chart series saved beside events.jsonl, so attaching costs the same
for a run of 200 steps and one of 2 million.

Light module. The engine keeps a Follower over its own events.jsonl and, every SNAPSHOT_BYTES of new
events (and once at the end), writes `history.msgpack`: the RunData that reading events.jsonl up to byte
`offset` gives, with a digest of the file's first bytes. A reader restores it and decodes only the events
after `offset` (at most SNAPSHOT_BYTES, ~15k events, ~0.1 s), instead of the whole file (~3 s per million
events). events.jsonl stays the record: the snapshot is derived from it by the same code a reader runs,
and a missing, stale, corrupt or foreign snapshot is ignored (the reader reads the whole file).
"""
from __future__ import annotations

import hashlib
import sys
import threading
from pathlib import Path

import msgspec

from .runs import atomic_write

NAME = "history.msgpack"
FORMAT = 1
SNAPSHOT_BYTES = 4 << 20   # new events between snapshots: what a reader decodes past one, at most
FINAL_BYTES = 1            # at the end, a last snapshot of whatever followed the previous one
HEAD = 4096                # bytes of events.jsonl digested: ties a snapshot to its file


def _head_digest(events_path: Path, offset: int) -> str:
    with open(events_path, "rb") as f:
        return hashlib.blake2b(f.read(min(offset, HEAD)), digest_size=16).hexdigest()


def save(events_path: Path, offset: int, state: dict) -> None:
    """Write the snapshot of `state` (RunData.to_state() at byte `offset` of events.jsonl) atomically.
    Not fsynced: after a power cut it may be lost, never torn, and losing it only costs a slower attach."""
    doc = {"format": FORMAT, "offset": offset, "head": _head_digest(events_path, offset), "data": state}
    atomic_write(events_path.with_name(NAME), msgspec.msgpack.encode(doc), fsync=False)


def load(events_path: Path) -> tuple[int, dict] | None:
    """(offset, RunData state) when a snapshot of this events.jsonl exists and is usable, else None."""
    try:
        doc = msgspec.msgpack.decode(events_path.with_name(NAME).read_bytes())
        offset = int(doc["offset"])
        if (doc["format"] != FORMAT or not 0 < offset <= events_path.stat().st_size
                or doc["head"] != _head_digest(events_path, offset)):
            return None
        return offset, doc["data"]
    except (OSError, ValueError, TypeError, KeyError, msgspec.DecodeError):
        return None


class Snapshotter:
    """The engine's side: a thread that snapshots the run's history every SNAPSHOT_BYTES of new events.

    Cost to the engine: decoding its own new events once (~0.1 s CPU per 15k events, in this thread) and
    a few MB of memory for the bounded series; nothing in the training loop. Failures (a full disk) are
    reported once in engine.log and never reach the run.
    """

    def __init__(self, events_path: str | Path, interval: float = 10.0, every: int = SNAPSHOT_BYTES):
        from .history import Follower, RunData  # history restores snapshots through this module

        self.follower = Follower(events_path, RunData(by_tokens=True))
        for tmp in self.follower.tail.path.parent.glob(f".{NAME}.*.tmp"):  # a killed engine's half-written one
            tmp.unlink(missing_ok=True)
        self.follower.restore_snapshot()  # a resumed run goes on from its last snapshot
        self.saved = self.follower.tail.offset
        self.interval, self.every = interval, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="history-snapshot", daemon=True)
        self._warned = False

    def start(self) -> Snapshotter:
        self._thread.start()
        return self

    def maybe_save(self, min_new: int) -> bool:
        try:
            if self.follower.tail.path.stat().st_size - self.saved < min_new:
                return False
            self.follower.catch_up()
            data = self.follower.data
            with data.lock:
                state = data.to_state()
            save(self.follower.tail.path, self.follower.tail.offset, state)
            self.saved = self.follower.tail.offset
            return True
        except Exception as e:  # noqa: BLE001 - a cache must never fail the run
            if not self._warned:
                self._warned = True
                print(f"history snapshot not written ({e}); attaching reads the whole events.jsonl", file=sys.stderr)
            return False

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.maybe_save(self.every)

    def close(self) -> None:
        """Stop the thread and take a last snapshot of the finished run (after its final events)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self.maybe_save(FINAL_BYTES)
