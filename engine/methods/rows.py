"""Train/eval rows in a method's shape: `engine.data.prepare.prepare(cfg)` when present, else a plain reader.

The data layer (issue 3) owns the real conversions (ShareGPT preference rows, label names, ...). Until it
lands, this fallback reads rows that are already in the method's shape: dpo/reward {"prompt", "chosen",
"rejected"}, kto {"prompt", "completion", "label"}, grpo/rloo {"prompt", ...}, classification {"text",
"label"} with labels mapped to indices here.
"""
from __future__ import annotations

from ..data import prepare as prep
from ..data.load import DataError, read_rows

NEEDS = {"dpo": ("chosen", "rejected"), "reward": ("chosen", "rejected"), "kto": ("prompt", "completion", "label"),
         "grpo": ("prompt",), "rloo": ("prompt",)}
TEXT_COLUMNS = ("text", "sentence", "content", "review")


def take_rows(cfg: dict, job: dict, tokenizer=None) -> tuple[list[dict], list[dict], dict]:
    """method_rows, recording the data report in the engine's job (and its warnings as notes for the events)."""
    train, evals, info = method_rows(cfg, tokenizer)
    job.update({k: v for k, v in info.items() if k != "warnings"}, eval_rows=len(evals))
    job.setdefault("notes", []).extend(info.get("warnings") or [])
    return train, evals, info


def method_rows(cfg: dict, tokenizer=None) -> tuple[list[dict], list[dict], dict]:
    """(train rows, eval rows, info) for cfg["method"]; info may carry "labels" (classification)."""
    if hasattr(prep, "prepare"):
        return prep.prepare(cfg, tokenizer)
    d = cfg["data"]
    train = read_rows(d["train"])
    evals = read_rows(d["eval"]) if d["eval"] else []
    method = cfg["method"]
    if method == "classification":
        return _classification(cfg, train, evals)
    for row in train[:1] + evals[:1]:
        missing = [k for k in NEEDS[method] if k not in row.data]
        if missing:
            raise DataError(f"{row.location}: method {method} needs the fields {', '.join(NEEDS[method])}; "
                            f"missing {', '.join(missing)}")
    train_rows, eval_rows = [r.data for r in train], [r.data for r in evals]
    if not evals:
        train_rows, eval_rows = prep.split(train_rows, d["eval_fraction"], cfg["training"]["seed"])
    return train_rows, eval_rows, {"format": method, "train_rows": len(train_rows), "eval_rows": len(eval_rows)}


def _classification(cfg: dict, train, evals):
    c = cfg["classification"]
    col = c["text_column"]
    if col == "auto":
        col = next((k for k in TEXT_COLUMNS if k in train[0].data), None)
        if col is None:
            raise DataError(f"{train[0].location}: no text column among {sorted(train[0].data)}; "
                            "set classification.text_column")
    names = list(c["labels"])
    if not names:  # from the data: integers in order, names sorted
        seen = {str(r.data.get(c["label_column"])).strip() for r in train}
        names = sorted(seen, key=lambda v: (not v.lstrip("-").isdigit(), int(v) if v.lstrip("-").isdigit() else 0, v))
    index = {n: i for i, n in enumerate(names)}

    def convert(row):
        text, label = row.data.get(col), row.data.get(c["label_column"])
        if not isinstance(text, str):
            raise DataError(f"{row.location}: field {col!r} is missing or not text")
        key = str(label).strip()
        if key not in index:
            if key.isdigit() and int(key) < len(names):
                key = names[int(key)]
            else:
                raise DataError(f"{row.location}: label {label!r} is not one of {', '.join(names)} "
                                "(classification.labels)")
        out = {"text": text, "label": index[key]}
        if c["text_pair_column"]:
            out["text_pair"] = str(row.data.get(c["text_pair_column"], ""))
        return out

    train_rows, eval_rows = [convert(r) for r in train], [convert(r) for r in evals]
    if not evals:
        train_rows, eval_rows = prep.split(train_rows, cfg["data"]["eval_fraction"], cfg["training"]["seed"])
    return train_rows, eval_rows, {"format": "classification", "train_rows": len(train_rows),
                                   "eval_rows": len(eval_rows), "labels": names}
