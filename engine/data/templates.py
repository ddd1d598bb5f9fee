"""Chat templates and completion-only loss: which tokens can train, and what to do when a template cannot say.

Takes a tokenizer (so transformers and trl are already loaded by the caller). Every assistant turn trains,
whatever the template: a template with `{% generation %}` markers gives its assistant mask through transformers;
for any other, each assistant turn is what rendering the conversation up to it adds to the rendering before it
(with the generation prompt), checked against the whole rendering, and a template where they disagree is
refused naming the template and the turn (as LLaMA-Factory and Axolotl build their masks). `apply` puts a
data.chat_template (engine.data.chat_templates) on a tokenizer.
"""
from __future__ import annotations


def plan(tok, name: str = "the tokenizer's chat template") -> dict:
    """How assistant-only loss works with this tokenizer's chat template.

    mode: "markers" (the template has generation markers: transformers' assistant mask), "prefix" (any other
    template: each assistant turn is found by rendering conversation prefixes, assistant_mask below) or "none"
    (no chat template at all). `template` is the one to render with, `name` how messages call it; `note`
    explains what the user should know.
    """
    from trl.chat_template_utils import has_generation_markers

    template = tok.chat_template
    if not template:
        return {"mode": "none", "template": None, "name": name, "stop_token_trained": None,
                "note": "the tokenizer has no chat template: conversations cannot be rendered; set data.chat_template "
                        "(chatml, llama3, ..., from:<model dir> or a Jinja file), or give prompt_completion or text "
                        "data"}
    mode = "markers" if has_generation_markers(template) else "prefix"
    out = {"mode": mode, "template": template, "name": name, "note": ""}
    out["stop_token_trained"] = stop_token_trained(tok, template, mode)
    if out["stop_token_trained"] is False:
        out["note"] = ("the template's assistant span does not include the end-of-turn token, so the model would not "
                       "learn to stop" + (": move the end-of-turn token inside {% generation %}...{% endgeneration %}"
                                          if mode == "markers" else ""))
    return out


PROBE = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
         {"role": "user", "content": "and?"}, {"role": "assistant", "content": "bye"}]


def stop_token_trained(tok, template: str, mode: str = "markers") -> bool | None:
    """Whether the last trained token of a probe conversation is a special (end-of-turn) token."""
    try:
        if mode == "markers":
            from trl.chat_template_utils import is_chat_template_stop_token_trained

            return bool(is_chat_template_stop_token_trained(tok, chat_template=template))
        ids, mask = assistant_mask(tok, PROBE, template)
    except Exception:  # noqa: BLE001 - a template that cannot render the probe conversation
        return None
    special = set(tok.all_special_ids)
    last = next((i for i in range(len(ids) - 1, -1, -1) if mask[i] and (ids[i] in special or tok.decode([ids[i]]).strip())),
                None)
    return None if last is None else ids[last] in special


class TemplateMismatch(ValueError):
    """The template renders a conversation prefix differently from the whole conversation: its assistant turns
    cannot be found by rendering prefixes (the message names the template and the turn)."""


def _render(tok, msgs: list[dict], template: str | None, generation_prompt: bool) -> str:
    return tok.apply_chat_template(msgs, chat_template=template, tokenize=False, tools=None,
                                   add_generation_prompt=generation_prompt)


def _turn_end(tok, full: str, upto: str, start: int) -> int | None:
    """Where the assistant turn rendered as `upto` ends inside `full`: len(upto) when `upto` is a prefix of `full`;
    else where its tokens part from the whole rendering's, when what it adds there is a few tokens the whole
    rendering ends with too (Phi-3 appends eos_token when no generation prompt follows); None when they disagree."""
    if full.startswith(upto):
        return len(upto)
    if not getattr(tok, "is_fast", False):
        return None
    u = tok(upto, add_special_tokens=False, return_offsets_mapping=True)
    ids, whole = list(u["input_ids"]), list(tok(full, add_special_tokens=False)["input_ids"])
    k = common_prefix(ids, whole)
    tail = ids[k:]
    if not tail or len(tail) > 8 or whole[-len(tail):] != tail:
        return None
    end = u["offset_mapping"][k][0]
    return end if end >= start and full.startswith(upto[:end]) else None


