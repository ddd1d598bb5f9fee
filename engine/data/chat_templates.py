"""data.chat_template: the named chat templates (Jinja strings and the special tokens each needs) and what a
config value means, read from files alone.

Light: no tokenizer, no ML stack; the preflight (engine.planning) and the workbench read it. Applying a template
to a loaded tokenizer (adding the tokens it lacks) is engine.data.templates' job.

A value is `auto` (the tokenizer's own template), a name below, `from:<model dir>` (another local tokenizer's
template) or the path of a Jinja file, a path by its shape (engine.rundir.paths.template_file: a / or a .jinja,
.j2, .txt suffix), so a file named like a template never changes what a name means; a relative path is read from
the working directory, as data.train is, and run creation records it absolute (engine.rundir.paths). Every named
template renders `add_generation_prompt` and each turn is a prefix of the next rendering, so every assistant turn
can be masked by rendering conversation prefixes.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from engine.rundir.paths import template_file

AUTO = "auto"

_CHATML_TURNS = ("{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + "
                 "'<|im_end|>' + '\n' }}{%- endfor %}")
_GEN_CHATML = "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"

NAMED: dict[str, tuple[str, tuple[str, ...], str]] = {
    # name: (Jinja, special tokens the template needs, its end-of-turn token)
    "chatml": (_CHATML_TURNS + _GEN_CHATML, ("<|im_start|>", "<|im_end|>"), "<|im_end|>"),
    "qwen2.5": (
        "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\n' + messages[0]['content'] + "
        "'<|im_end|>\n' }}{%- else %}{{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a "
        "helpful assistant.<|im_end|>\n' }}{%- endif %}{%- for message in messages %}{%- if not (loop.first and "
        "message['role'] == 'system') %}{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + "
        "'<|im_end|>\n' }}{%- endif %}{%- endfor %}" + _GEN_CHATML,
        ("<|im_start|>", "<|im_end|>"), "<|im_end|>"),
    "llama3": (
        "{{- '<|begin_of_text|>' }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + "
        "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}{%- if "
        "add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}",
        ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"), "<|eot_id|>"),
    "mistral": (
        "{%- if messages[0]['role'] == 'system' %}{%- set system = messages[0]['content'] %}{%- set loop_messages = "
        "messages[1:] %}{%- else %}{%- set system = '' %}{%- set loop_messages = messages %}{%- endif %}"
        "{{- '<s>' }}{%- for message in loop_messages %}{%- if message['role'] == 'user' %}{{- '[INST] ' + "
        "((system + '\n\n') if (loop.first and system) else '') + message['content'] + '[/INST]' }}{%- elif "
        "message['role'] == 'assistant' %}{{- ' ' + message['content'] + '</s>' }}{%- endif %}{%- endfor %}",
        ("<s>", "</s>"), "</s>"),
    "gemma": (
        "{{- '<bos>' }}{%- if messages[0]['role'] == 'system' %}{%- set first = messages[0]['content'] + '\n\n' %}"
        "{%- set loop_messages = messages[1:] %}{%- else %}{%- set first = '' %}{%- set loop_messages = messages %}"
        "{%- endif %}{%- for message in loop_messages %}{%- set role = 'model' if message['role'] == 'assistant' "
        "else message['role'] %}{{- '<start_of_turn>' + role + '\n' + (first if loop.first else '') + "
        "message['content'] | trim + '<end_of_turn>\n' }}{%- endfor %}{%- if add_generation_prompt %}"
        "{{- '<start_of_turn>model\n' }}{%- endif %}",
        ("<bos>", "<start_of_turn>", "<end_of_turn>"), "<end_of_turn>"),
    "phi3": (
        "{%- for message in messages %}{{- '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
        "{%- endfor %}{%- if add_generation_prompt %}{{- '<|assistant|>\n' }}{%- endif %}",
        ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>"), "<|end|>"),
    "alpaca": (
        "{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] + '\n\n' }}{%- set loop_messages = "
        "messages[1:] %}{%- else %}{{- 'Below is an instruction that describes a task. Write a response that "
        "appropriately completes the request.\n\n' }}{%- set loop_messages = messages %}{%- endif %}"
        "{%- for message in loop_messages %}{%- if message['role'] == 'user' %}{{- '### Instruction:\n' + "
        "message['content'] + '\n\n' }}{%- elif message['role'] == 'assistant' %}{{- '### Response:\n' + "
        "message['content'] + eos_token + '\n\n' }}{%- endif %}{%- endfor %}{%- if add_generation_prompt %}"
        "{{- '### Response:\n' }}{%- endif %}",
        (), ""),
}
FIX = ("set data.chat_template to a named template (" + ", ".join(NAMED) + "), from:<model dir> to borrow another "
       "tokenizer's, or the path of a Jinja file")
_TOKEN_LIKE = re.compile(r"<\|[A-Za-z0-9_]+\|>|<(?:start|end)_of_turn>")


class TemplateError(ValueError):
    """A data.chat_template value that names no usable template (the message names the key, the value and the fix)."""


@dataclass(frozen=True)
class Chosen:
    """A resolved data.chat_template: `template` None for auto (the tokenizer's own)."""

    value: str
    name: str  # how messages name it: chatml, the file's path, from:DIR, or "the tokenizer's chat template"
    template: str | None
    special_tokens: tuple[str, ...] = ()
    end_of_turn: str = ""

    def record(self) -> dict:
        return {"chat_template": self.value, "name": self.name, "special_tokens": list(self.special_tokens)}


def model_template(model_dir: str | Path) -> str | None:
    """The chat template a local model directory's tokenizer carries (chat_template.jinja, chat_template.json or
    tokenizer_config.json's chat_template; its `default` when it has several), else None."""
    d = Path(model_dir).expanduser()
    jinja = d / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8") or None
    for name in ("chat_template.json", "tokenizer_config.json"):
        try:
            value = json.loads((d / name).read_text(encoding="utf-8")).get("chat_template")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, list):  # [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
            value = next((t.get("template") for t in value if isinstance(t, dict) and t.get("name") == "default"),
                         None)
        if isinstance(value, str) and value:
            return value
    return None


