"""How much data a run will see, for the time estimate: its training rows and their mean tokens.

Light: the rows come from engine.data.prepare (no `datasets` for local files), the tokens from the model's
tokenizer.json through the `tokenizers` library (no torch, no transformers). Used by `tunebench estimate` and,
through the helper, by the Hyperparameters pane.
"""
from __future__ import annotations

from pathlib import Path

from engine.config import Config


def texts(row) -> list[str]:
    """Every string in a prepared row (messages' contents, prompt, completion, text...)."""
    if isinstance(row, str):
        return [row]
    if isinstance(row, dict):
        return [t for v in row.values() for t in texts(v)]
    if isinstance(row, list):
        return [t for v in row for t in texts(v)]
    return []


def look_at_data(cfg: Config, sample: int = 256) -> tuple[int | None, float | None, str | None]:
    """(train rows, mean tokens a row, note): rows for the time to the end; tokens from the model's
    tokenizer.json through the `tokenizers` library (no torch), chat template left out, capped at max_length."""
    if not cfg.data.train:
        return None, None, None
    try:
        from engine.data.prepare import prepare

        train, _, info = prepare(cfg.replace(data={"skip_invalid": True}))
    except Exception as e:  # noqa: BLE001 - data only refines the time; the memory estimate stands
        return None, None, f"data not read ({type(e).__name__}: {e}); tokens a row taken as data.max_length"
    per_row = None
    tok_file = Path(cfg.model.name_or_path) / "tokenizer.json"
    if tok_file.is_file() and train:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(tok_file))
        step = max(1, len(train) // sample)
        lengths = [len(tok.encode(" ".join(texts(r))).ids) for r in train[::step]]
        per_row = sum(min(n, cfg.data.max_length) for n in lengths) / len(lengths)
    return info["train_rows"], per_row, None
