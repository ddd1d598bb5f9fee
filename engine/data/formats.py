"""Dataset formats: detect one from the columns, check a row, and normalise it to a canonical example.

Light module. Canonical examples, by the format's kind:
  chat        {"messages": [{"role", "content", ...}]}        from messages, sharegpt, alpaca
  completion  {"prompt": str|msgs, "completion": str|msgs}    from prompt_completion
  text        {"text": str}
  preference  {"prompt": str|msgs|None, "chosen", "rejected"} from preference (incl. LLaMA-Factory ShareGPT style)
  kto         {"prompt", "completion", "label": bool}
  classify    {"text", "text_pair"?, "label": int|str}
  prompt      {"prompt": str|msgs, ...other columns}           prompt-only rows (grpo/rloo)
A row that does not fit raises Invalid(kind, detail); the caller records it with the row's location.
"""
from __future__ import annotations

import json
import re

from engine.config.text import excerpt
from engine.data.errors import DataError, Row

FORMATS = ("messages", "sharegpt", "alpaca", "prompt_completion", "text", "preference", "kto", "classification",
           "prompt")
KIND = {"messages": "chat", "sharegpt": "chat", "alpaca": "chat", "prompt_completion": "completion", "text": "text",
        "preference": "preference", "kto": "kto", "classification": "classify", "prompt": "prompt"}
SFT_FORMATS = ("messages", "sharegpt", "alpaca", "prompt_completion", "text")  # kept for older callers
ROLES = ("system", "developer", "user", "assistant", "tool")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system",
                  "function_call": "assistant", "observation": "tool", "tool": "tool", "function": "tool"}
PROMPT_ALIASES = ("prompt", "question", "query")  # prompt_completion also reads Q&A sets such as GSM8K
COMPLETION_ALIASES = ("completion", "answer", "response")
# method seq2seq also reads two-column data as prompt_completion: summarisation (document/summary, XSum;
# article/highlights, CNN/DailyMail; dialogue/summary, SAMSum) and source/target, input/output, text/target pairs.
SOURCE_ALIASES = ("source", "document", "article", "dialogue", "input", "text", "src")
TARGET_ALIASES = ("target", "summary", "highlights", "output", "tgt")
TEXT_COLUMNS = ("text", "sentence", "content", "review", "document", "sentence1", "question", "premise")
PAIR_COLUMNS = {"sentence1": "sentence2", "question": "sentence", "premise": "hypothesis", "text": "text_pair"}


class Invalid(Exception):
    """A row that cannot be used: `kind` groups it in summaries, `detail` says what exactly is wrong."""

    def __init__(self, kind: str, detail: str):
        self.kind, self.detail = kind, detail
        super().__init__(f"{kind}: {detail}")


def parse_columns(spec) -> dict[str, str]:
    """data.columns ("text=sentence,label=polarity" or a list of NAME=COLUMN) -> {canonical: user column}."""
    items = spec.split(",") if isinstance(spec, str) else list(spec or [])
    out = {}
    for item in (i.strip() for i in items):
        if not item:
            continue
        name, sep, column = item.partition("=")
        if not sep or not name.strip() or not column.strip():
            raise DataError(f"data.columns: {item!r} should be NAME=COLUMN, e.g. text=sentence")
        out[name.strip()] = column.strip()
    return out


def remap(data: dict, columns: dict[str, str]) -> dict:
    """Rename the user's columns to the names the formats read (canonical name <- user column)."""
    if not columns:
        return data
    out = {k: v for k, v in data.items() if k not in columns.values()}
    for name, column in columns.items():
        if column in data:
            out[name] = data[column]
    return out


def _alias(d: dict, names) -> str | None:
    return next((n for n in names if n in d), None)


def _chat_style(v) -> str | None:
    if isinstance(v, list) and v and isinstance(v[0], dict):
        return "sharegpt" if "from" in v[0] else ("messages" if "role" in v[0] else None)
    return None


