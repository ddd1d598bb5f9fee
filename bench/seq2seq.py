"""seq2seq on a summarisation-style task: ROUGE of a tiny T5 (or BART) trained from scratch, evaluation by evaluation.

    .venv/bin/python bench/seq2seq.py [--family t5|bart] [--steps 300] [--eval-steps 50] [--rows 2000] [--json]

The task (tests/tinyseq2seq.py summary_rows): each source is a short report between two filler sentences, e.g.
"the market opened early that week . anna from oslo bought 4 lamps on friday . a band played near the old
bridge ."; its target names the key entities in a fixed order: "anna bought lamps in oslo". A held-out file of
64 rows (another seed) is the eval data. The model is a random-weight T5ForConditionalGeneration (d_model 64, 2+2
layers) with a BPE tokenizer trained on the task's words, saved with save_pretrained, and trained by a real
`tunebench train` of presets/seq2seq-lora-small.yaml with full fine-tuning (an adapter on random weights has
nothing to adapt) and eval.metrics rouge1, rougeL over all 64 eval rows at every evaluation, step 0 included.
It prints ROUGE per evaluation and exits 1 unless ROUGE-L rose by at least 0.3 from the first to the last.
Timings depend on what else the CPU runs: say so when quoting them.
"""
from __future__ import annotations

import os
import sys

# Run as `python bench/seq2seq.py`, bench/ is first on sys.path, and bench/inspect.py would shadow the standard
# library's inspect: drop it, and put the repository first (the tiny-model builders live in tests/).
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402 - after the sys.path fix above
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RISE = 0.3  # ROUGE-L the run must gain from step 0 to its last evaluation


def run(family: str, steps: int, eval_steps: int, rows: int, work: Path, extra: list[str]) -> dict:
    from tests.methods_support import write_jsonl
    from tests.tinyseq2seq import build_tiny_seq2seq, summary_corpus, summary_rows

    model = build_tiny_seq2seq(work / family, family, summary_corpus(), d_model=64, layers=2, heads=4, ffn=128)
    train = write_jsonl(work / "train.jsonl", summary_rows(rows, seed=1))
    evals = write_jsonl(work / "eval.jsonl", summary_rows(64, seed=2))
    sets = [f"model.name_or_path={model}", f"data.train={train}", f"data.eval={evals}", "data.eval_fraction=0",
            "adapter.kind=none", "data.max_length=64", "training.batch_size=16", "training.grad_accum=1",
            f"training.max_steps={steps}", f"training.eval_steps={eval_steps}", "training.save_steps=0",
            "training.learning_rate=3e-3", "training.warmup_steps=20", "hardware.device=cpu",
            "eval.max_rows=64", "eval.max_new_tokens=16", "name=bench", *extra]
    cmd = [sys.executable, "-m", "tunebench", "train", str(ROOT / "presets" / "seq2seq-lora-small.yaml")]
    for s in sets:
        cmd += ["--set", s]
    runs_dir = work / "runs"
    env = {**os.environ, "TUNEBENCH_RUNS_DIR": str(runs_dir)}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"tunebench train failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    run_dir = max(runs_dir.iterdir(), key=lambda p: p.stat().st_mtime)
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines() if line.strip()]
    rows = {e["step"]: e["rows"] for e in events if e["kind"] == "eval_samples"}
    evals = [{**{k: e.get(k) for k in ("step", "loss", "rouge1", "rougeL")}, "generated_rows": rows.get(e["step"])}
             for e in events if e["kind"] == "eval"]
    summary = next(e for e in events if e["kind"] == "summary")
    samples = [" | ".join(f"{t['answer']!r} (target {t['reference']!r})" for t in e["samples"])
               for e in events if e["kind"] == "eval_samples"]
    return {"family": family, "run_dir": str(run_dir), "evals": evals, "steps": summary["step"],
            "params": summary["total_params"], "train_s": summary["train_wall_s"], "wall_s": summary["wall_s"],
            "command_s": round(elapsed, 1), "last_generations": samples[-1] if samples else None}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", default="t5", choices=("t5", "bart"))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--eval-steps", type=int, default=50)
    p.add_argument("--rows", type=int, default=2000, help="training rows generated")
    p.add_argument("--work", default=None, help="where the model, data and runs go (default: a temporary directory)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="another override (repeatable)")
    p.add_argument("--json", action="store_true", help="print the results as JSON too")
    a = p.parse_args(argv)
    work = Path(a.work or tempfile.mkdtemp(prefix="seq2seq-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (timings are contended above "
          "~1 per CPU)", flush=True)
    r = run(a.family, a.steps, a.eval_steps, a.rows, work, a.set)
    print(f"{r['family']} from scratch, {r['params']:,} parameters, {r['steps']} steps: train {r['train_s']:.0f} s, "
          f"wall {r['wall_s']:.0f} s ({r['command_s']:.0f} s with start-up)")
    print(f"{'step':>6} {'eval loss':>10} {'ROUGE-1':>8} {'ROUGE-L':>8}  (greedy, {r['evals'][0]['generated_rows']} rows)")
    for e in r["evals"]:
        print(f"{e['step']:>6} {e['loss']:>10.4f} {e['rouge1']:>8.3f} {e['rougeL']:>8.3f}")
    if r["last_generations"]:
        print(r["last_generations"])
    if a.json:
        print(json.dumps(r, indent=1))
    first, last = r["evals"][0]["rougeL"], r["evals"][-1]["rougeL"]
    ok = last - first >= RISE
    print(f"ROUGE-L {first:.3f} -> {last:.3f}: {'rose' if ok else 'did not rise'} by {last - first:+.3f} "
          f"(needed +{RISE})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