def _specials_in(template: str, model_dir: Path | None = None) -> tuple[str, ...]:
    """The special tokens a foreign template writes: the added tokens of its own tokenizer that it names, and
    anything shaped like <|name|> or <start_of_turn>."""
    found = set(_TOKEN_LIKE.findall(template))
    if model_dir is not None:
        try:
            added = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8")).get(
                "added_tokens_decoder") or {}
            found |= {t["content"] for t in added.values() if isinstance(t, dict) and t.get("special")
                      and t.get("content") and t["content"] in template}
        except (OSError, ValueError, AttributeError):
            pass
    return tuple(sorted(found))


def _at(value: str, base: str | Path | None) -> Path:
    """The absolute path a (possibly relative) value names, read from `base` or the working directory."""
    p = Path(value).expanduser()
    return Path(os.path.abspath(p if p.is_absolute() else Path(base or os.getcwd()) / p))


def resolve(value: str | None, base: str | Path | None = None) -> Chosen:
    """What a data.chat_template value means; TemplateError when it names nothing usable. `base` is the directory
    relative paths are read from, else the working directory (where tunebench runs, as for data.train)."""
    value = (value or AUTO).strip()
    if value == AUTO:
        return Chosen(AUTO, "the tokenizer's chat template", None)
    if value in NAMED:
        template, special, eot = NAMED[value]
        return Chosen(value, value, template, special, eot)
    if value.startswith("from:"):
        d = _at(value[5:], base)
        if not d.is_dir():
            raise TemplateError(f"data.chat_template: {value!r}: {d} is not a directory; give from:<local model "
                                "directory> whose tokenizer has a chat template")
        template = model_template(d)
        if template is None:
            raise TemplateError(f"data.chat_template: {value!r}: {d} has no chat template (no chat_template.jinja, "
                                f"no chat_template in tokenizer_config.json); {FIX}")
        return Chosen(value, value, template, _specials_in(template, d))
    p = _at(value, base)
    if template_file(value):
        if not p.is_file():
            tried = "" if Path(value).expanduser().is_absolute() else (
                f" ({p} tried: a relative path is read from the directory tunebench runs in)")
            raise TemplateError(f"data.chat_template: {value!r}: no such file{tried}; {FIX}")
        try:
            template = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise TemplateError(f"data.chat_template: {value!r}: unreadable: {e}; give a UTF-8 Jinja file") from None
        if "messages" not in template:
            raise TemplateError(f"data.chat_template: {p} does not read as a chat template (it never uses "
                                "`messages`); give a Jinja file that loops over messages")
        return Chosen(value, str(p), template, _specials_in(template))
    if p.is_file():  # a bare name is a template's name: the file is meant by its path
        raise TemplateError(f"data.chat_template: {value!r} is not a known template; to use the file {p} give its "
                            f"path, ./{value}")
    raise TemplateError(f"data.chat_template: {value!r} is not a known template; {FIX}")
