"""Benchmark the data layer: preview latency on a 1 GiB JSONL, and full-statistics throughput on 1M rows.

    .venv/bin/python bench/inspect.py [--rows 1000000] [--chat-rows 20000] [--dir DIR] [--keep]

1. preview(): a 1 GiB JSONL is written (to --dir, default the system temp dir: a real disk), its pages
   are evicted from the page cache (posix_fadvise DONTNEED, this file only), then the first 20 rows are
   previewed: cold, then warm. The figure to compare is "well under a second".
2. report(): the whole inspection (read, validate, convert, tokenize, statistics) over a JSONL of --rows
   plain-text rows (sentences of ../shared/data/llamafactory/c4_demo.jsonl, cycled) with the tiny model's
   fast tokenizer, batched; then --chat-rows chat rows, which go through the chat template one by one.
Prints each figure and the ratios; figures depend on the machine and its load.
"""
from __future__ import annotations

import os
import sys

# This file is named like the stdlib's `inspect` and Python puts its folder first on sys.path: drop it there
# before anything (dataclasses, argparse) imports the real one.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse
import json
import re
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.data import inspect as insp  # noqa: E402
from engine.data.preview import preview  # noqa: E402

GIB = 1 << 30


def write_big(path: Path) -> int:
    line = json.dumps({"messages": [{"role": "user", "content": "word " * 40},
                                    {"role": "assistant", "content": "answer " * 60}]}) + "\n"
    block = (line * ((1 << 20) // len(line) + 1)).encode()[: 1 << 20]
    block = block[: block.rindex(b"\n") + 1]
    n = GIB // len(block) + 1
    with open(path, "wb") as f:
        for _ in range(n):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    return n * block.count(b"\n")


def evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def bench_preview(workdir: Path, keep: bool) -> None:
    path = workdir / "bench-1gib.jsonl"
    t = time.perf_counter()
    lines = write_big(path)
    print(f"wrote {path.stat().st_size / GIB:.2f} GiB ({lines:,} rows) in {time.perf_counter() - t:.1f} s")
    try:
        evict(path)
        t = time.perf_counter()
        p = preview(str(path), n=20)
        cold = time.perf_counter() - t
        warm = []
        for _ in range(20):
            t = time.perf_counter()
            preview(str(path), n=20)
            warm.append(time.perf_counter() - t)
        print(f"preview 20 rows of 1 GiB JSONL: cold {cold * 1000:.1f} ms, warm median {statistics.median(warm) * 1000:.2f} ms"
              f" (max {max(warm) * 1000:.2f} ms); estimated rows {p['estimated_rows']:,} vs {lines:,} "
              f"({abs(p['estimated_rows'] - lines) / lines:.2%} off)")
        print(f"ratio: cold preview / 1 s budget = {cold:.3f}")
    finally:
        if not keep:
            path.unlink()


def sentences(n: int) -> list[str]:
    src = ROOT.parent / "shared" / "data" / "llamafactory" / "c4_demo.jsonl"
    if src.exists():
        texts = [json.loads(x)["text"] for x in src.read_text().splitlines() if x.strip()]
        pool = [s.strip() for t in texts for s in re.split(r"(?<=[.!?])\s+", t) if len(s.strip()) > 20]
    else:
        pool = [f"sentence number {i} about nothing in particular, for the benchmark." for i in range(1000)]
    return [pool[i % len(pool)] for i in range(n)]


def bench_stats(workdir: Path, rows: int, chat_rows: int) -> None:
    from engine.demo.tinymodel import build_tiny_llama

    model = build_tiny_llama(workdir / "tiny")
    tok = insp.load_tokenizer(str(model))
    print(f"tokenizer: {type(tok).__name__} (fast: {tok.is_fast}); load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")
    text = workdir / "text.jsonl"
    with open(text, "w") as f:
        for s in sentences(rows):
            f.write(json.dumps({"text": s}) + "\n")
    mb = text.stat().st_size / 2**20
    t, c = time.perf_counter(), time.process_time()
    rep = insp.report(str(text), tokenizer=tok, max_length=128)
    dt, cpu = time.perf_counter() - t, time.process_time() - c
    text_rate = rows / dt
    print(f"report, {rows:,} text rows ({mb:.0f} MiB): {dt:.1f} s = {text_rate:,.0f} rows/s "
          f"(CPU {cpu:.1f} s = {rows / cpu:,.0f} rows per CPU-second); "
          f"median {rep['token_lengths']['median']} tokens, truncated {rep['truncated_fraction']:.1%}")
    t, c = time.perf_counter(), time.process_time()
    insp.report(str(text), tokenizer=None, max_length=128)
    dt0, cpu0 = time.perf_counter() - t, time.process_time() - c
    print(f"report without a tokenizer (read, validate, convert, char stats): {dt0:.1f} s = {rows / dt0:,.0f} rows/s "
          f"(CPU {cpu0:.1f} s = {rows / cpu0:,.0f} rows per CPU-second)")
    print(f"ratio: tokenizing share of the full report = {(dt - dt0) / dt:.2f}")
    chat = workdir / "chat.jsonl"
    with open(chat, "w") as f:
        for i, s in enumerate(sentences(chat_rows)):
            f.write(json.dumps({"messages": [{"role": "user", "content": f"say something ({i})"},
                                             {"role": "assistant", "content": s}]}) + "\n")
    t, c = time.perf_counter(), time.process_time()
    insp.report(str(chat), tokenizer=tok, max_length=128)
    dt, cpu = time.perf_counter() - t, time.process_time() - c
    print(f"report, {chat_rows:,} chat rows (chat template per row, assistant masks): {dt:.1f} s = "
          f"{chat_rows / dt:,.0f} rows/s (CPU {cpu:.1f} s = {chat_rows / cpu:,.0f} rows per CPU-second)")
    print(f"ratio: text rows/s / chat rows/s = {text_rate / (chat_rows / dt):.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--chat-rows", type=int, default=20_000)
    ap.add_argument("--dir", default=None, help="where to write the 1 GiB file (default: the temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the 1 GiB file")
    ap.add_argument("--skip-preview", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        if not args.skip_preview:
            bench_preview(Path(d), args.keep)
        bench_stats(Path(d), args.rows, args.chat_rows)


if __name__ == "__main__":
    main()
