"""Bounded, downsampled metric series and the follower that feeds them from a run's events.jsonl.

Light module (no textual, no torch). Memory and redraw cost stay flat however long a run gets: a
Series keeps at most CAP min/max buckets and merges neighbours pairwise when full, so a 1M-step run
costs the same as a 2k-step one. The Follower tails events.jsonl by byte offset (engine.events.EventTail
semantics: an incomplete last line is kept back) and ingests a batch column-wise, so most of the work per
value happens in C (list comprehensions, min/max/sum over slices) rather than per-event Python calls.
"""
from __future__ import annotations

import json
import math
import threading
from collections import deque
from pathlib import Path

from engine.events import EventTail

try:  # orjson parses events.jsonl 2-3x faster than json: most of what attaching to a long run costs
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - orjson is a dependency; stay correct without it
    _loads = None

CAP = 1024          # buckets per series; a chart is at most a few hundred dot columns wide
CHUNK = 4 << 20     # bytes parsed per read when attaching: bounds the transient memory of a big history
GPU_FIELDS = ("mem_used", "mem_total", "util", "power_w", "temp_c", "proc_mem")
CHARTED = {"loss", "learning_rate", "grad_norm", "tokens_per_s"}
SKIP_KEYS = {"seq", "time", "kind", "step"}
# Metric name prefixes of preference and RL trainers (TRL): shown in their own chart when they arrive.
PREF_PREFIXES = ("rewards/", "reward", "logps/", "logits/", "kl", "margin", "completions/", "frac_reward")


class Series:
    """At most CAP buckets of consecutive points; each keeps x range, min, max, sum, count and last y."""

    __slots__ = ("cap", "width", "x0", "x1", "lo", "hi", "sm", "n", "last", "count", "dropped")

    def __init__(self, cap: int = CAP):
        self.cap = cap
        self.width = 1  # points per full bucket; doubles each time the buckets are merged
        self.x0: list = []
        self.x1: list = []
        self.lo: list = []
        self.hi: list = []
        self.sm: list = []
        self.n: list = []
        self.last: list = []
        self.count = 0     # points taken in total
        self.dropped = 0   # non-finite values (NaN/inf loss) left out of the buckets

    def __len__(self) -> int:
        return len(self.x0)

    def add(self, x, y) -> None:
        self.extend([x], [y])

    def extend(self, xs: list, ys: list) -> None:
        """Append points in x order. Cost: O(len/width) Python steps; the rest is C (slice min/max/sum)."""
        total = len(ys)
        if not total:
            return
        s = sum(ys)
        if not math.isfinite(s):  # rare: filter NaN/inf out (a finite sum proves there are none)
            keep = [i for i, y in enumerate(ys) if math.isfinite(y)]
            self.dropped += total - len(keep)
            xs, ys = [xs[i] for i in keep], [ys[i] for i in keep]
            total = len(ys)
            if not total:
                return
        self.count += total
        while len(self.x0) + total // self.width >= self.cap:
            self._merge()  # widen first: a big batch (attaching) is bucketed once, at its final width
        i = 0
        if self.n and self.n[-1] < self.width:  # top up the partial last bucket
            take = min(self.width - self.n[-1], total)
            part = ys[:take]
            self.lo[-1] = min(self.lo[-1], min(part))
            self.hi[-1] = max(self.hi[-1], max(part))
            self.sm[-1] += sum(part)
            self.n[-1] += take
            self.last[-1] = part[-1]
            self.x1[-1] = xs[take - 1]
            i = take
        while i < total:
            w = self.width
            j = min(i + w, total)
            part = ys[i:j]
            self.x0.append(xs[i])
            self.x1.append(xs[j - 1])
            self.lo.append(min(part))
            self.hi.append(max(part))
            self.sm.append(sum(part))
            self.n.append(j - i)
            self.last.append(part[-1])
            i = j
            if len(self.x0) >= self.cap:
                self._merge()

    def _merge(self) -> None:
        """Halve the bucket count by merging neighbours; only the last bucket may stay partial."""
        def pairs(v, f):
            out = [f(a, b) for a, b in zip(v[0::2], v[1::2])]
            if len(v) % 2:
                out.append(v[-1])
            return out

        self.x0 = self.x0[0::2]
        self.x1 = pairs(self.x1, lambda a, b: b)
        self.lo = pairs(self.lo, min)
        self.hi = pairs(self.hi, max)
        self.sm = pairs(self.sm, lambda a, b: a + b)
        self.n = pairs(self.n, lambda a, b: a + b)
        self.last = pairs(self.last, lambda a, b: b)
        self.width *= 2

    # -- reading ----------------------------------------------------------------------------------
    def latest(self):
        return self.last[-1] if self.last else None

    def x_range(self):
        return (self.x0[0], self.x1[-1]) if self.x0 else None

    def y_range(self):
        return (min(self.lo), max(self.hi)) if self.lo else None

    def points(self) -> list[tuple]:
        """(x, y) of every point; exact while no merge happened (count <= CAP), bucket means after."""
        return [((a + b) / 2 if w > 1 else a, s / w) for a, b, s, w in zip(self.x0, self.x1, self.sm, self.n)]

    def columns(self, x_min: float, x_max: float, ncols: int) -> list:
        """Per display column: None or (lo, hi, mean, last) of the buckets whose x falls in it.

        Cost: O(buckets) (at most CAP), whatever the run's length; the column of each bucket's midpoint
        comes from one comprehension, the merge loop touches only buckets that share a column."""
        half = (ncols - 1) / ((x_max - x_min) or 1.0) / 2
        cols_of = [int((a + b - 2 * x_min) * half + 0.5) for a, b in zip(self.x0, self.x1)]
        lo_, hi_, sm_, n_, last_ = {}, {}, {}, {}, {}
        for i, c in enumerate(cols_of):
            if c in lo_:
                if self.lo[i] < lo_[c]:
                    lo_[c] = self.lo[i]
                if self.hi[i] > hi_[c]:
                    hi_[c] = self.hi[i]
                sm_[c] += self.sm[i]
                n_[c] += self.n[i]
                last_[c] = self.last[i]
            elif 0 <= c < ncols:
                lo_[c], hi_[c], sm_[c], n_[c], last_[c] = self.lo[i], self.hi[i], self.sm[i], self.n[i], self.last[i]
        cols: list = [None] * ncols
        for c in lo_:
            cols[c] = (lo_[c], hi_[c], sm_[c] / n_[c], last_[c])
        return cols

    def nbytes(self) -> int:
        """Rough memory held (lists of pointers plus float objects), for the bench's accounting."""
        return len(self.x0) * 7 * (8 + 24)


