"""The append-only event log (events.jsonl): one writer, many readers that tail it by byte offset.

Light module. Every event is one strict-JSON object on one line: {"seq", "time", "kind", ...} (a non-finite
number is null, its key named in `nonfinite`). The writer
appends each line on an O_APPEND descriptor, whole or not at all: a short write (a nearly full disk) is
continued, and a line that cannot be finished is cut back off, so the next event never glues onto half a
line. A reader sees whole lines or a torn last line (a writer killed mid-line); it keeps an incomplete last
line back until it is finished.
"""
from __future__ import annotations

import errno
import json
import math
import os
import threading
import time
from pathlib import Path

KINDS = ("metrics", "eval", "telemetry", "checkpoint", "log", "state", "summary", "data", "sample", "eval_samples",
         "benchmark")


def _repair_tail(path: Path) -> int:
    """Cut a torn last line (a crash mid-write) so appends start on a fresh line; return the last seq."""
    last_seq = -1
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return last_seq
    if size == 0:
        return last_seq
    with open(path, "rb+") as f:
        # Read back far enough to find the last complete line; events are small (< 64 KiB).
        chunk = min(size, 1 << 16)
        f.seek(size - chunk)
        tail = f.read(chunk)
        if not tail.endswith(b"\n"):
            cut = tail.rfind(b"\n")
            new_size = size - chunk + cut + 1 if cut >= 0 else (0 if chunk == size else size - chunk)
            f.truncate(new_size)
            tail = tail[: cut + 1] if cut >= 0 else b""
        for line in reversed(tail.splitlines()):
            try:
                last_seq = int(json.loads(line)["seq"])
                break
            except (ValueError, KeyError, TypeError):
                continue
    return last_seq


class EventWriter:
    """Appends events to events.jsonl; safe to call from the training loop and the telemetry thread."""

    _os_write = staticmethod(os.write)  # the fault-injection suite replaces it on one writer (short writes)

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._seq = _repair_tail(self.path) + 1
        self._lock = threading.Lock()
        # O_APPEND: each os.write lands at the end in one piece. Cost: one syscall per event, no fsync
        # (a lost tail on power failure is acceptable; status.json is the durable record).
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def write(self, kind: str, **fields) -> dict:
        with self._lock:
            event = {"seq": self._seq, "time": round(time.time(), 3), "kind": kind, **fields}
            line = encode(event) + "\n"
            self._append(line.encode("utf-8"))
            self._seq += 1
        return event

    def _append(self, data: bytes) -> None:
        """All of `data` at the end of the file, or none of it (the caller holds the lock; one writer per run)."""
        done = 0
        try:
            while done < len(data):
                n = self._os_write(self._fd, data[done:])  # short on a nearly full disk: write() returns what fit
                if n <= 0:
                    raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
                done += n
        except BaseException:
            if done:  # cut the half line back off: the file ends on a whole line again
                try:
                    os.ftruncate(self._fd, os.fstat(self._fd).st_size - done)
                except OSError:
                    pass
            raise

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def encode(event: dict) -> str:
    """One event as strict JSON (jq, JSON.parse and msgspec refuse a bare NaN): a non-finite number, such as
    a diverged loss, is written as null, and `nonfinite` names the keys that held one (["loss"], ["eval.x"])."""
    try:
        return json.dumps(event, separators=(",", ":"), default=_jsonable, allow_nan=False)
    except ValueError:  # rare: only an event that holds a NaN or an infinity pays for the second pass
        bad: list[str] = []
        clean = _finite(event, "", bad)
        clean["nonfinite"] = bad
        return json.dumps(clean, separators=(",", ":"), default=_jsonable, allow_nan=False)


def _finite(value, path: str, bad: list[str]):
    """`value` with every non-finite float replaced by None (its dotted path appended to `bad`)."""
    if isinstance(value, dict):
        return {k: _finite(v, f"{path}.{k}" if path else str(k), bad) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v, f"{path}[{i}]", bad) for i, v in enumerate(value)]
    if not isinstance(value, (str, int, float, bool, type(None))):
        value = _jsonable(value)  # a numpy or torch scalar: its Python value, checked below
        if isinstance(value, (list, dict)):
            return _finite(value, path, bad)
    if isinstance(value, float) and not math.isfinite(value):
        bad.append(path)
        return None
    return value


def _jsonable(obj):
    for attr in ("item", "tolist"):  # numpy / torch scalars and arrays
        if hasattr(obj, attr):
            try:
                return getattr(obj, attr)()
            except Exception:  # noqa: BLE001 - fall through to str
                pass
    return str(obj)


class EventTail:
    """Reads new complete events since the last call, by byte offset; tolerates a torn last line."""

    def __init__(self, path: str | Path, offset: int = 0):
        self.path = Path(path)
        self.offset = offset
        self.bad_lines = 0  # complete lines that did not parse (should stay 0; counted, never raised)

    def read_complete(self, max_bytes: int | None = None) -> bytes:
        """The complete lines written since the last call (at most max_bytes); the offset moves past them."""
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < self.offset:  # file replaced or truncated by a repair: start over
                    self.offset = 0
                f.seek(self.offset)
                data = f.read(max_bytes) if max_bytes else f.read()
        except FileNotFoundError:
            return b""
        end = data.rfind(b"\n")
        if end < 0:
            return b""
        self.offset += end + 1
        return data[: end + 1]

    def read(self, max_bytes: int | None = None) -> list[dict]:
        events = []
        for line in self.read_complete(max_bytes).splitlines():
            if not line.strip():
                continue
            try:
                events.append(json.loads(line))
            except ValueError:
                self.bad_lines += 1
        return events


def read_events(path: str | Path, kinds: tuple[str, ...] | None = None) -> list[dict]:
    """Every complete event in the file (optionally only some kinds)."""
    events = EventTail(path).read()
    return [e for e in events if kinds is None or e.get("kind") in kinds]
