"""Forgetting at equal task loss: plain SFT against layer-wise learning rates and label smoothing (issue 18).

    .venv/bin/python bench/forgetting.py [--out DIR] [--steps N] [--runs plain,decay,smooth,both] [--base CKPT] [--data DIR] [--set KEY=VALUE]
    .venv/bin/python bench/forgetting.py --report DIR [DIR ...]   # runs made in parallel, one table

A real check on real text at toy size, every run a real `tunebench train`:
1. a tiny Llama (4 layers, hidden 128, a BPE tokenizer trained on the data) is "pretrained" on 250 C4 rows
   (../shared/data/llamafactory/c4_demo.jsonl): that is the general ability there is to lose;
2. from that checkpoint, full fine-tuning on Alpaca instructions (alpaca_en_demo.json, 600 train / 100 eval
   rows), with the forgetting watch on the 50 held-out C4 rows (data.general_eval): plain SFT, then
   training.layer_lr_decay, training.label_smoothing, and both;
3. each run's eval events give (task eval loss, general loss) pairs; the general loss is read at the task loss
   every run reaches (the worst of the runs' best), linearly interpolated between evaluations.
Lower general loss at that task loss = less forgetting for the same task gain. Times depend on the CPU's load.
"""
from __future__ import annotations

import os
import sys

# Run as `python bench/forgetting.py`, bench/ is first on sys.path and bench/inspect.py would shadow the standard
# library's inspect: drop it before anything imports it.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402 - after the sys.path fix above
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "llamafactory"
VARIANTS = {"plain": [], "decay": ["training.layer_lr_decay=0.6"], "smooth": ["training.label_smoothing=0.1"],
            "both": ["training.layer_lr_decay=0.6", "training.label_smoothing=0.1"]}


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def prepare(out: Path, data: Path) -> dict:
    from engine.demo.tinymodel import build_tiny_llama

    c4 = [json.loads(line) for line in (data / "c4_demo.jsonl").read_text().splitlines() if line.strip()]
    alpaca = json.loads((data / "alpaca_en_demo.json").read_text())
    texts = [r["text"] for r in c4] + [r["instruction"] + " " + r["input"] + " " + r["output"] for r in alpaca]
    model = build_tiny_llama(out / "random", texts, vocab_size=2048, hidden=128, layers=4, heads=4, kv_heads=2)
    return {"model": model, "pretrain": write_jsonl(out / "c4_train.jsonl", c4[:250]),
            "general": write_jsonl(out / "c4_general.jsonl", c4[250:300]),
            "task": write_jsonl(out / "alpaca_train.jsonl", alpaca[:600]),
            "task_eval": write_jsonl(out / "alpaca_eval.jsonl", alpaca[600:700])}


