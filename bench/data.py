#!/usr/bin/env python
"""Datasets at the size users bring: tunebench's data preparation against plain TRL on `datasets`.

    .venv/bin/python bench/data.py [--rows 100000 1000000] [--pairs 1] [--dir DIR] [--keep]

For each size, a chat JSONL of that many rows is generated (synthetic words, two turns, ~0.9 KB a row, as
Alpaca), and a tiny Llama with a BPE tokenizer trained on it (8,000 tokens) is built once. Then, alternating
who goes first in each pair, two cold starts are timed as a user would run them:

  peer       plain TRL as its docs write it: `load_dataset("json", data_files=...)` and SFTTrainer with its
             defaults (one process, its own tokenisation and four map passes, datasets' cache in a fresh dir)
  tunebench  `tunebench train CONFIG --detach` with a fresh cache dir: the preflight check, the engine's one
             parallel pass (validate, convert, tokenise, write Arrow) and training

Both train LoRA r 8 on all tokens (TRL's default; tunebench data.loss_on: all), max_length 512 cut at the
right (TRL's default; data.truncation: right), batch 8, one step. After each pair, tunebench runs again on the
same data and cache: the second run (a resume, the next experiment) reuses the prepared data.

Measured: seconds from the command's start to the end of the first training step (wall clock), and peak memory
of the whole process tree (the CLI, the engine and its data workers; the peer and any child), sampled every
0.25 s: the sum of RSS and the sum of PSS (RSS double-counts pages forked workers share with the engine; PSS
splits them, so it is the memory the machine gives). Prints each run and the ratios tunebench / peer.
"""
from __future__ import annotations

import os
import sys

# bench/inspect.py is named like the stdlib module and Python puts this folder first on sys.path: drop it.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import json
import random
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent

PEER = '''
import json, sys, time
T0 = float(sys.argv[3])
from datasets import load_dataset
from peft import LoraConfig
from transformers import TrainerCallback
from trl import SFTConfig, SFTTrainer

class FirstStep(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        if state.global_step == 1:
            print("FIRST_STEP " + json.dumps({"t": time.time()}), flush=True)

dataset = load_dataset("json", data_files=sys.argv[2], split="train")
trainer = SFTTrainer(
    model=sys.argv[1],
    train_dataset=dataset,
    args=SFTConfig(output_dir=sys.argv[4], max_steps=1, per_device_train_batch_size=8, max_length=512,
                   learning_rate=1e-3, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True,
                   disable_tqdm=True),
    peft_config=LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"),
    callbacks=[FirstStep()],
)
trainer.train()
'''

SYLLABLES = ["ka", "lo", "mi", "ra", "te", "su", "no", "vi", "pe", "da", "zu", "shi", "mo", "re", "tal", "ven", "or",
             "an", "is", "ul", "ber", "gon", "fi", "ex", "qua", "ti", "ly", "ness", "ing", "ed"]


def vocabulary(n: int = 3000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = set()
    while len(words) < n:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.choice((1, 2, 2, 3, 3, 4)))))
    return sorted(words)


def generate(path: Path, rows: int, seed: int = 0) -> int:
    """A chat JSONL of `rows` rows: a user turn of 10-90 words and an answer of 20-200 (Zipf-like word use)."""
    rng = random.Random(seed)
    words = vocabulary()
    weights = [1 / (i + 1) for i in range(len(words))]
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(rows):
            q = " ".join(rng.choices(words, weights, k=rng.randint(10, 90)))
            a = " ".join(rng.choices(words, weights, k=rng.randint(20, 200)))
            f.write(json.dumps({"messages": [{"role": "user", "content": q.capitalize() + "?"},
                                             {"role": "assistant", "content": a.capitalize() + "."}]}) + "\n")
    return path.stat().st_size


