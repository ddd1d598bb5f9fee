#!/usr/bin/env python
"""Overhead and parity of tunebench against the plain TRL script, on identical settings.

    .venv/bin/python bench/overhead.py [--pairs 3] [--steps 50] [--model DIR] [--hidden 256 --layers 4]

Builds a small Llama-style model (random weights, tokenizer trained on the data) unless --model is given,
makes a messages JSONL from ../shared/data/llamafactory/alpaca_en_demo.json, then alternates
`../shared/bench/plain_trl_sft.py` and `tunebench train` (LoRA r 8, alpha 16, dropout 0, all-linear,
lr 1e-3 linear, no warmup, batch 8, max_length 256 cut at the right as TRL does (data.truncation: right), fp32,
no checkpointing, loss on all tokens, seed 0).
Prints each run's tokens/s, the median tokens/s ratio (goal >= 0.97) and the largest per-step loss
difference between the two (goal < 1e-4).
"""
from __future__ import annotations

import os
import sys

# bench/inspect.py is named like the stdlib module and Python puts this folder first on sys.path: drop it.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEER = ROOT.parent / "shared" / "bench" / "plain_trl_sft.py"
ALPACA = ROOT.parent / "shared" / "data" / "llamafactory" / "alpaca_en_demo.json"


def make_data(out: Path) -> list[str]:
    rows = json.loads(ALPACA.read_text(encoding="utf-8"))
    texts = []
    with open(out, "w", encoding="utf-8") as f:
        for r in rows:  # the same conversion as the peer's Alpaca reader
            prompt = r["instruction"] + (("\n\n" + r["input"]) if r.get("input") else "")
            f.write(json.dumps({"messages": [{"role": "user", "content": prompt},
                                             {"role": "assistant", "content": r["output"]}]}) + "\n")
            texts += [prompt, r["output"]]
    return texts


def run_peer(model: Path, data: Path, steps: int) -> dict:
    cmd = [sys.executable, str(PEER), "--model", str(model), "--data", str(data), "--steps", str(steps),
           "--batch-size", "8", "--max-length", "256", "--lr", "1e-3", "--lora-r", "8", "--seed", "0",
           "--device", "cpu"]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if not line:
        raise SystemExit(f"the peer failed:\n{out.stderr[-3000:]}")
    r = json.loads(line[-1][7:])
    return {"tokens_per_s": r["tokens_per_s"], "losses": r["losses"], "num_tokens": r["num_tokens"],
            "train_wall_s": r["train_wall_s"]}


def run_tunebench(model: Path, data: Path, steps: int, work: Path) -> dict:
    cfg = work / "overhead.yaml"
    cfg.write_text(f"""
model: {{name_or_path: {model}, dtype: float32}}
adapter: {{kind: lora, r: 8, alpha: 16, dropout: 0.0, target_modules: all-linear}}
data: {{train: {data}, max_length: 256, loss_on: all, packing: false, truncation: right}}
training:
  max_steps: {steps}
  batch_size: 8
  learning_rate: 1e-3
  lr_scheduler: linear
  warmup_steps: 0
  precision: fp32
  gradient_checkpointing: "false"
  seed: 0
  logging_steps: 1
hardware: {{device: cpu}}
""")
    runs = work / "runs"
    env = {**os.environ, "TUNEBENCH_RUNS_DIR": str(runs), "TUNEBENCH_CACHE_DIR": str(work / "cache"),
           "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-m", "tunebench", "train", str(cfg), "--detach"], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"tunebench failed to start:\n{out.stderr}")
    run_dir = runs / out.stdout.strip().splitlines()[-1]
    sys.path.insert(0, str(ROOT))
    from engine.rundir.events import read_events
    from engine.rundir.runs import Run

    run = Run(run_dir)
    while run.state() in ("created", "starting", "running", "stopping"):
        time.sleep(0.5)
    if run.status()["state"] != "completed":
        raise SystemExit(f"tunebench run {run.id} {run.state()}: {run.status().get('error')}")
    events = read_events(run.events_path)
    (summary,) = [e for e in events if e["kind"] == "summary"]
    losses = [round(e["loss"], 6) for e in events if e["kind"] == "metrics"]
    return {"tokens_per_s": summary["tokens_per_s"], "losses": losses, "num_tokens": summary["num_tokens"],
            "train_wall_s": summary["train_wall_s"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--model", type=Path, help="a local model directory (default: build a small Llama)")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    a = p.parse_args()
    if not PEER.exists() or not ALPACA.exists():
        print("bench/overhead.py needs ../shared (the peer script and the Alpaca data)")
        return 1
    with tempfile.TemporaryDirectory(prefix="tb-overhead-") as tmp:
        work = Path(tmp)
        data = work / "alpaca_messages.jsonl"
        texts = make_data(data)
        model = a.model
        if model is None:
            sys.path.insert(0, str(ROOT))
            from engine.demo.tinymodel import build_tiny_llama

            model = build_tiny_llama(work / "model", texts, vocab_size=2000, hidden=a.hidden, layers=a.layers,
                                     heads=8, kv_heads=4)
        print(f"model {model}, data {data} ({len(texts) // 2} rows), {a.steps} steps, {a.pairs} pairs, "
              f"{os.cpu_count()} CPUs")
        ratios, diffs = [], []
        for i in range(a.pairs):
            # alternate who goes first so drift in machine load does not favour one side
            order = ("peer", "tunebench") if i % 2 == 0 else ("tunebench", "peer")
            res = {}
            for who in order:
                res[who] = run_peer(model, data, a.steps) if who == "peer" else run_tunebench(model, data, a.steps, work)
                print(f"pair {i + 1} {who:10} {res[who]['tokens_per_s']:9.1f} tokens/s  "
                      f"{res[who]['num_tokens']} tokens in {res[who]['train_wall_s']:.2f} s", flush=True)
            ratio = res["tunebench"]["tokens_per_s"] / res["peer"]["tokens_per_s"]
            lp, lt = res["peer"]["losses"], res["tunebench"]["losses"]
            if len(lp) != len(lt):
                raise SystemExit(f"step counts differ: peer {len(lp)}, tunebench {len(lt)}")
            diff = max(abs(x - y) for x, y in zip(lp, lt))
            ratios.append(ratio)
            diffs.append(diff)
            print(f"pair {i + 1} ratio {ratio:.3f}  max loss diff {diff:.2e}  (same token count: "
                  f"{res['peer']['num_tokens'] == res['tunebench']['num_tokens']})", flush=True)
        print(f"RESULT median tokens/s ratio (tunebench / plain TRL): {statistics.median(ratios):.3f} (goal >= 0.97)")
        print(f"RESULT largest per-step loss difference: {max(diffs):.2e} (goal < 1e-4)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
