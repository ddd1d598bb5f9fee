"""Saved chats: a conversation with one model or with A and B, as a JSON file under `<runs dir>/chats/`.

Light module (the TUI lists, reopens and converts chats with it). The directory is 0700 and each file 0600, rewritten
atomically after every turn. A conversation is its turns ({user, a, b, pick}); each side's history is rebuilt
from them: side by side, A and B each keep their own answers; blind, the picked answer (on a tie, the one shown
left) becomes both sides' history, so every later preference row has one shared prompt. `sft_rows` turns a
chat into `messages` rows the SFT method trains on.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.checkpoints.votes import BlindOrder, VoteBook, default_path
from engine.rundir.atomic import atomic_write

MODES = ("single", "side", "blind")
VERSION = 1


@dataclass
class Turn:
    user: str
    a: str = ""
    b: str | None = None
    pick: str | None = None  # blind: "a", "b" or "tie" (the real side, not the position)
    stats: dict = field(default_factory=dict)  # tokens and seconds per side


@dataclass
class Conversation:
    models: dict  # {"a": reference, "b": reference or None}
    labels: dict  # {"a": label, "b": label or None}
    mode: str = "single"
    system: str = ""
    decoding: dict = field(default_factory=dict)
    turns: list[Turn] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    blind_seed: int = 0
    votes_path: str | None = None
    path: str | None = None  # where it is saved (not written into the file)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"chat mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.mode != "single" and not self.models.get("b"):
            raise ValueError(f"a {self.mode} chat needs a model B")

    @property
    def sides(self) -> tuple[str, ...]:
        return ("a",) if self.mode == "single" else ("a", "b")

    def shared_answer(self, i: int) -> str:
        """Blind: the answer that continues both histories after turn i (the pick; on a tie, the left one)."""
        t = self.turns[i]
        side = t.pick if t.pick in ("a", "b") else BlindOrder(self.blind_seed).model_for(i, "left")
        return t.a if side == "a" else (t.b or "")

    def messages(self, side: str, upto: int | None = None) -> list[dict]:
        """Side `side`'s conversation before turn `upto` (all turns when None): system, then user/assistant pairs."""
        out = [{"role": "system", "content": self.system}] if self.system else []
        for i, t in enumerate(self.turns[:upto]):
            out.append({"role": "user", "content": t.user})
            answer = self.shared_answer(i) if self.mode == "blind" else (t.a if side == "a" else (t.b or ""))
            out.append({"role": "assistant", "content": answer})
        return out

    def pending_pick(self) -> int | None:
        """Blind: the turn still waiting for a pick (a new message waits for it too)."""
        if self.mode == "blind" and self.turns and self.turns[-1].pick is None:
            return len(self.turns) - 1
        return None

    def pick(self, i: int, position: str, runs_dir: str | Path) -> dict | None:
        """Record the blind pick for turn i: position "left", "right" or "tie"; the decisive ones become a DPO
        row (shared history + the user's message as the prompt) in `<runs dir>/votes/`, as compare's votes do."""
        if self.mode != "blind":
            raise ValueError("picks are for blind chats")
        t = self.turns[i]
        if t.pick is not None:
            raise ValueError(f"turn {i + 1} already has a pick ({t.pick})")
        order = BlindOrder(self.blind_seed)
        choice = "tie" if position == "tie" else order.model_for(i, position)
        if self.votes_path is None:
            self.votes_path = str(default_path(runs_dir, f"chat-{self.labels['a']}", self.labels["b"] or ""))
        book = VoteBook(self.votes_path, self.labels, self.decoding)
        for j, old in enumerate(self.turns[:i]):  # the summary keeps counting the picks made before a reopen
            if old.pick:
                book.votes[j] = {"index": j, "choice": old.pick, "identical": old.a == old.b, "time": 0}
        prompt = {"messages": self.messages("a", i) + [{"role": "user", "content": t.user}]}
        row = book.cast(i, prompt, {"a": t.a, "b": t.b or ""}, choice)
        t.pick = choice
        return row

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("path")
        return {"version": VERSION, **d}

    @classmethod
    def from_dict(cls, d: dict, path: str | None = None) -> Conversation:
        d = {k: v for k, v in d.items() if k != "version"}
        d["turns"] = [Turn(**t) for t in d.get("turns", [])]
        return cls(**d, path=path)

    def sft_rows(self) -> list[dict]:
        """The chat as SFT rows: one `messages` row per side shown (blind: the one shared history)."""
        sides = ("a",) if self.mode in ("single", "blind") else ("a", "b")
        return [{"messages": self.messages(s)} for s in sides if self.turns]


def chats_dir(runs_dir: str | Path) -> Path:
    d = Path(runs_dir) / "chats"
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(d, 0o700)  # a chat holds what the user typed: theirs alone
    return d


def save(conv: Conversation, runs_dir: str | Path) -> Path:
    """Write the chat (atomically, 0600); the first save names it <time>-<model>.json."""
    if conv.path is None:
        clean = "".join(c if c.isalnum() or c in "-_" else "-" for c in conv.labels["a"])[:40].strip("-")
        conv.path = str(chats_dir(runs_dir) / f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(conv.created))}-{clean}.json")
    else:
        chats_dir(runs_dir)
    atomic_write(Path(conv.path), json.dumps(conv.to_dict(), indent=1, ensure_ascii=False), mode=0o600)
    return Path(conv.path)


def load(path: str | Path) -> Conversation:
    """A saved chat; ValueError naming the file when it is not one."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        return Conversation.from_dict(data, str(p))
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{p}: not a saved chat ({e})") from None


def list_chats(runs_dir: str | Path) -> list[dict]:
    """Saved chats, newest first: {path, title, turns, models, mode, updated}."""
    d = Path(runs_dir) / "chats"
    out = []
    for p in sorted(d.glob("*.json"), key=lambda q: q.stat().st_mtime, reverse=True) if d.is_dir() else []:
        try:
            c = load(p)
        except ValueError:
            continue
        title = c.turns[0].user[:60] if c.turns else "(empty)"
        out.append({"path": str(p), "title": title, "turns": len(c.turns), "labels": c.labels, "mode": c.mode,
                    "updated": p.stat().st_mtime})
    return out


def write_sft(conv: Conversation, path: str | Path | None = None) -> Path:
    """The chat's SFT rows as a messages JSONL (default: beside the chat, <name>.sft.jsonl), 0600."""
    rows = conv.sft_rows()
    if not rows:
        raise ValueError("the chat has no turns yet: nothing to send as SFT rows")
    out = Path(path) if path else Path(conv.path or "chat.json").with_suffix(".sft.jsonl")
    atomic_write(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), mode=0o600)
    return out
