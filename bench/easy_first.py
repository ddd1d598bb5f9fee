"""What data.order easy_first costs before the first step, and what its cache saves (issue 18).

    OMP_NUM_THREADS=1 .venv/bin/python bench/easy_first.py [--max-length 256] [--data DIR]

Builds the sft trainer twice (the engine's own sft.build, no run directory) on real data: LLaMA-Factory's
alpaca_en_demo.json (999 rows) mixed 3:1 with c4_demo.jsonl (300 rows) from ../shared/data/llamafactory, with a
tiny Llama (engine.demo.tinymodel) on the CPU, in a fresh cache directory. The first build prepares the data and
scores every row (one no-grad forward pass); the second reads both from the cache. Prints each build's time and
the scoring record (rows, seconds, cached, min / median / max loss).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # the project, not bench/ (bench/inspect.py shadows the stdlib's)
DATA = ROOT.parent / "shared" / "data" / "llamafactory"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--data", type=Path, default=DATA, help="the llamafactory data directory")
    a = p.parse_args()
    data = a.data
    if not data.is_dir():
        print(f"{data} is absent: this benchmark reads the shared real datasets (--data DIR)", file=sys.stderr)
        return 2
    os.environ["TUNEBENCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="easy-first-cache-")
    from engine.demo.tinymodel import build_tiny_llama
    from engine.training import modeling
    from engine.training.methods import sft
    from tests.methods_support import config

    work = Path(tempfile.mkdtemp(prefix="easy-first-"))
    model = build_tiny_llama(work / "model")
    cfg = config(model, data / "alpaca_en_demo.json", data={
        "train": [f"{data / 'alpaca_en_demo.json'}:3", f"{data / 'c4_demo.jsonl'}:1"], "order": "easy_first",
        "curriculum_epochs": 1, "max_length": a.max_length})
    for attempt in ("first", "cached"):
        t0 = time.perf_counter()
        job = {"trainer_dir": str(work / f"trainer-{attempt}")}
        sft.build(cfg, modeling.resolve(cfg), job, [])
        print(f"{attempt}: build {time.perf_counter() - t0:.1f} s, {job['tokens']:,} prepared tokens, "
              f"scoring {job['scoring']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
