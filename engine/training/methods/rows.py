"""Train/eval rows in a method's shape from the data layer's `prepare(cfg)`, with its report kept in the job.

Shapes (engine/data/convert.py): dpo/reward {"prompt", "chosen", "rejected"}, kto {"prompt", "completion",
"label"}, grpo/rloo {"prompt", other columns}, classification {"text", "label": int} with info["labels"].
"""
from __future__ import annotations

from engine.config import Config
from engine.data.prepare import prepare


def take_rows(cfg: Config, job: dict, tokenizer=None) -> tuple[list[dict], list[dict], dict]:
    """prepare(cfg), recording the data report in the engine's job (and its warnings as notes for the events)."""
    train, evals, info = prepare(cfg, tokenizer)
    job.update({k: v for k, v in info.items() if k != "warnings"}, eval_rows=len(evals))
    job.setdefault("notes", []).extend(info.get("warnings") or [])
    return train, evals, info