def detect_one(keys: dict, method: str = "sft") -> str | None:
    k = set(keys)
    if "chosen" in k and "rejected" in k:
        return "preference"
    if "label" in k and isinstance(keys["label"], bool) and ({"prompt", "completion"} <= k or "messages" in k
                                                               or "conversations" in k):
        return "kto"
    for col in ("messages", "conversations", "conversation", "chat"):
        if col in k and _chat_style(keys[col]):
            return _chat_style(keys[col]) if col == "messages" else "sharegpt"
    if "instruction" in k and ("output" in k or "response" in k):
        return "alpaca"
    if _alias(keys, PROMPT_ALIASES) and _alias(keys, COMPLETION_ALIASES):
        return "prompt_completion"
    if method == "seq2seq" and _alias(keys, PROMPT_ALIASES + SOURCE_ALIASES) and \
            _alias(keys, COMPLETION_ALIASES + TARGET_ALIASES):
        return "prompt_completion"  # a two-column pair: the first source and target names found, in alias order
    has_label = "label" in k or "labels" in k
    if has_label and any(c in k for c in TEXT_COLUMNS) and (method == "classification" or "text" not in k):
        return "classification"
    if "text" in k:
        return "text"
    if "prompt" in k:
        return "prompt"
    return None


def detect(rows: list[Row], method: str = "sft") -> str:
    """The format most of the first readable rows have; DataError naming the columns when none fits."""
    sample = [r for r in rows[:400] if r.data is not None][:100]
    if not sample:
        first = rows[0]
        raise DataError(f"{first.location}: no readable row among the first {min(len(rows), 400)} "
                        f"({first.error}); is this the right file?")
    votes: dict[str, int] = {}
    for r in sample:
        f = detect_one(r.data, method)
        if f:
            votes[f] = votes.get(f, 0) + 1
    if not votes:
        raise DataError(f"{sample[0].location}: cannot tell the format from the columns [{', '.join(excerpt(c, 24) for c in sorted(sample[0].data)[:12])}]; "
                        f"set data.format to one of {', '.join(FORMATS)} and map your columns with data.columns "
                        "(e.g. text=sentence,label=polarity)")
    return max(votes, key=votes.get)


# --- field checks -------------------------------------------------------------------------------------------------

def need_str(d: dict, key: str, allow_empty: bool = False) -> str:
    if key not in d or d[key] is None:
        raise Invalid("missing field", f"no {key!r} (columns: {', '.join(excerpt(c, 24) for c in sorted(d)[:10])})")
    v = d[key]
    if not isinstance(v, str):
        raise Invalid("wrong type", f"{key!r} should be a string, got {type(v).__name__}")
    if not allow_empty and not v.strip():
        raise Invalid("empty field", f"{key!r} is empty")
    return v


def _content(m: dict, where: str):
    """A turn's content as a string; text parts are joined, other part types are refused."""
    c = m.get("content")
    if c is None or isinstance(c, str):
        return c
    if isinstance(c, list):
        texts = []
        for p in c:
            if isinstance(p, str):
                texts.append(p)
            elif isinstance(p, dict) and p.get("type", "text") == "text" and isinstance(p.get("text"), str):
                texts.append(p["text"])
            else:
                kind = p.get("type") if isinstance(p, dict) else type(p).__name__
                raise Invalid("unsupported content", f"{where}: a {kind!r} content part; only text parts train here")
        return "".join(texts)
    raise Invalid("wrong type", f"{where}: content should be a string or a list of parts, got {type(c).__name__}")


