"""Blind A/B votes saved as a preference dataset: one JSONL row {prompt, chosen, rejected} per decisive vote.

Light module. The rows are exactly what `method: dpo` reads (format preference): a chat prompt as a message
list with chosen/rejected as one assistant message each, or a raw-text prompt with string answers. Ties
teach DPO nothing, so they are not rows; they are counted, with every vote, in a summary file beside it
(`<name>.summary.json`) that also names the two models, which the rows must not (they are plain data).
"""
from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

from engine.rundir.atomic import atomic_write

CHOICES = ("a", "b", "tie")


class BlindOrder:
    """Which model shows on the left for each prompt: a seeded coin per prompt, the same on every replay."""

    def __init__(self, seed: int = 0):
        self.seed = seed

    def swapped(self, index: int) -> bool:
        """True when prompt `index` shows model B on the left (as "1") and model A on the right."""
        return random.Random(f"{self.seed}:{index}").random() < 0.5

    def model_for(self, index: int, position: str) -> str:
        """The real side ("a" or "b") shown at `position` ("left" or "right") for prompt `index`."""
        left = "b" if self.swapped(index) else "a"
        return left if position == "left" else ("a" if left == "b" else "b")


def default_path(runs_dir: str | Path, a_label: str, b_label: str) -> Path:
    """runs_dir/votes/<time>-<a>-vs-<b>.jsonl: beside the runs (not inside one: only engines write there)."""
    clean = lambda s: "".join(c if c.isalnum() or c in "-_" else "-" for c in s)[:40].strip("-")  # noqa: E731
    return Path(runs_dir) / "votes" / f"{time.strftime('%Y%m%d-%H%M%S')}-{clean(a_label)}-vs-{clean(b_label)}.jsonl"


def preference_row(prompt: dict, chosen: str, rejected: str) -> dict:
    """One DPO row: chat prompts keep their messages, raw-text prompts stay strings."""
    if "messages" in prompt:
        return {"prompt": [{"role": m["role"], "content": m["content"]} for m in prompt["messages"]],
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}]}
    return {"prompt": prompt["text"], "chosen": chosen, "rejected": rejected}


class VoteBook:
    """Votes of one blind session: appended to the JSONL as they are cast, tallied in the summary."""

    def __init__(self, path: str | Path, models: dict, decoding: dict | None = None):
        self.path = Path(path)
        self.summary_path = self.path.with_name(self.path.stem + ".summary.json")
        self.models = models  # {"a": label, "b": label}
        self.decoding = decoding or {}
        self.votes: dict[int, dict] = {}  # prompt index -> vote (a revote replaces the tally, not the row)

    def cast(self, index: int, prompt: dict, texts: dict, choice: str) -> dict | None:
        """Record the vote on prompt `index` (choice a, b or tie; texts {"a", "b"}); returns the row written."""
        if choice not in CHOICES:
            raise ValueError(f"vote: {choice!r} is not one of {', '.join(CHOICES)}")
        if index in self.votes:
            raise ValueError(f"prompt {index + 1} already has a vote ({self.votes[index]['choice']})")
        row = None
        if choice != "tie" and texts["a"] != texts["b"]:
            other = "b" if choice == "a" else "a"
            row = preference_row(prompt, texts[choice], texts[other])
            self._folder()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)  # owner-only, as runs are
            with open(fd, "a", encoding="utf-8") as f:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())  # a vote is a person's judgement: it survives a crash right after the key
        self.votes[index] = {"index": index, "choice": choice, "identical": texts["a"] == texts["b"],
                             "time": time.time()}
        self.write_summary()
        return row

    def tally(self) -> dict:
        out = {"a": 0, "b": 0, "tie": 0}
        for v in self.votes.values():
            out["tie" if v["identical"] else v["choice"]] += 1  # identical answers cannot be preferred
        return out

    def _folder(self) -> None:
        """The votes folder, owner-only: votes hold prompts and answers, which may be private."""
        if not self.path.parent.exists():
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.path.parent, 0o700)

    def write_summary(self) -> None:
        self._folder()
        atomic_write(self.summary_path, json.dumps({
            "votes_file": str(self.path), "models": self.models, "decoding": self.decoding,
            "tally": self.tally(), "rows": sum(1 for v in self.votes.values() if v["choice"] != "tie" and not v["identical"]),
            "votes": sorted(self.votes.values(), key=lambda v: v["index"])}, indent=1), mode=0o600)