def assistant_spans(tok, messages: list[dict], template: str | None = None,
                    name: str = "the tokenizer's chat template") -> tuple[str, list[tuple[int, int]]]:
    """(the rendered conversation, the character span of each assistant turn in it).

    An assistant turn i is what rendering messages[:i+1] adds to messages[:i] rendered with the generation
    prompt (the header the model is given), up to its end-of-turn token (whitespace after it does not train).
    Every prefix must agree with the whole rendering, else TemplateMismatch names the template and the turn.
    """
    full = _render(tok, messages, template, False)
    spans = []
    for i, m in enumerate(messages):
        if m.get("role") != "assistant":
            continue
        before = _render(tok, messages[:i], template, True) if i else ""
        upto = _render(tok, messages[:i + 1], template, False)
        if not full.startswith(before) or not upto.startswith(before):
            raise TemplateMismatch(
                f"{name}: the conversation up to turn {i + 1} (assistant) with the generation prompt renders "
                "differently from the whole conversation, so the assistant turns cannot be found; choose another "
                "data.chat_template or set data.loss_on: all")
        end = _turn_end(tok, full, upto, len(before))
        if end is None:
            raise TemplateMismatch(
                f"{name}: turn {i + 1} (assistant) renders differently inside the whole conversation than at its "
                "end, so its tokens cannot be found; choose another data.chat_template or set data.loss_on: all")
        while end > len(before) and full[end - 1].isspace():
            end -= 1
        if end > len(before):
            spans.append((len(before), end))
    return full, spans


def assistant_mask(tok, messages: list[dict], template: str | None = None,
                   name: str = "the tokenizer's chat template") -> tuple[list[int], list[int]]:
    """(input_ids, mask) of a conversation, mask 1 on every assistant turn's tokens (assistant_spans), the ids
    those apply_chat_template(tokenize=True) gives."""
    full, spans = assistant_spans(tok, messages, template, name)
    if getattr(tok, "is_fast", False):
        enc = tok(full, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        mask = [int(any(a <= s < b for a, b in spans)) for s, _ in enc["offset_mapping"]]
        return ids, mask
    ids = list(tok(full, add_special_tokens=False)["input_ids"])  # slow tokenizer: token boundaries by prefixes
    mask = [0] * len(ids)
    for a, b in spans:
        lo = common_prefix(tok(full[:a], add_special_tokens=False)["input_ids"], ids)
        hi = common_prefix(tok(full[:b], add_special_tokens=False)["input_ids"], ids)
        for j in range(lo, hi):
            mask[j] = 1
    return ids, mask


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens two tokenisations share (TRL's common_prefix_length)."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def apply(tok, chosen) -> dict:
    """Put a resolved data.chat_template (engine.data.chat_templates.Chosen) on the tokenizer: the template, and
    the special tokens it needs that the tokenizer lacks (added, never replaced). Returns what was done:
    {chat_template, name, special_tokens, added_tokens, vocab_size, end_of_turn_id}; the caller resizes the
    model's embeddings when tokens were added."""
    out = chosen.record()
    out["added_tokens"] = []
    if chosen.template is not None:
        vocab = tok.get_vocab()
        missing = [t for t in chosen.special_tokens if t not in vocab]
        if missing:
            tok.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
        tok.chat_template = chosen.template
        out["added_tokens"] = missing
    out["vocab_size"] = len(tok)
    eot = getattr(chosen, "end_of_turn", "")
    out["end_of_turn_id"] = tok.convert_tokens_to_ids(eot) if eot else None
    return out
