"""One pass over every row of the data, in parallel processes and bounded memory: read (engine.data.stream),
validate and convert each row (engine.data.prepare.convert_row), and hand each method row to a Sink.

Light module (the sink may tokenise: engine.data.pipeline's does). The base Sink counts row shapes and labels
and keeps a seeded sample; that is the whole check `tunebench train` runs before a run exists and the row pass
of `tunebench inspect`. Each worker reads whole shards and sends back small summaries, so memory does not grow
with the row count. A light parent (the CLI's check) forks its workers: they share its few pages and start at
once. A parent holding the ML stack (the engine: torch, transformers, trl, ~0.5 GiB) spawns them instead, fresh
interpreters that import only what reading and tokenising need (~90 MiB, ~2 s each, no torch): a forked worker
would hold the engine's whole image, counted again in its RSS and copied page by page as reference counts touch
it (see START). Invalid rows are all counted by reason, the first KEEP of each kept with their location, as
engine.data.errors reports them.
"""
from __future__ import annotations

import contextlib
import gc
import multiprocessing as mp
import os
import pickle
import random
import signal
import sys
import threading
import time
import types
from collections import Counter
from dataclasses import dataclass, field

from engine.data import convert, formats, stream
from engine.data.errors import DataError, Problem, ProblemLog, Row
from engine.data.prepare import _shape, convert_row, encode_labels, shape_detail

KEEP = 200  # problems kept per reason, and rows named per odd shape (all are counted)
PROGRESS_EVERY = 1.0  # seconds between progress reports
TICK = 256  # rows between updates of the shared counters
# How workers start: "auto" (spawn when the parent has imported a module of HEAVY, else fork), "fork", "spawn".
START = "auto"
HEAVY = ("torch", "trl", "peft")


def cores() -> int:
    """The cores this process may run on (its affinity, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def procs_for(num_proc: int) -> int:
    return num_proc if num_proc > 0 else cores()


class Sink:
    """Receives the method rows of one shard, in the process that reads it; finish() is what comes back.

    This one counts shapes (the odd ones are named later), label values (classification), and keeps a
    seeded reservoir sample of (location, row) and the shard's first row."""

    def __init__(self, job: Job, index: int):
        self.job, self.index = job, index
        self.rows = 0
        self.shapes: Counter = Counter()
        self.shape_first: dict[tuple, list[str]] = {}
        self.labels: Counter = Counter()
        self.first = None
        self.sample: list = []
        self._rng = random.Random(f"{job.seed}-{job.name}-{index}")

    def add(self, location: str, row: dict) -> Problem | None:
        """Take one valid method row; a returned problem makes it invalid after all."""
        if self.job.label_names:
            _, problems = encode_labels([(location, row)], self.job.label_names)
            if problems:
                return problems[0]
        shape = _shape(row)
        self.shapes[shape] += 1
        first = self.shape_first.setdefault(shape, [])
        if len(first) < KEEP:
            first.append(location)
        if "label" in row and self.job.method == "classification":
            self.labels[row["label"]] += 1
        self.rows += 1
        if self.first is None:
            self.first = (location, row)
        k = self.job.sample
        if k:
            if len(self.sample) < k:
                self.sample.append((location, row))
            else:  # reservoir sampling: every row had the same chance of being kept
                j = self._rng.randrange(self.rows)
                if j < k:
                    self.sample[j] = (location, row)
        return None

    def finish(self) -> dict:
        return {"rows": self.rows, "shapes": dict(self.shapes), "shape_first": self.shape_first,
                "labels": dict(self.labels), "first": self.first, "sample": self.sample}


@dataclass
class Job:
    """What every worker of one pass needs (inherited through fork; pickled once for spawned workers, so a sink
    and its `extra` must pickle: a tokenizer does, and carries its added tokens and chat template with it)."""

    name: str  # "train" or "eval": names the pass in progress reports
    shards: list
    fmt: str
    method: str
    columns: dict
    sink: type = Sink
    label_names: list = field(default_factory=list)
    sample: int = 0
    seed: int = 0
    extra: dict = field(default_factory=dict)  # what a sink subclass needs (tokenizer, options, output dir)


_JOB: Job | None = None
_COUNTERS = None
_STOP = threading.Event()


_BROKEN: BaseException | None = None  # a spawned worker's job that would not unpickle: its first task raises it


def start_method(procs: int, shards: int) -> str | None:
    """How the workers of a pass start: None (no workers: one shard or one process), "fork" or "spawn"."""
    if procs <= 1 or shards <= 1:
        return None
    methods = mp.get_all_start_methods()
    want = START if START != "auto" else ("spawn" if any(m in sys.modules for m in HEAVY) else "fork")
    return want if want in methods else ("spawn" if "spawn" in methods else None)