def check_messages(msgs, key: str = "messages", need_assistant: bool = True, after: str | None = None) -> list[dict]:
    """Validate a conversation and return clean copies of its turns (role, content, tool calls kept).

    `after` is the role before the first turn when `msgs` continues a prompt (a chosen or completion side)."""
    if not isinstance(msgs, list):
        raise Invalid("wrong type", f"{key!r} should be a list of turns, got {type(msgs).__name__}")
    if not msgs:
        raise Invalid("empty field", f"{key!r} has no turns")
    out, prev = [], after
    for i, m in enumerate(msgs):
        where = f"{key}[{i}]"
        if not isinstance(m, dict):
            raise Invalid("wrong type", f"{where} should be an object with role and content, got {type(m).__name__}")
        role = m.get("role")
        if role not in ROLES:
            raise Invalid("unknown role", f"{where}: role {excerpt(repr(role))}; expected one of {', '.join(ROLES)}")
        turn = {"role": role, "content": _content(m, where)}
        calls = m.get("tool_calls")
        if calls:
            if role != "assistant" or not isinstance(calls, list):
                raise Invalid("wrong type", f"{where}: tool_calls must be a list on an assistant turn")
            turn["tool_calls"] = calls
        for extra in ("name", "tool_call_id", "reasoning_content", "thinking"):
            if m.get(extra) is not None:
                turn[extra] = m[extra]
        if turn["content"] is None or (not turn["content"].strip() and not calls):
            if not (role == "assistant" and calls) and role != "system":
                raise Invalid("empty field", f"{where}: {role} turn with empty content")
            turn["content"] = turn["content"] or ""
        if role in ("system", "developer"):
            if prev not in (None, "system", "developer"):
                raise Invalid("roles do not alternate", f"{where}: a {role} turn after the conversation started")
        elif role == "tool":
            if prev not in ("assistant", "tool"):
                raise Invalid("roles do not alternate", f"{where}: a tool turn must follow an assistant turn")
        elif role == prev or (role == "assistant" and prev in (None, "system", "developer")) or \
                (role == "user" and prev == "tool"):
            raise Invalid("roles do not alternate", f"{where}: {role} after {prev or 'the start'}")
        out.append(turn)
        prev = role
    if need_assistant and not any(t["role"] == "assistant" for t in out):
        raise Invalid("no assistant turn", f"{key!r} has no assistant turn, so nothing would train")
    return out


def sharegpt_messages(conv, key: str = "conversations", need_assistant: bool = True,
                      after: str | None = None) -> list[dict]:
    """ShareGPT turns (from/value; human, gpt, system, function_call, observation, tool) as role/content turns."""
    if not isinstance(conv, list):
        raise Invalid("wrong type", f"{key!r} should be a list of turns, got {type(conv).__name__}")
    msgs = []
    for i, t in enumerate(conv):
        if not isinstance(t, dict):
            raise Invalid("wrong type", f"{key}[{i}] should be an object with from and value")
        if "role" in t:  # some ShareGPT files already use role/content
            msgs.append(t)
            continue
        who, value = t.get("from"), t.get("value")
        if who not in SHAREGPT_ROLES:
            raise Invalid("unknown role", f"{key}[{i}]: from {excerpt(repr(who))}; expected one of {', '.join(SHAREGPT_ROLES)}")
        if not isinstance(value, str):
            raise Invalid("wrong type" if value is not None else "missing field", f"{key}[{i}]: value should be a string")
        if who == "function_call":
            try:
                call = json.loads(value)
                calls = call if isinstance(call, list) else [call]
                calls = [{"type": "function", "function": {"name": c["name"], "arguments": c.get("arguments", {})}}
                         for c in calls]
            except (ValueError, TypeError, KeyError):
                raise Invalid("wrong type", f"{key}[{i}]: a function_call value must be JSON with name and "
                                            "arguments") from None
            msgs.append({"role": "assistant", "content": "", "tool_calls": calls})
        else:
            msgs.append({"role": SHAREGPT_ROLES[who], "content": value})
    return check_messages(msgs, key, need_assistant, after)


