"""The embedded demo: a tiny model, a generated task it visibly learns on a CPU in about a minute, a preset.

The task is writing numbers as words ("37" -> "thirty-seven"): 100 rows, compositional (tens word +
units word), so a model trained from random weights first learns the format, then the words, and the
held-out numbers show whether it generalised. Heavy only inside build_model (torch, transformers).
"""
from __future__ import annotations

import json
import random
from pathlib import Path

UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
EVAL_NUMBERS = (23, 37, 48, 54, 66, 71, 85, 99)  # held out: answers the model can only get by composing

PRESET = """\
# The demo: teach a tiny model to write numbers as words. Every key says why it has its value.
method: sft                       # supervised fine-tuning on chat rows
name: numbers                     # becomes part of the run id
model:
  name_or_path: {model}           # a 4-layer Llama built locally from random weights (no download)
adapter:
  kind: none                      # random weights: LoRA on an untrained base would learn little; train all 0.8M
data:
  train: {train}                  # 92 chat rows "write 37 in words" -> "thirty-seven"
  eval: {eval}                    # 8 held-out numbers: right answers here mean the model composes words
  max_length: 48                  # rows are ~20 tokens; 48 leaves room and truncates nothing
  loss_on: completion             # train the answer and its end-of-turn token, not the question
training:
  max_steps: 400                  # ~30 s of training on an idle 2-core CPU: the loss falls for ~250 steps, then settles
  batch_size: 8                   # small steps make the fall visible on the Monitor's curve
  learning_rate: 1.0e-3           # a tiny model from scratch takes a rate far above fine-tuning rates
  lr_scheduler: cosine            # decay to 0 so the last steps settle
  warmup_steps: 20                # the first updates of random weights are large; ramp up
  logging_steps: 5                # a point on the loss curve every 5 steps
  eval_steps: 50                  # held-out loss 8 times per run (measured: 1.0 at step 50, 0.11 at 100, 0.015 at 200)
  save_steps: 100                 # checkpoints at 100-400: compare a half-trained one with the last
  seed: 0                         # the same curve every time
hardware:
  device: cpu                     # the demo runs anywhere; a GPU would finish in seconds
"""


def words(n: int) -> str:
    if n < 20:
        return UNITS[n]
    return TENS[n // 10] + ("" if n % 10 == 0 else "-" + UNITS[n % 10])


def rows(numbers) -> list[dict]:
    prompts = ["write {} in words", "{} in words", "spell out {}"]
    out = []
    for n in numbers:
        for p in prompts[:1]:
            out.append({"messages": [{"role": "user", "content": p.format(n)},
                                     {"role": "assistant", "content": words(n)}]})
    return out


def write_data(data_dir: Path) -> tuple[Path, Path]:
    data_dir.mkdir(parents=True, exist_ok=True)
    train_numbers = [n for n in range(100) if n not in EVAL_NUMBERS]
    random.Random(0).shuffle(train_numbers)
    train, ev = data_dir / "numbers-train.jsonl", data_dir / "numbers-eval.jsonl"
    for path, nums in ((train, train_numbers), (ev, EVAL_NUMBERS)):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows(nums)), encoding="utf-8")
    return train, ev


def build_model(model_dir: Path) -> Path:
    """A 4-layer, 128-wide Llama whose tokenizer is trained on the task's words (costs ~8 s, mostly imports)."""
    from engine.demo.tinymodel import DEFAULT_CORPUS, build_tiny_llama

    corpus = [json.dumps(r) for r in rows(range(100))] + [f"write {n} in words {words(n)}" for n in range(100)]
    return build_tiny_llama(model_dir, corpus + DEFAULT_CORPUS, vocab_size=384, hidden=128, layers=4, heads=4,
                            kv_heads=2, max_positions=256)


def prepare(workdir: str | Path, log=print) -> dict:
    """Make (or reuse) workdir/{model, data, presets/demo.yaml}; return their paths."""
    root = Path(workdir).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    model = root / "model"
    if not (model / "config.json").exists():
        log(f"building a tiny model in {model} ...")
        build_model(model)
    train, ev = write_data(root / "data")
    presets = root / "presets"
    presets.mkdir(exist_ok=True)
    preset = presets / "demo.yaml"
    preset.write_text(PRESET.format(model=model, train=train, eval=ev), encoding="utf-8")
    (root / "runs").mkdir(exist_ok=True)
    return {"dir": root, "model": model, "train": train, "eval": ev, "preset": preset, "runs": root / "runs"}
