"""The engine's history snapshotter: a thread that keeps the run's chart series and saves them as history.msgpack.

Light module (no ML stack); runs inside the engine process beside training, never in the training loop.
"""
from __future__ import annotations

import sys
import threading
from pathlib import Path

from engine.monitor.history import Follower, RunData
from engine.monitor.snapshot import FINAL_BYTES, NAME, SNAPSHOT_BYTES, save


class Snapshotter:
    """The engine's side: a thread that snapshots the run's history every SNAPSHOT_BYTES of new events.

    Cost to the engine: decoding its own new events once (~0.1 s CPU per 15k events, in this thread) and
    a few MB of memory for the bounded series; nothing in the training loop. Failures (a full disk) are
    reported once in engine.log and never reach the run.
    """

    def __init__(self, events_path: str | Path, interval: float = 10.0, every: int = SNAPSHOT_BYTES):
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
