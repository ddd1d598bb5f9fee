"""Canonical examples (formats.normalize) -> rows in the shape each method's trainer reads.

Light module. Shapes (TRL 1.16 / transformers):
  sft             {"messages"} | {"prompt", "completion"} | {"text"}
  dpo, reward     {"prompt", "chosen", "rejected"} (strings, or message lists: conversational), or
                  {"chosen", "rejected"} with the prompt implicit (TRL's extract_prompt finds the shared start)
  kto             {"prompt", "completion", "label": bool}; preference pairs are unpaired (chosen -> true)
  grpo, rloo      {"prompt", ...}: the other columns are passed to reward functions; a reference answer
                  found in the data (alpaca output, completion, last assistant turn) goes in "reference"
  classification  {"text", "label": int} or {"text", "text_pair", "label"}; label names in info["labels"]
  seq2seq         {"prompt": str, "completion": str}: the encoder's source text and the decoder's target text; a
                  conversation gives one exchange (system and user turns joined as the source, the answer as target)
"""
from __future__ import annotations

from engine.data.errors import DataError
from engine.data.formats import KIND

ACCEPTS = {
    "sft": ("chat", "completion", "text"),
    "seq2seq": ("chat", "completion"),
    "dpo": ("preference",),
    "reward": ("preference",),
    "kto": ("kto", "preference"),
    "grpo": ("prompt", "chat", "completion", "preference", "kto"),
    "rloo": ("prompt", "chat", "completion", "preference", "kto"),
    "classification": ("classify",),
}
WHY = {
    "sft": "sft trains on complete examples (messages, sharegpt, alpaca, prompt_completion or text)",
    "seq2seq": "seq2seq maps a source text to a target text (prompt_completion, two columns such as "
               "document/summary or source/target, alpaca, or single-exchange messages)",
    "dpo": "dpo learns from pairs of a chosen and a rejected answer (format preference)",
    "reward": "a reward model learns from pairs of a chosen and a rejected answer (format preference)",
    "kto": "kto needs completions labelled desirable or not (format kto), or preference pairs to unpair",
    "grpo": "grpo needs prompts to generate from (format prompt, or any format with a prompt)",
    "rloo": "rloo needs prompts to generate from (format prompt, or any format with a prompt)",
    "classification": "classification needs a text column and a label column (format classification)",
}
SUGGEST = {"preference": "dpo or reward", "kto": "kto", "classify": "classification", "prompt": "grpo or rloo",
           "text": "sft", "chat": "sft", "completion": "sft"}


def check_fit(fmt: str, method: str, train_on_chosen: bool = False) -> None:
    """Refuse a format that does not fit the method, with the reason and what to do instead."""
    kind = KIND[fmt]
    if kind in ACCEPTS[method] or (method == "sft" and kind == "preference" and train_on_chosen):
        return
    extra = ""
    if method == "sft" and kind == "preference":
        extra = "; or keep sft and train on the chosen answers with data.train_on_chosen: true"
    raise DataError(f"data: {fmt} data does not fit method {method}: {WHY[method]}. "
                    f"Use method {SUGGEST[kind]} for {fmt} data{extra}, or set data.format if the format was "
                    "detected wrongly")


def _as_messages(prompt, completion) -> list[dict]:
    p = prompt if isinstance(prompt, list) else ([{"role": "user", "content": prompt}] if prompt else [])
    c = completion if isinstance(completion, list) else [{"role": "assistant", "content": completion}]
    return p + c


def _last_assistant(msgs: list[dict]) -> int | None:
    return max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)


