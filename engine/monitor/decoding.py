"""Decoding events.jsonl chunks for the monitor: a typed fast path for the lines that dominate a long run.

Light module (no textual, no torch). A long run is ~95% metrics lines (one per step) and ~5% telemetry
(one per second); everything else (state, eval, checkpoint, log...) is rare. Metrics and telemetry are
decoded into `Line` structs: msgspec reads only the fields declared here, skips the rest in C, builds no
dict and leaves the structs untracked by the garbage collector, 3-4x faster than a dict per line. Rare
kinds are decoded as dicts. A chunk the fast path cannot take whole (a NaN that json.dumps wrote for a
diverged loss, a broken line, metric names no struct can list in advance) is decoded as dicts instead:
the same series come out either way, only slower.
"""
from __future__ import annotations

import gc
import json
from typing import NamedTuple

import msgspec

# Metric name prefixes of preference and RL trainers (TRL): shown in their own chart when they arrive.
PREF_PREFIXES = ("rewards/", "reward", "logps/", "logits/", "kl", "margin", "completions/", "frac_reward")
TYPED_CHARTED = ("loss", "learning_rate", "grad_norm", "tokens_per_s")  # the charted metrics Line holds
TELE_FIELDS = ("rss", "cpu_percent", "ram_used", "torch_allocated", "torch_reserved", "torch_peak")
GPU_FIELDS = ("mem_used", "mem_total", "util", "power_w", "temp_c", "proc_mem")


class Gpu(msgspec.Struct, gc=False):
    index: int | None = None
    mem_used: float | None = None
    mem_total: float | None = None
    util: float | None = None
    power_w: float | None = None
    temp_c: float | None = None
    proc_mem: float | None = None


class Line(msgspec.Struct, gc=False):
    """The fields of a metrics or telemetry event that the charts draw (absent ones stay None)."""

    kind: str = ""
    time: float | None = None
    step: int | float | None = None
    loss: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    tokens_per_s: float | None = None
    num_tokens: float | None = None
    rss: float | None = None
    cpu_percent: float | None = None
    ram_used: float | None = None
    torch_allocated: float | None = None
    torch_reserved: float | None = None
    torch_peak: float | None = None
    gpus: list[Gpu] | None = None


class Batch(NamedTuple):
    """One decoded chunk. On the dict path only `events` is filled (every kind, as dicts)."""

    metrics: list            # Line structs of kind "metrics", in file order
    keys: set                # the metric names seen in them (sampled: a run logs the same names each step)
    last_metrics: dict | None  # the last metrics event whole: the pane shows every latest value
    telemetry: list          # Line structs of kind "telemetry"
    last_telemetry: dict | None
    events: list[dict]       # every other event
    bad: int                 # complete lines that did not parse

    @property
    def size(self) -> int:
        return len(self.metrics) + len(self.telemetry) + len(self.events)


_TYPED = msgspec.json.Decoder(Line)
_ANY = msgspec.json.Decoder()
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError)


class gc_paused:
    """Pause the cyclic garbage collector while a chunk is decoded and bucketed: its passes over thousands
    of fresh containers find nothing (no cycles are made here) and cost as much as the decoding. The one
    who paused it first re-enables it, so overlapping threads cannot leave it off."""

    def __enter__(self):
        self.was = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc):
        if self.was:
            gc.enable()


def parse_lines(data: bytes, kinds: tuple[str, ...] | None = None) -> tuple[list[dict], int]:
    """Parse complete JSON lines into dicts; returns (events, bad line count). NaN/Infinity go through json.

    `kinds` skips other events before parsing, by the bytes `"kind":"<k>"` that EventWriter writes
    (compact separators): the overlay reads loss curves without paying for telemetry lines."""
    events, bad = _parse(data, kinds)
    if b'"nonfinite"' in data:
        for e in events:
            for path in e.get("nonfinite") or ():
                _restore_nan(e, str(path))
    return events, bad