@contextlib.contextmanager
def _light_main(active: bool):
    """While spawned workers start, __main__ is an empty module: multiprocessing would otherwise import the
    parent's main module in each one (the engine's, 26 MiB; a user's script without a `__name__` guard would
    start the pool again from inside the worker, for ever). The job holds nothing of __main__ (it is pickled
    before this), so the workers need none of it."""
    if not active:
        yield
        return
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")  # no __spec__, no __file__: nothing to import
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _child_init(job: bytes | None = None, counters=None) -> None:
    global _JOB, _COUNTERS, _BROKEN
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the engine's handler only sets a flag: let terminate() work
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one process per core already; no thread pools on top
    if job is not None:  # spawned: the job comes pickled (a tokenizer imports its transformers module, not torch)
        _COUNTERS = counters
        try:
            _JOB = pickle.loads(job)  # trusted pickle: the bytes our own parent pickled, over the pool's pipe
        except BaseException as e:  # noqa: BLE001 - raised by the first task: an initializer that raises makes
            _BROKEN = e  # the pool start a new worker forever, and the parent would wait for ever


def _work(index: int) -> dict:
    if _BROKEN is not None:
        raise RuntimeError(f"a data worker could not read its job: {type(_BROKEN).__name__}: {_BROKEN}")
    job = _JOB
    sink = job.sink(job, index)
    log = ProblemLog(KEEP)
    n = 0
    for r in stream.rows(job.shards[index]):
        n += 1
        out, problem = convert_row(r, job.fmt, job.method, job.columns)
        if problem:
            log.add(problem)
        sink.raw = r.data  # the source row, for a sink that keeps one of its columns (data.order column:NAME)
        for row in out:
            problem = sink.add(r.location, row)
            if problem:
                log.add(problem)
        if n % TICK == 0:
            _COUNTERS[2 * index], _COUNTERS[2 * index + 1] = n, len(log)
            if _STOP.is_set():
                raise KeyboardInterrupt
    _COUNTERS[2 * index], _COUNTERS[2 * index + 1] = n, len(log)
    return {"source_rows": n, "problems": log.as_json(), **sink.finish()}


def run(job: Job, procs: int, progress=None, should_stop=None) -> list[dict]:
    """Every shard of the job through _work, in `procs` processes (start_method) when there is more than one
    shard; progress(rows_done=, rows_total=, invalid=, rows_per_s=) every PROGRESS_EVERY seconds."""
    global _JOB, _COUNTERS
    n = len(job.shards)
    start = start_method(procs, n)
    ctx = mp.get_context(start) if start else None
    _JOB, _COUNTERS = job, (ctx.Array("q", 2 * n, lock=False) if ctx else [0] * (2 * n))
    # spawned workers get the job pickled once: 0.2 MB with the bench's 8,000-token tokenizer (grows with vocabulary)
    initargs = (pickle.dumps(job), _COUNTERS) if start == "spawn" else ()
    _STOP.clear()
    total = sum(s.rows_hint for s in job.shards)
    t0, done = time.monotonic(), threading.Event()

    def report(final: bool = False):
        rows = sum(_COUNTERS[0::2])
        elapsed = max(1e-6, time.monotonic() - t0)
        progress(rows_done=rows, rows_total=total or None, invalid=sum(_COUNTERS[1::2]),
                 rows_per_s=round(rows / elapsed, 1), elapsed_s=round(elapsed, 1), final=final)

    def watch():
        while not done.wait(PROGRESS_EVERY):
            if should_stop and should_stop():
                _STOP.set()
            if progress:
                report()

    watcher = threading.Thread(target=watch, name="data-progress", daemon=True)
    watcher.start()
    try:
        if ctx is None:
            return [_work(i) for i in range(n)]
        if start == "fork":
            gc.freeze()  # forked workers' collector leaves the parent's objects alone: fewer pages copied on write
        before = set(mp.active_children())
        with _light_main(start == "spawn"):  # the workers start here, in the Pool's constructor
            pool = ctx.Pool(min(procs, n), initializer=_child_init, initargs=initargs)
        workers = set(mp.active_children()) - before
        with pool:
            pending = [pool.apply_async(_work, (i,)) for i in range(n)]
            results = []
            for item in pending:
                while True:
                    try:
                        results.append(item.get(timeout=0.25))
                        break
                    except mp.TimeoutError:
                        if _STOP.is_set():
                            pool.terminate()
                            raise KeyboardInterrupt from None
                        dead = next((w for w in workers if w.exitcode is not None), None)
                        if dead is not None:  # its shard is lost: the pool would start another worker and wait
                            pool.terminate()  # for that shard for ever
                            raise DataError(died(dead.exitcode, job.name)) from None
            return results
    finally:
        gc.unfreeze()
        done.set()
        watcher.join()
        if progress:
            report(final=True)
        _JOB = None