def for_method(ex: dict, fmt: str, method: str) -> list[dict]:
    """One canonical example -> the method's rows (a list: kto unpairs a preference pair into two rows)."""
    kind = KIND[fmt]
    extra = ex.get("_extra") or {}
    if method == "sft":
        if kind == "chat":
            return [{"messages": ex["messages"]}]
        if kind == "completion":
            return [{"prompt": ex["prompt"], "completion": ex["completion"]}]
        if kind == "text":
            return [{"text": ex["text"]}]
        if kind == "preference":  # data.train_on_chosen: the prompt and the chosen answer
            if ex["prompt"] is None:
                return [{"messages": ex["chosen"]}] if isinstance(ex["chosen"], list) else [{"text": ex["chosen"]}]
            if isinstance(ex["prompt"], list):
                return [{"messages": ex["prompt"] + ex["chosen"]}]
            return [{"prompt": ex["prompt"], "completion": ex["chosen"]}]
    if method == "seq2seq":
        return [_source_target(ex, kind)]
    if method in ("dpo", "reward"):
        if ex["prompt"] is None:  # implicit prompt: both trainers extract the shared start themselves
            return [{"chosen": ex["chosen"], "rejected": ex["rejected"]}]
        return [{"prompt": ex["prompt"], "chosen": ex["chosen"], "rejected": ex["rejected"]}]
    if method == "kto":
        if kind == "kto":
            return [{"prompt": ex["prompt"], "completion": ex["completion"], "label": ex["label"]}]
        if ex["prompt"] is None:
            raise _no_prompt()
        return [{"prompt": ex["prompt"], "completion": ex["chosen"], "label": True},
                {"prompt": ex["prompt"], "completion": ex["rejected"], "label": False}]
    if method in ("grpo", "rloo"):
        return [_prompt_row(ex, kind, extra)]
    if method == "classification":
        return [{k: ex[k] for k in ("text", "text_pair", "label") if k in ex}]
    raise DataError(f"method: {method!r} has no data conversion")


def _no_prompt():
    from engine.data.formats import Invalid

    return Invalid("missing field", "no prompt: give a 'prompt' column, or chosen/rejected conversations that "
                                    "share their first turns")


def _prompt_row(ex: dict, kind: str, extra: dict) -> dict:
    from engine.data.formats import Invalid

    row = {k: v for k, v in extra.items() if k not in ("prompt", "reference")}
    if kind == "chat":
        msgs = ex["messages"]
        last = _last_assistant(msgs)
        if last is not None and last == len(msgs) - 1:  # a finished conversation: its answer is the reference
            row.update(prompt=msgs[:last], reference=msgs[last]["content"])
        else:
            row["prompt"] = msgs
        if not row["prompt"] or row["prompt"][-1]["role"] not in ("user", "tool"):
            raise Invalid("no prompt", "the conversation has no user turn to answer")
        return row
    if kind in ("completion", "kto", "preference"):
        if ex.get("prompt") is None:
            raise _no_prompt()
        answer = ex.get("completion", ex.get("chosen"))
        if kind == "kto" and not ex["label"]:
            answer = None  # an undesirable completion is no reference answer
        row["prompt"] = ex["prompt"]
        if answer is not None:
            row["reference"] = answer if isinstance(answer, str) else answer[-1]["content"]
        return row
    row["prompt"] = ex["prompt"]
    return row


def _text_of(turns: list[dict]) -> str:
    return "\n\n".join(t["content"] for t in turns if (t.get("content") or "").strip())


def _source_target(ex: dict, kind: str) -> dict:
    """One exchange as seq2seq's source and target strings; a conversation of several exchanges is refused
    (an encoder-decoder has no turns to keep apart: which earlier answers belong in the source is the user's call)."""
    from engine.data.formats import Invalid

    if kind == "completion":
        prompt, completion = ex["prompt"], ex["completion"]
        msgs = (prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]) + \
            (completion if isinstance(completion, list) else [{"role": "assistant", "content": completion}])
    else:
        msgs = ex["messages"]
    head = [m for m in msgs if m["role"] in ("system", "developer")]
    rest = msgs[len(head):] if msgs[:len(head)] == head else msgs
    roles = [m["role"] for m in rest]
    if roles != ["user", "assistant"] or rest[1].get("tool_calls"):
        raise Invalid("not one exchange", f"seq2seq takes one source and one target; this row has the turns "
                                          f"{', '.join(m['role'] for m in msgs)} (keep one user turn and its answer, "
                                          "or use method sft for conversations)")
    source, target = _text_of(head + rest[:1]), rest[1].get("content") or ""
    if not source.strip():
        raise Invalid("empty field", "the source (prompt) is empty: seq2seq needs a text to read")
    if not target.strip():
        raise Invalid("empty field", "the target (completion) is empty: nothing to train")
    return {"prompt": source, "completion": target}
