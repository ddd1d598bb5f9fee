"""Everything the monitor draws for one run, and the follower that feeds it from events.jsonl.

Light module (no textual, no torch). A Follower tails events.jsonl by byte offset through
engine.events.EventTail (a torn last line is kept back, a file cut by a repair is read again), decodes
each chunk with engine.eventdecode and ingests it column-wise into a RunData of bounded Series (engine.series).
Attaching starts from the engine's history snapshot (engine.snapshot) when there is one, then reads
what follows in 4 MiB chunks: transient memory stays bounded, and the pane shows how far it got.
"""
from __future__ import annotations

import threading
from collections import deque
from operator import attrgetter
from pathlib import Path

from engine.monitor import snapshot
from engine.monitor.decoding import (
    GPU_FIELDS,
    PREF_PREFIXES,
    TELE_FIELDS,
    TYPED_CHARTED,
    Batch,
    decode,
    gc_paused,
    to_lines,
)
from engine.monitor.series import Series, numeric, present
from engine.rundir.evalkeys import BOOKKEEPING, order_key
from engine.rundir.events import EventTail

CHUNK = 4 << 20     # bytes decoded per read when attaching: bounds the transient memory of a big history
CHARTED = {"loss", "learning_rate", "grad_norm", "tokens_per_s"}
SKIP_KEYS = {"seq", "time", "kind", "step"}