def alpaca_messages(d: dict) -> list[dict]:
    """Instruction + input as the user turn, output as the assistant's; optional system and history pairs."""
    instruction = need_str(d, "instruction", allow_empty=True)
    extra = d.get("input", d.get("context"))  # Dolly names them instruction/context/response
    if extra is not None and not isinstance(extra, str):
        raise Invalid("wrong type", f"'input' should be a string, got {type(extra).__name__}")
    prompt = "\n\n".join(p for p in (instruction, extra) if p and p.strip())
    if not prompt.strip():
        raise Invalid("empty field", "'instruction' and 'input' are both empty")
    msgs = []
    if d.get("system"):
        msgs.append({"role": "system", "content": need_str(d, "system")})
    history = d.get("history") or []
    if not isinstance(history, list):
        raise Invalid("wrong type", "'history' should be a list of [instruction, answer] pairs")
    for j, turn in enumerate(history):
        if not (isinstance(turn, (list, tuple)) and len(turn) == 2 and all(isinstance(x, str) for x in turn)):
            raise Invalid("wrong type", f"history[{j}] should be a pair of strings [instruction, answer]")
        msgs += [{"role": "user", "content": turn[0]}, {"role": "assistant", "content": turn[1]}]
    answer = need_str(d, "output" if "output" in d or "response" not in d else "response")
    return msgs + [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


def _side(v, key: str, after: str | None = None):
    """A prompt/chosen/rejected/completion value: a string, a message list, or a ShareGPT turn object/list."""
    if isinstance(v, str):
        if not v.strip():
            raise Invalid("empty field", f"{key!r} is empty")
        return v
    if isinstance(v, dict):
        v = [v]
    if isinstance(v, list) and v and isinstance(v[0], dict):
        if "from" in v[0]:
            return sharegpt_messages(v, key, need_assistant=False, after=after)
        return check_messages(v, key, need_assistant=False, after=after)
    if v is None:
        raise Invalid("missing field", f"no {key!r}")
    raise Invalid("wrong type", f"{key!r} should be a string or a list of messages, got {type(v).__name__}")


def _split_last_assistant(msgs: list[dict], key: str) -> tuple[list[dict], list[dict]]:
    last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
    if last is None:
        raise Invalid("no assistant turn", f"{key!r} has no assistant turn")
    return msgs[:last], msgs[last:last + 1]


def _common_prefix(chosen: list[dict], rejected: list[dict]) -> int:
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    return n


def _bool_label(d: dict) -> bool:
    if "label" not in d or d["label"] is None:
        raise Invalid("missing field", "no 'label' (true for a desirable completion, false otherwise)")
    v = d["label"]
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        return v.strip().lower() == "true"
    raise Invalid("wrong type", f"'label' should be true or false, got {excerpt(repr(v))}")


def normalize(d: dict, fmt: str, method: str = "sft") -> dict:
    """One row in its format's canonical shape (see the module docstring), or Invalid."""
    if fmt in ("messages", "sharegpt"):
        col = next((c for c in ("messages", "conversations", "conversation", "chat") if c in d), None)
        if col is None:
            raise Invalid("missing field", f"no 'messages' or 'conversations' (columns: {', '.join(sorted(d)[:10])})")
        need = method not in ("grpo", "rloo")
        msgs = sharegpt_messages(d[col], col, need) if fmt == "sharegpt" or _chat_style(d[col]) == "sharegpt" \
            else check_messages(d[col], col, need)
        if isinstance(d.get("system"), str) and d["system"].strip() and msgs[0]["role"] != "system":
            msgs = [{"role": "system", "content": d["system"]}] + msgs  # LLaMA-Factory's sharegpt `system` column
        return {"messages": msgs, "_extra": _extra(d, {col, "system"})}
    if fmt == "alpaca":
        return {"messages": alpaca_messages(d), "_extra": _extra(d, {"instruction", "input", "output", "system", "history"})}
    if fmt == "prompt_completion":
        two = method == "seq2seq"  # the two-column names detect_one reads for seq2seq, after the usual ones
        pk = _alias(d, PROMPT_ALIASES + (SOURCE_ALIASES if two else ())) or "prompt"
        ck = _alias(d, COMPLETION_ALIASES + (TARGET_ALIASES if two else ())) or "completion"
        prompt = d.get(pk)
        prompt = need_str(d, pk, allow_empty=True) if not isinstance(prompt, list) else _side(prompt, pk)
        return {"prompt": prompt, "completion": _side(d.get(ck), ck, "user"), "_extra": _extra(d, {pk, "completion"})}  # an `answer` column stays, by name, for reward functions
    if fmt == "text":
        return {"text": need_str(d, "text")}
    if fmt == "preference":
        return _preference(d)
    if fmt == "kto":
        label = _bool_label(d)
        if "messages" in d or "conversations" in d:
            col = "messages" if "messages" in d else "conversations"
            msgs = sharegpt_messages(d[col], col) if _chat_style(d[col]) == "sharegpt" else check_messages(d[col], col)
            prompt, completion = _split_last_assistant(msgs, col)
        else:
            prompt, completion = _side(d.get("prompt"), "prompt"), _side(d.get("completion"), "completion", "user")
        return {"prompt": prompt, "completion": completion, "label": label}
    if fmt == "classification":
        return _classification(d)
    if fmt == "prompt":
        return {"prompt": _side(d.get("prompt"), "prompt"), "_extra": _extra(d, {"prompt"})}
    raise DataError(f"data.format: {fmt!r} is not a format; use one of {', '.join(FORMATS)}")


def _extra(d: dict, used: set) -> dict:
    return {k: v for k, v in d.items() if k not in used}


HH_TURN = re.compile(r"\n\n(Human|Assistant): ")


def hh_messages(text: str) -> list[dict] | None:
    """Anthropic HH-RLHF strings ("\n\nHuman: ...\n\nAssistant: ...") as turns; None when not that shape."""
    parts = HH_TURN.split(text)
    if len(parts) < 5 or parts[0].strip():
        return None
    return [{"role": "user" if who == "Human" else "assistant", "content": body.strip()}
            for who, body in zip(parts[1::2], parts[2::2])]


def _pref_side(v, key: str):
    """A chosen/rejected value; a message list that starts with the prompt turns (UltraFeedback) is allowed."""
    if isinstance(v, str) and "\n\nHuman: " in v:
        v = hh_messages(v) or v
    first = v[0] if isinstance(v, list) and v else v
    whole = isinstance(first, dict) and (first.get("role") or SHAREGPT_ROLES.get(first.get("from"))) in ("user", "system")
    return _side(v, key, None if whole else "user")


def _preference(d: dict) -> dict:
    if "conversations" in d:  # LLaMA-Factory: conversations + chosen/rejected turn objects
        prompt = sharegpt_messages(d["conversations"], "conversations", need_assistant=False)
    elif d.get("prompt") is not None:
        prompt = _side(d["prompt"], "prompt")
    else:
        prompt = None
    chosen, rejected = _pref_side(d.get("chosen"), "chosen"), _pref_side(d.get("rejected"), "rejected")
    if isinstance(chosen, list) and isinstance(rejected, list):
        n = _common_prefix(chosen, rejected)  # implicit prompt: the turns both sides share
        if n:  # the shared turns are the prompt; a prompt column beside them only repeats them
            prompt, chosen, rejected = chosen[:n], chosen[n:], rejected[n:]
    if chosen == rejected:
        raise Invalid("chosen equals rejected", "the chosen and rejected answers are identical; nothing to learn")
    for side, v in (("chosen", chosen), ("rejected", rejected)):
        if isinstance(v, list) and not v:
            raise Invalid("empty field", f"{side!r} has no turns after the shared prompt")
        if isinstance(v, list) and v[-1]["role"] != "assistant":
            raise Invalid("no assistant turn", f"{side!r} must end with an assistant turn")
    if isinstance(prompt, list) and isinstance(chosen, str):  # mixed: make both sides messages
        chosen, rejected = [{"role": "assistant", "content": chosen}], [{"role": "assistant", "content": rejected}]
    if isinstance(prompt, str) and isinstance(chosen, list):
        prompt = [{"role": "user", "content": prompt}]
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _classification(d: dict) -> dict:
    col = next((c for c in TEXT_COLUMNS if c in d), None)
    if col is None:
        raise Invalid("missing field", f"no text column ({', '.join(TEXT_COLUMNS)}); map yours with "
                                       "data.columns: text=COLUMN")
    text = need_str(d, col)
    pair_col = "text_pair" if "text_pair" in d else PAIR_COLUMNS.get(col)
    out = {"text": text}
    if pair_col and pair_col in d:
        out["text_pair"] = need_str(d, pair_col)
    key = "label" if "label" in d else "labels"
    v = d.get(key)
    if v is None or (isinstance(v, str) and not v.strip()):
        raise Invalid("missing field", "no 'label'")
    if isinstance(v, bool) or not isinstance(v, (int, str, float)) or (isinstance(v, float) and not v.is_integer()):
        raise Invalid("wrong type", f"'label' should be an integer or a label name, got {excerpt(repr(v))}")
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        v = int(v)  # CSV/TSV cells are strings: "1" is the integer label 1
    out["label"] = int(v) if isinstance(v, float) else (v.strip() if isinstance(v, str) else v)
    return out