def died(code: int, name: str) -> str:
    """Why the pass stopped when one of its workers ended (a kill, the out-of-memory killer, a crash)."""
    if code == -signal.SIGKILL:
        why = "was killed (SIGKILL: out of memory? `dmesg` says)"
    elif code < 0:
        try:
            why = f"was stopped by {signal.Signals(-code).name}"
        except ValueError:
            why = f"was stopped by signal {-code}"
    else:
        why = f"ended with exit code {code}"
    return (f"a data worker of the {name} pass {why} before its shard was done; nothing was kept. Where memory is "
            "short, a lower data.num_proc runs fewer workers at once")


@dataclass
class Pass:
    """The merged outcome of one pass over a spec."""

    fmt: str
    source_rows: int
    rows: int  # method rows the sinks took
    log: ProblemLog
    shapes: Counter
    shape_first: dict
    labels: Counter
    parts: list[dict]

    @property
    def first(self):
        return next((p["first"] for p in self.parts if p.get("first")), None)


def detect(shards: list, d: dict, method: str, fmt: str | None = None) -> tuple[str, dict]:
    """The format (data.format, or detected on the first 400 rows as prepare does) and the column mapping."""
    columns = formats.parse_columns(d.get("columns"))
    if fmt is None:
        fmt = d.get("format", "auto")
        if fmt == "auto":
            fmt = formats.detect([Row(formats.remap(r.data, columns), r.location) if r.data else r
                                  for r in stream.head(shards)], method)
    convert.check_fit(fmt, method, d.get("train_on_chosen", False))
    return fmt, columns


def one_pass(name: str, spec, d: dict, method: str, procs: int, fmt: str | None = None, sink: type = Sink,
             progress=None, should_stop=None, **job) -> Pass:
    """Plan, detect and run one spec (train or eval) through `sink`; merges what the shards sent back."""
    shards = stream.plan(spec, d.get("split"), d.get("subset"), procs)
    if progress:
        progress(rows_done=0, rows_total=sum(s.rows_hint for s in shards) or None, invalid=0, rows_per_s=0.0,
                 elapsed_s=0.0, final=False)
    fmt, columns = detect(shards, d, method, fmt)
    parts = run(Job(name, shards, fmt, method, columns, sink, **job), procs, progress, should_stop)
    log, shapes, first, labels = ProblemLog(KEEP), Counter(), {}, Counter()
    for p in parts:
        log.merge(ProblemLog.from_json(p["problems"], KEEP))
        shapes.update(p["shapes"])
        labels.update(p["labels"])
        for shape, locs in p["shape_first"].items():
            first.setdefault(shape, []).extend(locs[:max(0, KEEP - len(first.get(shape, [])))])
    if not sum(p["source_rows"] for p in parts):
        raise DataError(f"{spec}: the data holds no rows")
    return Pass(fmt, sum(p["source_rows"] for p in parts), sum(p["rows"] for p in parts), log, shapes, first, labels,
                parts)


def odd_shapes(passes: list[Pass]) -> tuple[tuple | None, dict]:
    """The shape most rows have (over train and eval together, as one table must hold both) and, per other
    shape, (count, first locations): rows prepare.shape_problems refuses."""
    shapes: Counter = Counter()
    for p in passes:
        shapes.update(p.shapes)
    if len(shapes) <= 1:
        return (next(iter(shapes)) if shapes else None), {}
    main = shapes.most_common(1)[0][0]
    out = {}
    for p in passes:
        for shape, n in p.shapes.items():
            if shape != main:
                count, locs = out.get(shape, (0, []))
                out[shape] = (count + n, locs + p.shape_first.get(shape, []))
    return main, out


def shape_log(main: tuple, odd: dict) -> ProblemLog:
    log = ProblemLog(KEEP)
    for shape, (n, locs) in odd.items():
        log.add_counted("inconsistent shape", n, [Problem(loc, "inconsistent shape", shape_detail(shape, main))
                                                  for loc in locs])
    return log


def held_count(n: int, fraction: float, label_counts: Counter | None = None) -> int:
    """How many of n valid rows data.eval_fraction holds out (per label for classification), as split() does."""
    if fraction <= 0 or not n:
        return 0
    if label_counts:  # split() holds out round(count * fraction) of each label, at least one row in all
        return max(1, sum(round(c * fraction) for c in label_counts.values()))
    return max(1, round(n * fraction))