class RunData:
    """Everything the monitor draws for one run, bounded however long the run is.

    Written by one Follower thread, read by the UI thread: both hold `lock` (held for microseconds
    per batch of points on the writer side; readers copy out a chart's columns, not the buckets).
    """

    def __init__(self, by_tokens: bool = False):
        self.lock = threading.Lock()
        self.by_tokens = by_tokens              # also keep loss over tokens (the overlay's x axis)
        self.train: dict[str, Series] = {}      # metrics key -> Series over step
        self.loss_by_tokens = Series()          # loss over cumulative tokens, for the overlay
        self.eval: dict[str, Series] = {}       # eval key (without eval_) -> Series over step
        self.tele: dict[str, Series] = {}       # telemetry field -> Series over seconds since start
        self.checkpoints: deque = deque(maxlen=4096)  # steps with a complete checkpoint
        self.logs: deque = deque(maxlen=200)    # (time, level, message): warnings and errors shown
        self.rates: deque = deque(maxlen=64)    # (time, step) of recent metrics: the step rate for ETA
        self.state: str | None = None
        self.state_event: dict = {}
        self.summary: dict = {}
        self.data_info: dict = {}
        self.model_info: dict = {}
        self.last_metrics: dict = {}
        self.last_telemetry: dict = {}
        self.gpu_indices: list[int] = []
        self.t0: float | None = None            # time of the first event: telemetry x = seconds since
        self.step = 0
        self.events = 0
        self.version = 0                        # bumped per ingested batch: widgets redraw on change
        self.v_train = 0                        # ... per part: metrics, evals and checkpoints (the step charts)
        self.v_tele = 0                         # ... telemetry (the memory chart)

    def series(self, table: dict, key: str) -> Series:
        s = table.get(key)
        if s is None:
            s = table[key] = Series()
        return s

    # -- the snapshot the engine keeps (engine.snapshot) -------------------------------------------
    PLAIN = ("by_tokens", "state", "state_event", "summary", "data_info", "model_info", "last_metrics", "last_telemetry",
             "gpu_indices", "t0", "step", "events")

    def to_state(self) -> dict:
        """Everything above as plain lists, dicts and numbers (caller holds the lock)."""
        tables = {name: {k: s.state() for k, s in getattr(self, name).items()} for name in ("train", "eval", "tele")}
        return {**tables, "loss_by_tokens": self.loss_by_tokens.state(), "checkpoints": list(self.checkpoints),
                "logs": [list(x) for x in self.logs], "rates": [list(x) for x in self.rates],
                **{k: getattr(self, k) for k in self.PLAIN}}

    def restore(self, st: dict) -> None:
        """Take a to_state() dict in place (the pane holds this object); all or nothing: a malformed state
        raises before anything is replaced."""
        tables = {name: {str(k): Series.from_state(v) for k, v in st[name].items()} for name in ("train", "eval", "tele")}
        by_tokens = Series.from_state(st["loss_by_tokens"])
        plain = {k: st[k] for k in self.PLAIN}
        if self.by_tokens and not plain["by_tokens"]:
            raise ValueError("the snapshot has no loss-by-tokens series")  # the overlay needs it: read it all
        logs = [tuple(x) for x in st["logs"]]
        rates = [tuple(x) for x in st["rates"]]
        with self.lock:
            for name, table in tables.items():
                setattr(self, name, table)
            self.loss_by_tokens = by_tokens
            self.checkpoints.clear()
            self.checkpoints.extend(st["checkpoints"])
            self.logs.clear()
            self.logs.extend(logs)
            self.rates.clear()
            self.rates.extend(rates)
            for k, v in plain.items():
                setattr(self, k, v)
            self.version += 1
            self.v_train += 1
            self.v_tele += 1

    def eval_metrics(self) -> dict[str, list[tuple]]:
        """The eval events' metrics (engine.rundir.evalkeys: rouge1, bleu, accuracy, ...; not the loss) as (step, value)
        points, in display order (caller holds the lock)."""
        return {k: self.eval[k].points() for k in sorted(set(self.eval) - BOOKKEEPING, key=order_key)}

    def pref_keys(self) -> list[str]:
        return sorted(k for k in self.train if k.startswith(PREF_PREFIXES))

    # -- ingestion (writer thread) ----------------------------------------------------------------
    def ingest(self, batch: Batch) -> None:
        """Take one decoded chunk (engine.eventdecode): typed metrics and telemetry, and dict events of any kind
        (on the dict path metrics and telemetry arrive as dicts too: they end in the same series)."""
        if not batch.size:
            return
        dmetrics, evals, dtele, other = [], [], [], []
        for e in batch.events:
            k = e.get("kind")
            if k == "metrics":
                dmetrics.append(e)
            elif k == "telemetry":
                dtele.append(e)
            elif k == "eval":
                evals.append(e)
            else:
                other.append(e)
        tele = batch.telemetry or to_lines(dtele)
        with self.lock:
            if self.t0 is None:
                firsts = [x.time for x in batch.metrics[:1] + tele[:1]] + [e.get("time") for e in batch.events[:1]]
                firsts = [t for t in firsts if isinstance(t, (int, float))]
                self.t0 = min(firsts) if firsts else None
            self.events += batch.size
            if batch.metrics:
                self._typed_metrics(batch.metrics, batch.keys, batch.last_metrics or {})
                self.v_train += 1
            if dmetrics:
                self._metrics(dmetrics)
                self.v_train += 1
            if evals:
                self.v_train += 1
                keys = set().union(*evals) - SKIP_KEYS
                self._columns(self.eval, evals, sorted(keys))
            if tele:
                self._telemetry(tele, batch.last_telemetry or (dtele[-1] if dtele else {}))
                self.v_tele += 1
            for e in other:
                self._other(e)
            self.version += 1

    def _columns(self, table: dict, evs: list[dict], keys) -> None:
        """One Series per key over step. Cost: three C-speed comprehensions per key per batch."""
        try:
            steps = [e["step"] for e in evs]
        except KeyError:
            evs = [e for e in evs if "step" in e]
            steps = [e["step"] for e in evs]
        for key in keys:
            try:
                xs, ys = steps, [e[key] for e in evs]
            except KeyError:  # not in every event (eval-only keys, a trainer logging on some steps)
                sel = [e for e in evs if key in e]
                xs, ys = [e["step"] for e in sel], [e[key] for e in sel]
            xs, ys = numeric(xs, ys)
            if ys:
                self.series(table, key).extend(xs, ys)

    def _metrics(self, evs: list[dict]) -> None:
        """The dict path's metrics: any names, preference and RL ones included."""
        keys: set = set()
        for e in evs[:: max(1, len(evs) // 16)]:  # sample the keys: a run logs the same keys each step
            keys.update(e)
        keys.update(evs[-1])
        # Charted keys only; the rest (epoch, entropy, token accuracy...) show as the latest value.
        charted = [k for k in keys if k in CHARTED or k.startswith(PREF_PREFIXES)]
        self._columns(self.train, evs, charted)
        if self.by_tokens and "num_tokens" in keys and "loss" in keys:  # loss again, x = cumulative tokens
            sel = [e for e in evs if "num_tokens" in e and "loss" in e]
            xs, ys = numeric([e["num_tokens"] for e in sel], [e["loss"] for e in sel])
            self.loss_by_tokens.extend(xs, ys)
        self._latest(evs[-1], [(e.get("time"), e.get("step")) for e in evs[-self.rates.maxlen:]])

    def _typed_metrics(self, ms: list, keys: set, last: dict) -> None:
        """The fast path's metrics: columns straight off the structs (map(attrgetter) over a list runs in C)."""
        steps = [m.step for m in ms]
        cols = {key: list(map(attrgetter(key), ms)) for key in TYPED_CHARTED + ("num_tokens",) if key in keys}
        for key in TYPED_CHARTED:
            if key in cols:
                xs, ys = present(steps, cols[key])
                if ys:
                    self.series(self.train, key).extend(xs, ys)
        if self.by_tokens and "num_tokens" in cols and "loss" in cols:
            xs, ys = present(cols["num_tokens"], cols["loss"])
            self.loss_by_tokens.extend(xs, ys)
        self._latest(last, [(m.time, m.step) for m in ms[-self.rates.maxlen:]])

    def _latest(self, last: dict, rates: list) -> None:
        self.last_metrics = last
        if isinstance(last.get("step"), (int, float)):
            self.step = max(self.step, int(last["step"]))
        self.rates.extend(rates)

    def _telemetry(self, evs: list, last: dict) -> None:
        """Telemetry Lines: x = seconds since the run's first event; one Series per field and per GPU field."""
        t0 = self.t0 or evs[0].time or 0.0
        xs = [t0 if e.time is None else e.time - t0 for e in evs]
        for key in TELE_FIELDS:
            px, py = present(xs, list(map(attrgetter(key), evs)))
            if py:
                self.series(self.tele, key).extend(px, py)
        per_gpu: dict = {}  # gpu index -> ([x], [Gpu]); one pass over the events
        for x, e in zip(xs, evs):
            for g in e.gpus or ():
                c = per_gpu.get(g.index)
                if c is None:
                    c = per_gpu[g.index] = ([], [])
                c[0].append(x)
                c[1].append(g)
        for idx, (gx, gs) in per_gpu.items():
            if idx not in self.gpu_indices:
                self.gpu_indices.append(idx)
            for field in GPU_FIELDS:
                px, py = present(gx, list(map(attrgetter(field), gs)))
                if py:
                    self.series(self.tele, f"gpu{idx}.{field}").extend(px, py)
        self.last_telemetry = last

    def _other(self, e: dict) -> None:
        k = e.get("kind")
        if k == "state":
            self.state = e.get("state") or self.state
            self.state_event = e
            if isinstance(e.get("step"), (int, float)):
                self.step = max(self.step, int(e["step"]))
        elif k == "checkpoint" and e.get("step") is not None:
            self.checkpoints.append(e["step"])
            self.v_train += 1
        elif k == "log":
            if e.get("message") == "model ready":
                self.model_info = {k: v for k, v in e.items() if k not in SKIP_KEYS}
            self.logs.append((e.get("time"), e.get("level", "info"), str(e.get("message", ""))))
        elif k == "summary":
            self.summary = e
        elif k == "data":
            self.data_info = e

    # -- derived values (UI thread, under lock) ---------------------------------------------------
    def step_rate(self) -> float | None:
        """Steps per second over the recent metrics events; None until two are apart in time."""
        if len(self.rates) < 2:
            return None
        (t_a, s_a), (t_b, s_b) = self.rates[0], self.rates[-1]
        if None in (t_a, t_b, s_a, s_b) or t_b <= t_a or s_b <= s_a:
            return None
        return (s_b - s_a) / (t_b - t_a)

    def nbytes(self) -> int:
        tables = (self.train, self.eval, self.tele)
        return sum(s.nbytes() for t in tables for s in t.values()) + self.loss_by_tokens.nbytes()


class Follower:
    """Feeds a RunData from a run's events.jsonl: `catch_up()` reads the history, `poll()` what is new."""

    def __init__(self, events_path: str | Path, data: RunData | None = None, chunk: int = CHUNK,
                 kinds: tuple[str, ...] | None = None, use_snapshot: bool = True):
        self.tail = EventTail(events_path)
        self.kinds = kinds
        self.data = data or RunData()
        self.chunk = chunk
        self.use_snapshot = use_snapshot  # False reads every event (tests comparing both ways)
        self.restored_offset = 0  # where the engine's snapshot left off; 0 when none was used

    def restore_snapshot(self) -> int:
        """Start from the engine's history snapshot when it has a usable one; returns the events it holds."""
        found = snapshot.load(self.tail.path)
        if found is None:
            return 0
        offset, state = found
        try:
            self.data.restore(state)
        except (KeyError, TypeError, ValueError):  # written by another version, or damaged: read it all
            return 0
        self.tail.offset = self.restored_offset = offset
        return self.data.events

    def poll(self) -> int:
        """Ingest up to one chunk of new events; returns how many arrived."""
        with gc_paused():
            batch = decode(self.tail.read_complete(self.chunk), self.kinds)
            self.data.ingest(batch)
        self.tail.bad_lines += batch.bad
        return batch.size

    def catch_up(self, progress=None) -> int:
        """Read the history: everything up to the file's size now, one chunk at a time, so a writer
        faster than the reader cannot keep this going; `progress(offset)` after each chunk."""
        try:
            target = self.tail.path.stat().st_size
        except OSError:
            target = 0
        total = self.restore_snapshot() if self.use_snapshot and self.tail.offset == 0 else 0
        while True:
            before = self.tail.offset
            total += self.poll()
            if progress is not None:
                progress(self.tail.offset)
            if self.tail.offset == before or self.tail.offset >= target:
                return total


def load_run_data(events_path: str | Path, by_tokens: bool = False, use_snapshot: bool = True) -> RunData:
    """The whole history of one run as bounded series (what attaching does, without a UI)."""
    f = Follower(events_path, RunData(by_tokens), use_snapshot=use_snapshot)
    f.catch_up()
    return f.data