class TreeMemory:
    """Peak of the summed RSS and PSS of a set of processes and their children, sampled on a fixed schedule."""

    def __init__(self, match, every: float = 0.25):
        self.match, self.every = match, every
        self.rss = self.pss = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _procs(self):
        roots = [p for p in psutil.process_iter(["pid", "cmdline"]) if self.match(p.info["cmdline"] or [])]
        seen = {}
        for r in roots:
            for p in [r, *r.children(recursive=True)]:
                seen[p.pid] = p
        return seen.values()

    def _run(self):
        t0 = time.monotonic()
        while not self._stop.wait(self.every):
            rss = pss = 0
            now = []
            for p in self._procs():
                try:
                    m = p.memory_full_info()
                    rss, pss = rss + m.rss, pss + m.pss
                    now.append((role(p), m.rss, m.pss))
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            if rss > self.rss:  # what each process held at the peak: which one to make smaller
                self.at_peak = (round(time.monotonic() - t0, 1), sorted(now, key=lambda x: -x[1]))
            self.rss, self.pss = max(self.rss, rss), max(self.pss, pss)

    def stop(self) -> dict:
        self._stop.set()
        self._t.join()
        return {"peak_rss": self.rss, "peak_pss": self.pss, "at_peak": getattr(self, "at_peak", None)}


def role(p: psutil.Process) -> str:
    """A short name for a process of the tree: the CLI, the engine, a data worker (forked: the engine's command
    line; spawned: multiprocessing's), the peer."""
    cmd = " ".join(p.cmdline())
    if "multiprocessing" in cmd:
        return "resource tracker" if "resource_tracker" in cmd else "data worker"
    if "engine.worker" in cmd:
        parent = p.parent()
        return "data worker" if parent and "engine.worker" in " ".join(parent.cmdline()) else "engine"
    if "peer.py" in cmd:
        return "peer"
    return "cli" if "tunebench" in cmd else cmd[:40]


def run_peer(model: Path, data: Path, work: Path) -> dict:
    script = work / "peer.py"
    script.write_text(PEER)
    cache = work / "hf-datasets-cache"
    shutil.rmtree(cache, ignore_errors=True)
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache), "CUDA_VISIBLE_DEVICES": ""}
    t0 = time.time()
    mem = TreeMemory(lambda cmd: str(script) in cmd)
    out = subprocess.run([sys.executable, str(script), str(model), str(data), str(t0), str(work / "peer-out")],
                         capture_output=True, text=True, env=env)
    peak = mem.stop()
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("FIRST_STEP ")]
    if not line:
        raise SystemExit(f"the peer failed:\n{out.stderr[-3000:]}")
    return {"first_step_s": json.loads(line[-1][11:])["t"] - t0, **peak}


