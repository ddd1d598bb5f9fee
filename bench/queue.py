#!/usr/bin/env python
"""How many trials of a sweep the scheduler runs at once, by the memory estimate, and what they measure together.

    .venv/bin/python bench/queue.py                      # the plan: a 0.5B LoRA (sft-lora-small) on known GPUs
    .venv/bin/python bench/queue.py --run 4 [--steps 30] # on a visible GPU: a real 4-trial grid through the queue

The plan needs no GPU: a config.json in Qwen2.5-0.5B's shape (bench/gpu.py's SHAPES) gives each trial's
predicted peak, and engine.scheduling.room.decide says how many start together on each GPU of the table (all
of its memory free but an idle 0.5 GiB). --run builds that model with random weights on the visible GPU, queues a
grid of N learning rates with `tunebench sweep`, lets the scheduler run it while NVML is sampled every 50 ms,
and prints the scheduler's decisions, how many trials ran at once, and the measured peak (device used minus the
idle baseline) beside the sum of the predicted peaks of the trials that overlapped.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# bench/ holds inspect.py, which would shadow the standard library's for everything imported below
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from bench.gpu import SHAPES, NvmlPeak, build_model, make_data  # noqa: E402
from engine import config as cfgmod  # noqa: E402
from engine.system import gpus as gpumod  # noqa: E402

GIB = 2**30
PRESET = ROOT / "presets" / "sft-lora-small.yaml"


def shape_dir(out: Path) -> Path:
    """A model directory with only config.json in the 0.5B shape: all the estimate reads."""
    h, i, layers, heads, kv, vocab, tied = SHAPES["0.5b"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": h, "intermediate_size": i,
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv, "vocab_size": vocab,
        "tie_word_embeddings": tied, "max_position_embeddings": 4096}))
    return out


def plan(model: Path, n: int = 64) -> list[str]:
    from engine.scheduling.room import Device, Load, Machine, decide, predicted_peak

    cfg = cfgmod.load_config(PRESET, [f"model.name_or_path={model}", "data.train=x.jsonl"])
    lines = ["| GPU | memory | predicted peak of one trial | trials started together |", "| --- | --- | --- | --- |"]
    for key in ("H200", "H100", "A100-40GB", "L4", "RTX4090"):
        gpu = gpumod.find_gpu(key)
        machine = Machine(Device("cpu", 64 * GIB, 8 * GIB), Device("cuda", gpu.memory, GIB // 2, gpu.key))
        peak = predicted_peak(cfg, "cuda", machine)
        got = decide([Load(f"t{k}", "cuda", peak) for k in range(n)], [], machine)
        started = sum(d["action"] == "start" for d in got)
        lines.append(f"| {gpu.key} | {gpu.memory / GIB:.0f} GiB | {peak / GIB:.2f} GiB | {started} |")
    return lines


def run(n: int, steps: int, work: Path) -> list[str]:
    from engine.rundir.runs import list_runs
    from engine.scheduling.control import running_scheduler
    from engine.system.telemetry import Nvml

    devices = Nvml().devices()
    if not devices:
        return ["no GPU visible: --run needs one"]
    import yaml

    data = work / "alpaca.jsonl"
    model = build_model("0.5b", work / "model-0.5b", make_data(data), cuda=True)
    cfg = yaml.safe_load(PRESET.read_text())
    cfg["model"]["name_or_path"] = str(model)
    cfg["data"].update(train=str(data), max_length=512)
    cfg["training"].update(max_steps=steps, eval_steps=max(1, steps // 3), save_steps=0, epochs=1)
    (work / "c.yaml").write_text(yaml.safe_dump(cfg))
    runs = work / "runs"
    env_cmd = [sys.executable, "-m", "tunebench", "--runs-dir", str(runs)]
    rates = ",".join(f"{1e-4 * (k + 1):g}" for k in range(n))
    with NvmlPeak() as nv:
        subprocess.run(env_cmd + ["sweep", str(work / "c.yaml"), "--grid", f"training.learning_rate={rates}",
                                  "--pruner", "none", "--name", "bench"], check=True, cwd=ROOT)
        while running_scheduler(runs) or any(r.state() in ("queued", "starting", "running", "stopping")
                                             for r in list_runs(runs)):
            time.sleep(1)  # the detached scheduler `tunebench sweep` started runs the grid
    trials = [r.status() for r in list_runs(runs)]
    spans = sorted((s["started"], s["ended"], s.get("predicted_peak_bytes") or 0) for s in trials if s.get("started"))
    most, most_peak = 0, 0
    for t, _, _ in spans:
        live = [p for a, b, p in spans if a <= t < b]
        if len(live) > most:
            most, most_peak = len(live), sum(live)
    lines = [f"device {devices[0]['name']}, {devices[0]['mem_total'] / GIB:.0f} GiB; {n} trials, {steps} steps"]
    for ln in (runs / "queue" / "decisions.jsonl").read_text().splitlines():
        d = json.loads(ln)
        lines.append(f"  {d['action']:5} {d['run'][-12:]}  peak {d['peak_bytes'] / GIB:.2f} GiB  {d['reason']}")
    lines.append(f"at most {most} trials at once; their predicted peaks add to {most_peak / GIB:.2f} GiB; measured "
                 f"(NVML, device used minus idle) {nv.bytes / GIB:.2f} GiB")
    for s in trials:
        sm = s.get("summary") or {}
        lines.append(f"  {s.get('state'):9} predicted {(s.get('predicted_peak_bytes') or 0) / GIB:.2f} GiB, torch reserved "
                     f"{(sm.get('peak_cuda_reserved_bytes') or 0) / GIB:.2f} GiB, {sm.get('tokens_per_s')} tokens/s")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench/queue.py")
    p.add_argument("--run", type=int, default=0, metavar="N", help="run an N-trial grid on the visible GPU")
    p.add_argument("--steps", type=int, default=30)
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print("\n".join(plan(shape_dir(work / "shape-0.5b"))))
        if a.run:
            print("\n".join(run(a.run, a.steps, work)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
