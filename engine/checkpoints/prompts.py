"""Prompts from data rows and prompt files, and eval rows as scored examples, for a comparison.

Reads data through engine.data (prepare, sources): light itself, but a hub id or a tokenizer reaches `datasets`
and TRL, so the TUI leaves this to the helper process.
"""
from __future__ import annotations

from pathlib import Path

from engine.checkpoints.refs import ModelRef
from engine.config import Config, Model
from engine.data.errors import DataError
from engine.data.prepare import load_pairs, prepare, summarize
from engine.data.sources import read_rows


def prompt_of(row: dict, location: str = "") -> dict:
    """One data row -> a prompt: {"messages": [...]} (chat template applied) or {"text": "..."} (raw)."""
    if isinstance(row.get("messages"), list):
        msgs = [{"role": m.get("role"), "content": m.get("content")} for m in row["messages"] if isinstance(m, dict)]
        last_user = max((i for i, m in enumerate(msgs) if m["role"] == "user"), default=None)
        if last_user is None:
            raise DataError(f"{location}: the conversation has no user turn to use as a prompt")
        return {"messages": msgs[:last_user + 1]}
    if "prompt" in row:
        p = row["prompt"]
        if isinstance(p, list):
            return {"messages": [{"role": m.get("role"), "content": m.get("content")} for m in p]}
        if isinstance(p, str):
            return {"text": p}
    if isinstance(row.get("instruction"), str):
        text = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
        return {"messages": [{"role": "user", "content": text}]}
    if isinstance(row.get("text"), str):
        return {"messages": [{"role": "user", "content": row["text"]}]}
    raise DataError(f"{location}: cannot make a prompt from the fields {sorted(row)}; use messages, prompt, "
                    "instruction or text (or a .txt file with one prompt a line)")

def read_prompts(path: str | Path) -> list[dict]:
    """A prompts file: .txt (one user prompt a line) or rows in any format engine.data reads (the prompt part)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such prompts file")
    if p.suffix.lower() == ".txt":
        lines = [ln.strip() for ln in p.read_text(encoding="utf-8-sig").splitlines()]
        prompts = [{"messages": [{"role": "user", "content": ln}]} for ln in lines if ln]
    else:
        try:  # the prompt-only conversion of grpo: any chat, completion, preference or kto row has a prompt
            pairs, problems, _, _ = load_pairs(str(p), {"format": "auto"}, "grpo")
        except DataError:
            pairs, problems = [(r.location, r.data) for r in read_rows(str(p)) if r.data], []
        if problems:
            raise DataError(f"{p}: {summarize(problems)}")
        prompts = []
        for loc, row in pairs:
            pr = row.get("prompt")
            if isinstance(pr, str):  # a typed prompt: the user's turn, through the chat template
                prompts.append({"messages": [{"role": "user", "content": pr}]})
            else:
                prompts.append(prompt_of(row, loc))
            if row.get("reference"):
                prompts[-1]["reference"] = row["reference"]
    if not prompts:
        raise DataError(f"{p}: no prompts in the file")
    return prompts

def sft_view(row: dict) -> dict | None:
    """An eval row of any method as one scored example: messages, prompt + completion, or text."""
    if "messages" in row or "text" in row and "label" not in row:
        return row
    answer = row.get("completion", row.get("chosen"))
    if row.get("label") is False or answer is None or row.get("prompt") is None:
        return None  # an undesirable kto completion, or a prompt with no answer: nothing to score
    if isinstance(row["prompt"], list) or isinstance(answer, list):
        as_msgs = lambda v, role: v if isinstance(v, list) else [{"role": role, "content": v}]  # noqa: E731
        return {"messages": as_msgs(row["prompt"], "user") + as_msgs(answer, "assistant")}
    return {"prompt": row["prompt"], "completion": answer}


def run_split(ref: ModelRef | None, path: str | None = None) -> tuple[list[dict], str]:
    """The eval rows of the run behind `ref` in its method's shape (or the rows of `path`), else ([], why not)."""
    if ref is None or (ref.run is None and path is None):
        return [], "no run behind this model"
    cfg = ref.run.settings() if ref.run else Config(model=Model(name_or_path=ref.base_model))
    if path is not None:  # a file of eval rows, read as the run reads its own data
        cfg = cfg.replace(data={"train": path, "eval": None, "eval_fraction": 0.0})
        rows, _, _ = prepare(cfg)
        return rows, path
    _, evals, _ = prepare(cfg)
    if not evals:
        return [], f"run {ref.run.id} has no eval split (data.eval or data.eval_fraction)"
    return evals, f"eval split of {ref.run.id}"


def default_prompts(a: ModelRef, b: ModelRef, limit: int = 8) -> tuple[list[dict], str]:
    """Prompts from the eval split of A's run (else B's), the first `limit` of them."""
    why = []
    for ref in (a, b):
        rows, source = run_split(ref)
        if rows:
            prompts = [split_prompt(r) for r in rows]
            return [p for p in prompts if p][:limit], source
        why.append(source)
    raise DataError("no prompts: give --prompts FILE (a .txt with one prompt a line, or a JSONL); "
                    + "; ".join(dict.fromkeys(why)))

def split_prompt(row: dict) -> dict | None:
    """The prompt of an eval row (a string prompt stays raw text: the run trained on it without a template), with
    the row's answer as `reference` when it has one (compare scores both sides against it)."""
    if isinstance(row.get("prompt"), str):
        prompt = {"text": row["prompt"]}
    else:
        try:
            prompt = prompt_of(row)
        except DataError:
            return None
    ref = reference_of(row)
    return {**prompt, "reference": ref} if ref else prompt


def reference_of(row: dict) -> str | None:
    """The answer an sft row trains on: a string completion, or the final assistant turn after the last user turn."""
    if isinstance(row.get("completion"), str):
        return row["completion"]
    msgs = row.get("messages") if isinstance(row.get("messages"), list) else row.get("completion")
    if isinstance(msgs, list) and msgs and isinstance(msgs[-1], dict) and msgs[-1].get("role") == "assistant":
        content = msgs[-1].get("content")
        return content if isinstance(content, str) else None
    return None
