"""Detect a dataset's format from its columns and convert rows to what TRL's SFTTrainer expects.

Light module. Formats here: messages, alpaca, prompt_completion, text.
"""
from __future__ import annotations

from .load import DataError, Row

SFT_FORMATS = ("messages", "alpaca", "prompt_completion", "text")


def detect(rows: list[Row]) -> str:
    keys = set(rows[0].data)
    if "messages" in keys:
        return "messages"
    if "instruction" in keys and "output" in keys:
        return "alpaca"
    if "prompt" in keys and "completion" in keys:
        return "prompt_completion"
    if "text" in keys:
        return "text"
    raise DataError(f"{rows[0].location}: cannot tell the format from the columns {sorted(keys)}; "
                    f"set data.format to one of {', '.join(SFT_FORMATS)}")


def _need(row: Row, key: str, kind=str):
    v = row.data.get(key)
    if v is None or (kind is str and not isinstance(v, str)) or (kind is list and not isinstance(v, list)):
        raise DataError(f"{row.location}: field {key!r} is missing or not a {kind.__name__}")
    return v


def alpaca_messages(row: Row) -> list[dict]:
    """Instruction + input as the user turn, output as the assistant's (the reference peer does the same)."""
    prompt = _need(row, "instruction")
    extra = row.data.get("input")
    if extra:
        prompt += "\n\n" + extra
    msgs = [{"role": "system", "content": row.data["system"]}] if row.data.get("system") else []
    for turn in row.data.get("history") or []:
        if isinstance(turn, (list, tuple)) and len(turn) == 2:
            msgs += [{"role": "user", "content": turn[0]}, {"role": "assistant", "content": turn[1]}]
    return msgs + [{"role": "user", "content": prompt}, {"role": "assistant", "content": _need(row, "output")}]


def to_sft(row: Row, fmt: str) -> dict:
    """One row in the shape SFTTrainer reads: {"messages"}, {"prompt","completion"} or {"text"}."""
    if fmt == "messages":
        msgs = _need(row, "messages", list)
        return {"messages": [{"role": m.get("role"), "content": m.get("content")} for m in msgs]}
    if fmt == "alpaca":
        return {"messages": alpaca_messages(row)}
    if fmt == "prompt_completion":
        return {"prompt": _need(row, "prompt"), "completion": _need(row, "completion")}
    if fmt == "text":
        return {"text": _need(row, "text")}
    raise DataError(f"data.format: {fmt!r} is not an SFT format ({', '.join(SFT_FORMATS)})")