def _restore_nan(event: dict, path: str) -> None:
    """EventWriter writes a non-finite number as null and names it in `nonfinite` ("loss", "eval.x"): the
    monitor reads it back as NaN, so a diverged loss is counted as dropped, not taken for a missing value."""
    *parents, key = path.split(".")
    for p in parents:
        event = event.get(p)
        if not isinstance(event, dict):
            return
    if event.get(key, 0) is None:
        event[key] = float("nan")


def _parse(data: bytes, kinds: tuple[str, ...] | None) -> tuple[list[dict], int]:
    lines = data.splitlines()
    if kinds:
        pats = [b'"kind":"%s"' % k.encode() for k in kinds]
        lines = [ln for ln in lines if any(p in ln for p in pats)]
    if b"" not in lines:
        try:  # the common case in one C-level pass; a NaN or a broken line falls back to the loop below
            return list(map(_ANY.decode, lines)), 0
        except _DECODE_ERRORS:
            pass
    out, bad = [], 0
    for line in lines:
        if not line.strip():
            continue
        try:
            out.append(_ANY.decode(line))
        except _DECODE_ERRORS:
            try:  # msgspec rejects NaN/Infinity, which json.dumps writes for a diverged loss
                out.append(json.loads(line))
            except ValueError:
                bad += 1
    return out, bad


def decode(data: bytes, kinds: tuple[str, ...] | None = None) -> Batch:
    """Decode a chunk of complete lines, through the fast path when the whole chunk allows it."""
    if b'"nonfinite"' in data:  # rare (a diverged run): the dict path restores the NaNs the writer nulled
        return Batch([], set(), None, [], None, *parse_lines(data, kinds))
    lines = data.splitlines()
    try:
        typed = list(map(_TYPED.decode, lines))
    except _DECODE_ERRORS:
        return Batch([], set(), None, [], None, *parse_lines(data, kinds))
    if kinds and "metrics" not in kinds:
        metrics = []
    else:
        metrics = [t for t in typed if t.kind == "metrics"]
    # A few metrics lines across the chunk, decoded whole, give the names logged (a run logs the same
    # names each step). A name Line cannot hold that the charts draw (TRL's rewards/<function>/mean...)
    # sends the chunk down the dict path: cheap enough there, as preference and RL runs step slowly
    # (seconds per step) and so write short logs.
    sample = [_ANY.decode(lines[i]) for i in _sample_metrics(typed, 16)] if metrics else []
    if any(k.startswith(PREF_PREFIXES) for e in sample for k in e):
        return Batch([], set(), None, [], None, *parse_lines(data, kinds))
    other = [(ln, t) for ln, t in zip(lines, typed) if t.kind != "metrics" and (not kinds or t.kind in kinds)]
    telemetry = [t for _, t in other if t.kind == "telemetry"]
    rest = [ln for ln, t in other if t.kind != "telemetry"]  # already decoded once: valid JSON
    last_tele = next((ln for ln, t in reversed(other) if t.kind == "telemetry"), None)
    return Batch(metrics, set().union(*sample), sample[-1] if sample else None, telemetry,
                 _ANY.decode(last_tele) if last_tele else None, list(map(_ANY.decode, rest)), 0)


def _sample_metrics(typed: list, n: int) -> list[int]:
    """Indices of about n metrics lines spread over the chunk, the last one included (it goes last)."""
    picks = []
    for start in range(0, len(typed), max(1, len(typed) // n)):
        i = next((j for j in range(start, min(start + 64, len(typed))) if typed[j].kind == "metrics"), None)
        if i is not None and i not in picks:
            picks.append(i)
    last = next(j for j in range(len(typed) - 1, -1, -1) if typed[j].kind == "metrics")
    return [i for i in picks if i != last] + [last]


def to_lines(events: list[dict]) -> list[Line]:
    """Dict events (the dict path's telemetry) as Line structs, so one code path builds the series;
    an event whose fields have the wrong types is left out rather than failing the batch."""
    out = []
    for e in events:
        try:
            out.append(msgspec.convert(e, Line))
        except msgspec.ValidationError:
            continue
    return out
