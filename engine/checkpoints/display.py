"""Prompts and answers as text on a screen: the prompt's line, control characters made visible, a word diff.

Light (no engine imports at all): the CLI and the compare screen share it.
"""
from __future__ import annotations

import difflib
import re


def prompt_text(prompt: dict) -> str:
    """The prompt as one line of text for display: the last user turn (or the raw text)."""
    if "text" in prompt:
        return prompt["text"]
    users = [m["content"] for m in prompt["messages"] if m["role"] == "user"]
    return users[-1] if users else ""


def word_diff(a: str, b: str) -> tuple[list[tuple[str, bool]], list[tuple[str, bool]]]:
    """Split both texts into (segment, differs) runs at word level, for highlighting what differs."""
    wa, wb = re.findall(r"\s*\S+", a), re.findall(r"\s*\S+", b)
    sa: list[tuple[str, bool]] = []
    sb: list[tuple[str, bool]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=wa, b=wb, autojunk=False).get_opcodes():
        if i2 > i1:
            sa.append(("".join(wa[i1:i2]), op != "equal"))
        if j2 > j1:
            sb.append(("".join(wb[j1:j2]), op != "equal"))
    return sa, sb


def printable(text: str) -> str:
    """Control characters (an untrained model emits them) would move a terminal's cursor: show them as \ufffd."""
    return "".join(c if c.isprintable() or c in "\n\t" else "\N{REPLACEMENT CHARACTER}" for c in text)
