"""Chat templates and completion-only loss: which tokens can train, and what to do when a template cannot say.

Takes a tokenizer (so transformers and trl are already loaded by the caller). TRL masks assistant turns
through `{% generation %}` markers and can patch the templates of some model families; for any other
template tunebench trains only the last assistant turn of each conversation (as prompt/completion), and
says so, rather than silently training every token.
"""
from __future__ import annotations


def plan(tok) -> dict:
    """How assistant-only loss works with this tokenizer's chat template.

    mode: "markers" (the template has generation markers), "patched" (TRL ships a training version of this
    template), "last_turn" (no markers, not patchable: the last assistant turn trains, as a completion),
    or "none" (no chat template at all). `template` is the one to render with; `note` explains a fallback.
    """
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    template = tok.chat_template
    if not template:
        return {"mode": "none", "template": None, "stop_token_trained": None,
                "note": "the tokenizer has no chat template: conversations cannot be rendered; use a model with "
                        "one, or give prompt_completion or text data"}
    if has_generation_markers(template):
        out = {"mode": "markers", "template": template, "note": ""}
    else:
        try:
            patched = get_training_chat_template(tok)
        except Exception:  # noqa: BLE001 - TRL raises for templates it does not know: not patchable
            patched = None
        if patched:
            out = {"mode": "patched", "template": patched,
                   "note": "the chat template has no {% generation %} markers; TRL's training version of it marks "
                           "the assistant turns"}
        else:
            return {"mode": "last_turn", "template": template, "stop_token_trained": None,
                    "note": "the chat template has no {% generation %} markers and TRL cannot patch it: only the "
                            "last assistant turn of each conversation trains (as a prompt/completion pair). To train "
                            "every assistant turn, add {% generation %}...{% endgeneration %} around the assistant "
                            "content in the template, or set data.loss_on: all to train every token"}
    out["stop_token_trained"] = stop_token_trained(tok, out["template"])
    if out["stop_token_trained"] is False:
        out["note"] = (out["note"] + "; " if out["note"] else "") + (
            "the template's assistant span does not include the end-of-turn token, so the model would not learn "
            "to stop: move the end-of-turn token inside {% generation %}...{% endgeneration %}")
    return out


def stop_token_trained(tok, template: str) -> bool | None:
    try:
        from trl.chat_template_utils import is_chat_template_stop_token_trained

        return bool(is_chat_template_stop_token_trained(tok, chat_template=template))
    except Exception:  # noqa: BLE001 - a template that cannot render the probe conversation
        return None


def last_turn_split(messages: list[dict]) -> dict:
    """The fallback for templates without markers: the turns before the last assistant turn are the prompt."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return {"prompt": messages[:last], "completion": messages[last:last + 1]}
