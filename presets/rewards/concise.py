"""Example reward functions for presets/grpo-reward-function.yaml: copy this file and write your own.

TRL calls each function with the batch's `prompts`, `completions` (strings for plain prompts, lists of
{"role", "content"} messages for chat prompts) and every other column of the data rows as keyword
arguments. Return one float per completion (None to abstain); the rewards of several functions are summed.
"""
from __future__ import annotations

import re


def _text(completion) -> str:
    if isinstance(completion, list):  # chat: the assistant message(s)
        return " ".join(str(m.get("content", "")) for m in completion)
    return str(completion)


def reward(completions, **columns) -> list[float]:
    """Match the row's `answer` column when the data has one (exact-answer tasks), else prefer ending a sentence."""
    answers = columns.get("answer")
    out = []
    for i, c in enumerate(completions):
        text = _text(c).strip()
        if answers is not None:
            out.append(1.0 if str(answers[i]).strip().lower() in text.lower() else 0.0)
        else:
            out.append(1.0 if re.search(r"[.!?]\s*$", text) else 0.0)
    return out


def brevity(completions, **columns) -> list[float]:
    """A small push towards short answers: -0.1 per 100 characters."""
    return [-0.001 * len(_text(c)) for c in completions]
