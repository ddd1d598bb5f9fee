"""The history snapshot: a run's bounded chart series saved beside events.jsonl, so attaching costs the same
for a run of 200 steps and one of 2 million.

Light module: the file format (save, load). The engine keeps a Follower (engine.monitor.snapshotter) over its own events.jsonl and, every SNAPSHOT_BYTES of new
events (and once at the end), writes `history.msgpack`: the RunData that reading events.jsonl up to byte
`offset` gives, with a digest of the file's first bytes. A reader restores it and decodes only the events
after `offset` (at most SNAPSHOT_BYTES, ~15k events, ~0.1 s), instead of the whole file (~3 s per million
events). events.jsonl stays the record: the snapshot is derived from it by the same code a reader runs,
and a missing, stale, corrupt or foreign snapshot is ignored (the reader reads the whole file).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import msgspec

from engine.rundir.atomic import atomic_write

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
