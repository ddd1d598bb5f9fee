#!/usr/bin/env python
"""The GPU benchmark's harness on this CPU with tiny models: `.venv/bin/python bench/cpu.py [--steps 12] [--pairs 2]`.

Same runs, same table as bench/gpu.py --cpu (tunebench defaults against plain TRL defaults, tokens/s, model
GFLOP/s, peak RSS, the estimate and its error), appended to bench/RESULTS.md.
"""
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # bench/inspect.py shadows the stdlib's

if __name__ == "__main__":
    spec = importlib.util.spec_from_file_location("bench_gpu", HERE / "gpu.py")
    gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu)
    sys.exit(gpu.main(["--cpu", *sys.argv[1:]]))