def train(name: str, model: Path, data: Path, runs_dir: Path, overrides: list[str]) -> Path:
    sets = [f"name={name}", f"model.name_or_path={model}", f"data.train={data}", "adapter.kind=none",
            "data.max_length=128", "training.batch_size=8", "hardware.device=cpu", *overrides]
    config = runs_dir.parent / "base.yaml"
    config.write_text("method: sft\n")  # everything else from the defaults and the overrides, visible here
    cmd = [sys.executable, "-m", "tunebench", "train", str(config)] + [a for s in sets for a in ("--set", s)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "TUNEBENCH_RUNS_DIR": str(runs_dir)},
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{name}: tunebench train failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    run_dir = max((p for p in runs_dir.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    print(f"  {name}: {time.perf_counter() - t0:.0f} s, {run_dir.name}", file=sys.stderr)
    return run_dir


def curve(run_dir: Path) -> list[tuple[int, float, float]]:
    """(step, task eval loss, general loss) at each evaluation that has both."""
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines() if line.strip()]
    return [(e["step"], e.get("loss"), e["general_loss"]) for e in events
            if e["kind"] == "eval" and e.get("general_loss") is not None]  # step 0: the base, no task loss yet


def general_at(points: list[tuple[int, float, float]], target: float) -> float | None:
    """General loss where the task loss first falls to `target`, interpolated between two evaluations."""
    points = [pt for pt in points if pt[1] is not None]
    for (s0, t0, g0), (s1, t1, g1) in zip(points, points[1:]):
        if t0 >= target >= t1:
            w = (t0 - target) / (t0 - t1) if t0 != t1 else 1.0
            return g0 + w * (g1 - g0)
    return None


def table(curves: dict) -> float:
    """Print each run's general loss at the task loss every run reaches; returns that task loss."""
    best = {name: min(t for _, t, _ in c if t is not None) for name, c in curves.items()}
    target = max(best.values())  # the task loss every run reaches
    print(f"\ntask = Alpaca eval loss, general = held-out C4 loss; general read at task loss {target:.4f}\n")
    print(f"{'run':8} {'general@base':>12} {'best task':>10} {'general@target':>15} {'final task':>11} "
          f"{'final general':>14}")
    for name, c in curves.items():
        g = general_at(c, target)
        print(f"{name:8} {c[0][2]:12.4f} {best[name]:10.4f} {(f'{g:.4f}' if g is not None else '-'):>15} "
              f"{c[-1][1]:11.4f} {c[-1][2]:14.4f}")
    return target


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help="work directory (default: a new temporary one)")
    p.add_argument("--steps", type=int, default=150, help="task fine-tuning steps per run (default 150)")
    p.add_argument("--pretrain-epochs", type=float, default=8, help="epochs over the 250 C4 rows (default 8)")
    p.add_argument("--runs", default="plain,decay,smooth,both", help="variants: " + ",".join(VARIANTS))
    p.add_argument("--set", action="append", default=[], help="extra override for the task runs (KEY=VALUE)")
    p.add_argument("--base", type=Path, default=None, help="a pretrained checkpoint to start from (skips step 1; "
                   "the tokenizer is its own)")
    p.add_argument("--data", type=Path, default=DATA, help="the llamafactory data folder (default ../shared/data/...)")
    p.add_argument("--report", type=Path, nargs="+", default=None, metavar="DIR",
                   help="only print the table of earlier --out directories together (runs made in parallel)")
    a = p.parse_args()
    if a.report:
        curves = {}
        for d in a.report:
            curves.update(json.loads((d / "curves.json").read_text())["curves"])
        table(curves)
        return 0
    if not (a.data / "c4_demo.jsonl").exists():
        raise SystemExit(f"{a.data} is absent: this benchmark reads ../shared/data beside the project (or --data)")
    out = a.out or Path(tempfile.mkdtemp(prefix="tunebench-forgetting-"))
    out.mkdir(parents=True, exist_ok=True)
    runs_dir = out / "runs"
    files = prepare(out, a.data)
    print(f"work directory {out}", file=sys.stderr)
    base = a.base
    if base is None:
        base_run = train("pretrain-c4", files["model"], files["pretrain"], runs_dir,
                         ["data.loss_on=all", f"training.epochs={a.pretrain_epochs}", "training.learning_rate=3e-3",
                          "training.lr_scheduler=cosine", "training.warmup_steps=20"])
        base = sorted((base_run / "checkpoints").glob("checkpoint-*"), key=lambda d: int(d.name.split("-")[1]))[-1]
    print(f"base (pretrained on C4): {base}", file=sys.stderr)
    curves = {}
    for name in a.runs.split(","):
        run_dir = train(name, base, files["task"], runs_dir,
                        [f"data.eval={files['task_eval']}", f"data.general_eval={files['general']}", "data.skip_invalid=true",
                         f"training.max_steps={a.steps}", "training.eval_steps=10", "training.learning_rate=1e-3",
                         "training.lr_scheduler=constant", *VARIANTS[name], *a.set])
        curves[name] = curve(run_dir)
    target = table(curves)
    print(json.dumps({"target_task_loss": target, "curves": curves}), file=open(out / "curves.json", "w"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
