"""A chat template's fixed shape (role prefixes, suffixes, generation prompt), found by rendering marked turns.

Light: works on a `render(messages, add_generation_prompt) -> str` callable (a tokenizer's apply_chat_template)
and never imports the ML stack. Chat uses the assistant suffix as an end-of-turn stop; the Ollama export writes
the shape as a Go TEMPLATE. A template whose output does not follow one fixed shape per role (dates, tool
logic, content rewritten per turn) is refused with the first place it differs, never approximated.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

Render = Callable[[list[dict], bool], str]
MARKS = {k: f"zqx{k}qz" for k in ("U1", "A1", "U2", "A2", "S")}  # survive trim filters, never inside a template
ROLES = ("system", "user", "assistant")


class TemplateError(ValueError):
    """The chat template cannot be written as one fixed shape per role."""


@dataclass
class Shape:
    """What the template puts around each role's content; header before the first turn, gen after a last user turn."""

    header: str = ""
    prefix: dict = field(default_factory=dict)
    suffix: dict = field(default_factory=dict)
    gen: str = ""
    default_system: str = ""  # the system text the template inserts when a conversation has none
    implicit_system: bool = False  # the template writes a system turn (default_system, maybe empty) when none is given
    system: bool = True  # False: the template refuses or folds system turns

    def render(self, messages: list[dict]) -> str:
        """The text this shape gives a conversation (the generation prompt after a last user turn), as Ollama's
        TEMPLATE renders it: the template's own system turn first when the conversation has none."""
        if self.implicit_system and not (messages and messages[0]["role"] == "system"):
            messages = [{"role": "system", "content": self.default_system}, *messages]
        out = [self.header]
        for i, m in enumerate(messages):
            out += [self.prefix[m["role"]], m["content"], self.suffix[m["role"]]]
            if m["role"] == "user" and i == len(messages) - 1:
                out.append(self.gen)
        return "".join(out)


def _msg(role: str, key: str) -> dict:
    return {"role": role, "content": MARKS[key]}


def _split(text: str, keys: list[str], what: str) -> list[str]:
    """The text around the marks `keys`, in order: len(keys) + 1 pieces."""
    pieces, rest = [], text
    for k in keys:
        before, found, rest = rest.partition(MARKS[k])
        if not found:
            raise TemplateError(f"the chat template drops or rewrites the content of {what}")
        pieces.append(before)
    return [*pieces, rest]


def _cut_prefix(text: str, head: str, what: str) -> str:
    if not text.startswith(head):
        raise TemplateError(f"the chat template's {what} changes from turn to turn ({text!r} vs {head!r})")
    return text[len(head):]


def _cut_suffix(text: str, tail: str, what: str) -> str:
    if tail and not text.endswith(tail):
        raise TemplateError(f"the chat template's {what} changes from turn to turn ({text!r} vs {tail!r})")
    return text[: len(text) - len(tail)]


def derive(render: Render) -> Shape:
    """The template's shape, checked against the template on sample conversations (TemplateError if it differs)."""
    u1, a1, u2, a2 = _msg("user", "U1"), _msg("assistant", "A1"), _msg("user", "U2"), _msg("assistant", "A2")
    try:
        w, y, x, y2, z = _split(render([u1, a1, u2, a2], False), ["U1", "A1", "U2", "A2"], "a two-turn chat")
        _, user_tail = _split(render([u1], False), ["U1"], "a user turn")
        _, gen_tail = _split(render([u1], True), ["U1"], "a user turn")
    except TemplateError:
        raise
    except Exception as e:  # noqa: BLE001 - a template's own raise_exception() or a Jinja error
        raise TemplateError(f"the chat template fails on a plain user/assistant chat: {e}") from None
    if y != y2:
        raise TemplateError("the chat template writes the start of an answer differently in each turn")
    us = user_tail
    shape = Shape(suffix={"user": us, "assistant": z})
    shape.gen = _cut_prefix(gen_tail, us, "user suffix")
    shape.prefix["assistant"] = _cut_prefix(y, us, "user suffix")
    shape.prefix["user"] = _cut_prefix(x, z, "assistant suffix")
    header = _cut_suffix(w, shape.prefix["user"], "user prefix")
    shape.header = header
    _system(render, shape, header)
    check(render, shape)
    return shape


def _system(render: Render, shape: Shape, header: str) -> None:
    """System prefix and suffix, the default system text a template inserts, or system=False."""
    try:
        p, q, _ = _split(render([_msg("system", "S"), _msg("user", "U1")], False), ["S", "U1"], "a system turn")
    except Exception:  # noqa: BLE001 - templates that refuse a system role (Gemma) raise here
        shape.system = False
        shape.prefix["system"] = shape.suffix["system"] = ""
        return
    ss = _cut_suffix(q, shape.prefix["user"], "user prefix")
    if p.startswith(header):  # "<s>" + "<|system|>\n": the header stays, the rest opens a system turn
        shape.prefix["system"], shape.suffix["system"] = p[len(header):], ss
    elif header.startswith(p) and header.endswith(ss) and len(header) >= len(p) + len(ss):
        # the header is a default system turn (Qwen's "You are Qwen..."): explicit system text replaces it
        shape.header, shape.prefix["system"], shape.suffix["system"] = "", p, ss
        shape.default_system = header[len(p): len(header) - len(ss)]
        shape.implicit_system = True
    else:
        shape.system = False
        shape.prefix["system"] = shape.suffix["system"] = ""


SAMPLES = [
    [{"role": "user", "content": "Hello there"}],
    [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"},
     {"role": "user", "content": "And 3 + 3?\nAnswer briefly."}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "hi"},
     {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"}, {"role": "assistant", "content": "ok"}],
]


def check(render: Render, shape: Shape, samples: list[list[dict]] | None = None) -> None:
    """TemplateError unless the shape renders every sample exactly as the template does."""
    for conv in samples or SAMPLES:
        if not shape.system and conv[0]["role"] == "system":
            continue
        want = render(conv, conv[-1]["role"] == "user")
        got = shape.render(conv)
        if want != got:
            at = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b), min(len(want), len(got)))
            raise TemplateError(f"the chat template's output is not one fixed shape per role: at character {at} "
                                f"it writes {want[at:at + 40]!r}, the shape gives {got[at:at + 40]!r}")


def end_of_turn(shape: Shape) -> str:
    """The text that ends an assistant turn (e.g. "<|im_end|>", "</s>"), stripped; "" when none."""
    return shape.suffix.get("assistant", "").strip()