def run_tunebench(model: Path, data: Path, work: Path, cache: Path, tag: str) -> dict:
    cfg = work / "tunebench.yaml"
    cfg.write_text(f"""
model: {{name_or_path: {model}}}
adapter: {{kind: lora, r: 8, alpha: 16, dropout: 0.0, target_modules: all-linear}}
data: {{train: {data}, max_length: 512, loss_on: all, truncation: right}}
training: {{max_steps: 1, batch_size: 8, learning_rate: 1e-3, logging_steps: 1}}
hardware: {{device: cpu}}
""")
    runs = work / f"runs-{tag}"
    env = {**os.environ, "TUNEBENCH_RUNS_DIR": str(runs), "TUNEBENCH_CACHE_DIR": str(cache),
           "CUDA_VISIBLE_DEVICES": ""}
    t0 = time.time()
    mem = TreeMemory(lambda cmd: str(cfg) in cmd or any(str(runs) in c for c in cmd))
    out = subprocess.run([sys.executable, "-m", "tunebench", "train", str(cfg), "--detach"], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    if out.returncode:
        mem.stop()
        raise SystemExit(f"tunebench failed to start:\n{out.stderr}")
    t_cli = time.time() - t0
    sys.path.insert(0, str(ROOT))
    from engine.rundir.events import read_events
    from engine.rundir.runs import Run

    run = Run(runs / out.stdout.strip().splitlines()[-1])
    while run.state() in ("created", "starting", "running", "stopping"):
        time.sleep(0.25)
    peak = mem.stop()
    if run.status()["state"] != "completed":
        raise SystemExit(f"tunebench run {run.id} {run.state()}: {run.status().get('error')}")
    events = read_events(run.events_path)
    first = next(e for e in events if e["kind"] == "metrics")
    report = next(e for e in events if e["kind"] == "data" and "train_rows" in e)
    return {"first_step_s": first["time"] - t0, "cli_s": t_cli, "prepare_s": report.get("prepare_s"),
            "cached": all((report.get("cache") or {}).values()), **peak}


def fmt(r: dict) -> str:
    extra = f", preflight+launch {r['cli_s']:.1f} s, preparation {r['prepare_s']:.1f} s" if "cli_s" in r else ""
    peak = ""
    if r.get("at_peak"):
        at, procs = r["at_peak"]
        peak = f"\n      at the peak ({at} s in): " + ", ".join(f"{n} {rss / 2**20:.0f}/{pss / 2**20:.0f}" for n, rss, pss in procs)
        peak += " MiB (RSS/PSS)"
    return (f"first step {r['first_step_s']:7.1f} s, peak RSS {r['peak_rss'] / 2**30:5.2f} GiB, "
            f"PSS {r['peak_pss'] / 2**30:5.2f} GiB{extra}{peak}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--pairs", type=int, default=1)
    p.add_argument("--dir", type=Path, help="where to write the data (default: the system temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the generated files")
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tb-data-", dir=a.dir))
    sys.path.insert(0, str(ROOT))
    from engine.demo.tinymodel import build_tiny_llama

    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; work in {work}", flush=True)
    try:
        sample = work / "sample.jsonl"
        generate(sample, 20_000, seed=1)
        texts = [m["content"] for line in sample.read_text().splitlines() for m in json.loads(line)["messages"]]
        model = build_tiny_llama(work / "model", texts, vocab_size=8000, hidden=64, layers=2)
        for rows in a.rows:
            data = work / f"chat-{rows}.jsonl"
            t = time.time()
            size = generate(data, rows)
            print(f"\n{rows:,} rows, {size / 2**20:.0f} MiB (generated in {time.time() - t:.0f} s)", flush=True)
            results = {"peer": [], "tunebench": [], "second": []}
            for i in range(a.pairs):
                order = ("peer", "tunebench") if i % 2 == 0 else ("tunebench", "peer")
                cache = work / f"cache-{rows}-{i}"
                for who in order:
                    r = run_peer(model, data, work) if who == "peer" else run_tunebench(model, data, work, cache,
                                                                                       f"{rows}-{i}")
                    results[who].append(r)
                    print(f"  pair {i + 1} {who:9} {fmt(r)}", flush=True)
                r = run_tunebench(model, data, work, cache, f"{rows}-{i}-again")
                results["second"].append(r)
                print(f"  pair {i + 1} {'again':9} {fmt(r)} (cache used: {r['cached']})", flush=True)
                shutil.rmtree(cache, ignore_errors=True)
            med = {k: {m: statistics.median(x[m] for x in v) for m in ("first_step_s", "peak_rss", "peak_pss")}
                   for k, v in results.items()}
            first_prep = statistics.median(x["cli_s"] + x["prepare_s"] for x in results["tunebench"])
            again_prep = statistics.median(x["cli_s"] + x["prepare_s"] for x in results["second"])
            print(f"  ratios tunebench / peer: time to first step {med['tunebench']['first_step_s'] / med['peer']['first_step_s']:.2f}x, "
                  f"peak RSS {med['tunebench']['peak_rss'] / med['peer']['peak_rss']:.2f}x, "
                  f"peak PSS {med['tunebench']['peak_pss'] / med['peer']['peak_pss']:.2f}x")
            print(f"  second run: data ready in {again_prep:.1f} s (preflight + preparation) = "
                  f"{again_prep / first_prep:.1%} of the first run's {first_prep:.1f} s; first step at "
                  f"{med['second']['first_step_s']:.1f} s", flush=True)
            data.unlink()
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
