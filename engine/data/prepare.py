"""From the config's data section to train/eval rows in the method's shape, with a report of what was done."""
from __future__ import annotations

import random

from . import formats
from .load import read_rows


def split(rows: list, fraction: float, seed: int) -> tuple[list, list]:
    """Hold out `fraction` of rows for eval, chosen by a seeded shuffle (the same every time)."""
    if fraction <= 0:
        return rows, []
    idx = list(range(len(rows)))
    random.Random(seed).shuffle(idx)
    n_eval = max(1, round(len(rows) * fraction))
    held = set(idx[:n_eval])
    return [r for i, r in enumerate(rows) if i not in held], [rows[i] for i in sorted(held)]


def prepare_sft(cfg: dict) -> tuple[list[dict], list[dict], dict]:
    d = cfg["data"]
    rows = read_rows(d["train"])
    fmt = d["format"] if d["format"] != "auto" else formats.detect(rows)
    train = [formats.to_sft(r, fmt) for r in rows]
    if d["eval"]:
        eval_rows = read_rows(d["eval"])
        eval_fmt = d["format"] if d["format"] != "auto" else formats.detect(eval_rows)
        evals = [formats.to_sft(r, eval_fmt) for r in eval_rows]
    else:
        train, evals = split(train, d["eval_fraction"], cfg["training"]["seed"])
    return train, evals, {"format": fmt, "train_rows": len(train), "eval_rows": len(evals)}