def numeric(xs: list, ys: list) -> tuple[list, list]:
    """Keep the points whose y is a number; the common all-numeric case costs one C-level sum()."""
    try:
        sum(ys)
        if not any(type(y) is bool for y in ys[:1]):
            return xs, ys
    except TypeError:
        pass
    keep = [i for i, y in enumerate(ys) if isinstance(y, (int, float)) and not isinstance(y, bool)]
    return [xs[i] for i in keep], [ys[i] for i in keep]


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

    def pref_keys(self) -> list[str]:
        return sorted(k for k in self.train if k.startswith(PREF_PREFIXES))

    # -- ingestion (writer thread) ----------------------------------------------------------------
    def ingest(self, events: list[dict]) -> None:
        if not events:
            return
        metrics, evals, tele = [], [], []
        other = []
        for e in events:
            k = e.get("kind")
            if k == "metrics":
                metrics.append(e)
            elif k == "telemetry":
                tele.append(e)
            elif k == "eval":
                evals.append(e)
            else:
                other.append(e)
        with self.lock:
            if self.t0 is None:
                self.t0 = events[0].get("time")
            self.events += len(events)
            if metrics:
                self._metrics(metrics)
                self.v_train += 1
            if evals:
                self.v_train += 1
                keys = set().union(*evals) - SKIP_KEYS
                self._columns(self.eval, evals, sorted(keys))
            if tele:
                self._telemetry(tele)
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
        last = evs[-1]
        self.last_metrics = last
        if isinstance(last.get("step"), (int, float)):
            self.step = max(self.step, int(last["step"]))
        for e in evs[-self.rates.maxlen:]:
            self.rates.append((e.get("time"), e.get("step")))

    def _telemetry(self, evs: list[dict]) -> None:
        t0 = self.t0 or evs[0].get("time") or 0.0
        xs = [e.get("time", t0) - t0 for e in evs]
        for key in ("rss", "cpu_percent", "ram_used", "torch_allocated", "torch_reserved", "torch_peak"):
            pts = [(x, e[key]) for x, e in zip(xs, evs) if e.get(key) is not None]
            if pts:
                px, py = numeric([p[0] for p in pts], [p[1] for p in pts])
                self.series(self.tele, key).extend(px, py)
        cols: dict = {}  # (gpu index, field) -> ([x], [y]); one pass over the events
        for x, e in zip(xs, evs):
            for g in e.get("gpus") or ():
                idx = g.get("index")
                for field in GPU_FIELDS:
                    v = g.get(field)
                    if v is not None:
                        c = cols.get((idx, field))
                        if c is None:
                            c = cols[(idx, field)] = ([], [])
                        c[0].append(x)
                        c[1].append(v)
        for (idx, field), (gx, gy) in cols.items():
            if idx not in self.gpu_indices:
                self.gpu_indices.append(idx)
            gx, gy = numeric(gx, gy)
            self.series(self.tele, f"gpu{idx}.{field}").extend(gx, gy)
        self.last_telemetry = evs[-1]

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


