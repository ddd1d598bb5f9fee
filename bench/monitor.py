"""Monitor cost: attach time and resident memory for 10k/100k/1M-event runs, CPU spent following a fast run.

Usage: .venv/bin/python bench/monitor.py [--sizes 10000,100000,1000000] [--follow-seconds 30]
Each measurement runs the real workbench (headless, Textual's Pilot) in a fresh process, so the figures
include Textual itself. Prints a table of figures and the ratios that matter (time per 100k events).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GIB = 1 << 30


def make_run(runs_dir: Path, name: str = "bench") -> Path:
    """A run directory (config.yaml, status.json) as `tunebench train` leaves it, state completed."""
    from engine import config as cfgmod
    from engine.runs import create_run

    cfg = cfgmod.defaults()
    cfg["model"]["name_or_path"] = "bench/tiny-llama"
    cfg["data"]["train"] = "bench.jsonl"
    cfg["name"] = name
    run = create_run(runs_dir, cfg)
    return run.path


def event_lines(n_events: int, t0: float, steps_per_s: float = 20.0, start_seq: int = 0, start_step: int = 1,
                gpus: int = 1, pref: bool = False, seed: int = 0):
    """Yield (seconds since t0, JSON line) of a realistic run: a metrics event each step, telemetry each
    second, an eval every 500 steps and a checkpoint every 2000, like the engine writes them."""
    rnd = random.Random(seed)
    seq, step, t, next_tele = start_seq, start_step, 0.0, 0.0
    pending: list[dict] = []  # eval and checkpoint events that follow a step's metrics
    while seq < start_seq + n_events:
        now = round(t0 + t, 3)
        if pending:
            ev = {"seq": seq, "time": now, **pending.pop(0)}
        elif t >= next_tele:
            ev = {"seq": seq, "time": now, "kind": "telemetry", "rss": 2_400_000_000 + step * 10,
                  "cpu_percent": 100.0 + rnd.random(), "ram_used": 9 * GIB, "ram_total": 24 * GIB,
                  "gpus": [{"index": i, "name": "NVIDIA H100 80GB HBM3", "mem_used": int(40 * GIB + rnd.random() * GIB),
                            "mem_total": 80 * GIB, "util": rnd.randint(90, 100), "power_w": 500 + rnd.random() * 100,
                            "temp_c": 60 + rnd.randint(0, 10), "proc_mem": int(38 * GIB)} for i in range(gpus)],
                  "torch_allocated": int(30 * GIB), "torch_reserved": int(36 * GIB), "torch_peak": int(35 * GIB)}
            next_tele += 1.0
        else:
            loss = 1.0 + 4 / math.sqrt(step) + rnd.random() * 0.3
            ev = {"seq": seq, "time": now, "kind": "metrics", "step": step, "epoch": step / 10000,
                  "entropy": 2.0 + rnd.random(), "learning_rate": 2e-4 * (1 - step / 1e7), "mean_token_accuracy": 0.6,
                  "grad_norm": 0.5 + rnd.random(), "loss": loss, "num_tokens": 4096.0 * step, "tokens_per_s": 81920.0}
            if pref:
                ev.update({"rewards/chosen": 0.1 * math.log(step + 1), "rewards/rejected": -0.1 * math.log(step + 1),
                           "rewards/margins": 0.2 * math.log(step + 1), "rewards/accuracies": 0.8})
            if step % 500 == 0:
                pending.append({"kind": "eval", "step": step, "loss": 1.2 + 3 / math.sqrt(step), "runtime": 3.2,
                                "samples_per_second": 40.0})
            if step % 2000 == 0:
                pending.append({"kind": "checkpoint", "step": step, "path": f"checkpoints/checkpoint-{step}",
                                "size_bytes": 1 << 26, "loss": loss, "eval_loss": 1.1})
            step += 1
            t += 1.0 / steps_per_s
        yield t, json.dumps(ev, separators=(",", ":")) + "\n"
        seq += 1


def write_history(run_dir: Path, n_events: int, **kw) -> int:
    """Write n_events to events.jsonl at once; status.json says completed at the last step."""
    from engine.runs import Run

    t0 = time.time() - n_events / 20
    last_step = 0
    with open(run_dir / "events.jsonl", "w") as f:
        buf = []
        for _t, line in event_lines(n_events, t0, **kw):
            buf.append(line)
            if len(buf) >= 10000:
                f.write("".join(buf))
                buf = []
        f.write("".join(buf))
    with open(run_dir / "events.jsonl", "rb") as f:
        f.seek(-4096, 2)
        for line in reversed(f.read().splitlines()[1:]):
            ev = json.loads(line)
            if ev.get("kind") == "metrics":
                last_step = ev["step"]
                break
    Run(run_dir).write_status(state="completed", started=t0, ended=time.time(), step=last_step,
                              max_steps=last_step, last_loss=1.0)
    return last_step
