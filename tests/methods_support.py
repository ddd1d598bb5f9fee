"""Shared set-up of the methods tests: tiny models, small datasets in each method's shape, in-process runs."""
from __future__ import annotations

import json
import signal
from pathlib import Path

from tests.tinybert import build_tiny_bert

WORDS = ["apple", "river", "stone", "cloud", "green", "seven", "light", "table"]
POSITIVE = ["this film is great", "i loved it", "brilliant good fun", "wonderful acting", "great and wonderful"]
NEGATIVE = ["a terrible boring movie", "i hated it", "worst ever", "bad and dull", "awful and boring"]
REWARD_FILE = '''
def reward(completions, word, **columns):
    """1 per occurrence of the prompt's word, and a small bonus for short answers."""
    return [float(c.count(w)) + 1.0 / (1 + len(c)) for c, w in zip(completions, word)]


def length(completions, **columns):
    return [-len(c) / 100 for c in completions]
'''


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def build_assets(base: Path) -> dict:
    """Models and data files under `base`, built once per session (the llama comes from the conftest fixture)."""
    base.mkdir(parents=True, exist_ok=True)
    out = {"bert": build_tiny_bert(base / "bert")}
    out["pref"] = write_jsonl(base / "pref.jsonl", [
        {"prompt": f"say {w}: ", "chosen": f"{w} {w}", "rejected": "no"} for w in WORDS * 6])
    out["kto"] = write_jsonl(base / "kto.jsonl", [
        {"prompt": f"say {w}: ", "completion": f"{w} {w}" if i % 2 == 0 else "no", "label": i % 2 == 0}
        for i, w in enumerate(WORDS * 6)])
    out["prompts"] = write_jsonl(base / "prompts.jsonl", [{"prompt": f"say {w}: ", "word": w} for w in WORDS * 4])
    out["cls"] = write_jsonl(base / "cls.jsonl", [
        {"text": (POSITIVE if i % 2 else NEGATIVE)[i // 2 % 5], "label": ["negative", "positive"][i % 2]}
        for i in range(80)])
    out["general"] = write_jsonl(base / "general.jsonl", [
        {"text": "The quick brown fox jumps over the lazy dog. Numbers: 1 2 3 4 5."},
        {"text": "Fine-tuning adapts a pretrained language model to a task with a small dataset."}] * 4)
    (base / "rewards.py").write_text(REWARD_FILE)
    out["rewards"] = base / "rewards.py"
    return out


def config(model: Path, data_file: Path, **sections):
    """A validated Config for a quick CPU run."""
    from engine.config import load_config

    cfg = {"model": {"name_or_path": str(model)}, "data": {"train": str(data_file), "max_length": 32},
           "training": {"max_steps": 3, "batch_size": 4, "learning_rate": 1e-3},
           "hardware": {"device": "cpu"}}
    for key, value in sections.items():
        if isinstance(value, dict):
            cfg.setdefault(key, {}).update(value)
        else:
            cfg[key] = value
    import yaml

    path = Path(str(data_file) + ".cfg.yaml")
    path.write_text(yaml.safe_dump(cfg))
    return load_config(path)


def train(runs_dir: Path, cfg: dict):
    """Create a run and train it in this process (the real engine code, without the 7 s import per run).

    Returns (run, events by kind). The worker installs SIGTERM/SIGINT handlers; pytest's come back after.
    """
    from engine.rundir.events import read_events
    from engine.rundir.runs import create_run
    from engine.training.worker import run_engine

    run = create_run(runs_dir, cfg)
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        rc = run_engine(run)
    finally:
        for s, h in saved.items():
            signal.signal(s, h)
    events: dict[str, list] = {}
    for e in read_events(run.events_path):
        events.setdefault(e["kind"], []).append(e)
    status = run.status()
    assert rc == 0 and status["state"] == "completed", (status.get("error"), run.log_path)
    return run, events


def batches(trainer, epoch: int, skip: int = 0) -> list:
    """The input_ids of every batch the trainer's dataloader gives in `epoch`, after skipping `skip` batches the
    way a resumed run does (accelerate's skip wrapper, through which set_epoch must still reach the sampler)."""
    from accelerate import skip_first_batches

    dl = trainer.get_train_dataloader()
    if skip:
        dl = skip_first_batches(dl, skip)
    dl.set_epoch(epoch)
    return [b["input_ids"].tolist() for b in dl]