def parse_lines(data: bytes, kinds: tuple[str, ...] | None = None) -> tuple[list[dict], int]:
    """Parse complete JSON lines; returns (events, bad line count). NaN/Infinity go through json.

    `kinds` skips other events before parsing, by the bytes `"kind":"<k>"` that EventWriter writes
    (compact separators): the overlay reads loss curves without paying for telemetry lines."""
    out, bad = [], 0
    loads = _loads or json.loads
    lines = data.splitlines()
    if kinds:
        pats = [b'"kind":"%s"' % k.encode() for k in kinds]
        lines = [ln for ln in lines if any(p in ln for p in pats)]
    if _loads is not None and b"" not in lines:
        try:  # the common case in one C-level pass; a NaN or a broken line falls back to the loop below
            return list(map(_loads, lines)), 0
        except ValueError:
            pass
    for line in lines:
        if not line:
            continue
        try:
            out.append(loads(line))
        except ValueError:
            try:  # orjson rejects NaN/Infinity, which json.dumps writes for a diverged loss
                out.append(json.loads(line))
            except ValueError:
                bad += 1
    return out, bad


class FastTail(EventTail):
    """EventTail (offset, torn last line kept back, restart on truncation) with a faster line parser."""

    kinds: tuple[str, ...] | None = None

    def read(self, max_bytes: int | None = None) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                size = f.seek(0, 2)
                if size < self.offset:  # replaced or truncated by a repair: start over
                    self.offset = 0
                f.seek(self.offset)
                data = f.read(max_bytes) if max_bytes else f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        events, bad = parse_lines(data[: end + 1], self.kinds)
        self.bad_lines += bad
        return events


class Follower:
    """Feeds a RunData from a run's events.jsonl: `catch_up()` reads the history, `poll()` what is new."""

    def __init__(self, events_path: str | Path, data: RunData | None = None, chunk: int = CHUNK,
                 kinds: tuple[str, ...] | None = None):
        self.tail = FastTail(events_path)
        self.tail.kinds = kinds
        self.data = data or RunData()
        self.chunk = chunk

    def poll(self) -> int:
        """Ingest up to one chunk of new events; returns how many arrived."""
        events = self.tail.read(self.chunk)
        self.data.ingest(events)
        return len(events)

    def catch_up(self, progress=None) -> int:
        """Read the history: everything up to the file's size now, one chunk at a time, so a writer
        faster than the reader cannot keep this going; `progress(offset)` after each chunk."""
        try:
            target = self.tail.path.stat().st_size
        except OSError:
            target = 0
        total = 0
        while True:
            before = self.tail.offset
            total += self.poll()
            if progress is not None:
                progress(self.tail.offset)
            if self.tail.offset == before or self.tail.offset >= target:
                return total


def load_run_data(events_path: str | Path, by_tokens: bool = False) -> RunData:
    """The whole history of one run as bounded series (what attaching does, without a UI)."""
    f = Follower(events_path, RunData(by_tokens))
    f.catch_up()
    return f.data


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-"
    seconds = int(seconds)
    d, rem = divmod(seconds, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    return (f"{d}d " if d else "") + (f"{h}:{m:02d}:{s:02d}" if h or d else f"{m}:{s:02d}")


def fmt_bytes(n) -> str:
    if n is None:
        return "N/A"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
