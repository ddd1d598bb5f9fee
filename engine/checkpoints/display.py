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


def describe_export(label: str, info: dict) -> str:
    """What was written and how to run it, for the terminal (the Export screen shows the same lines)."""
    what = {"merged": "a merged model", "adapter": "an adapter", "full": "a full model", "gguf": f"a {info.get('quant')} GGUF",
            "gguf-lora": f"a {info.get('quant')} GGUF LoRA adapter", "ollama": f"a {info.get('quant')} GGUF and Modelfile"}
    lines = [f"exported {label} as {what.get(info['kind'], info['kind'])} to {info['out']} "
             f"({info['size_bytes'] / 2**20:.1f} MiB, {info['seconds']:.1f} s)"]
    v = info.get("verified")
    if v and "identical" in v:
        lines.append(f"  checked with {v['reader']}: {v['identical']}/{v['prompts']} prompts give the merged model's "
                     f"greedy tokens (rule: {v['rule']})")
    elif v:
        lines.append(f"  checked: read back with {v['reader']}")
    if info.get("note"):
        lines.append(f"  note: {info['note']}")
    if info["kind"] == "adapter" and info.get("format") == "safetensors":
        lines.append(f"  load it with PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained({info['base_model']!r}), "
                     f"{info['out']!r}); --merge writes a model that needs no peft")
    elif info.get("format") == "safetensors":
        lines.append(f"  load it with AutoModelForCausalLM.from_pretrained({info['out']!r})")
    if info.get("run_command"):
        lines.append(f"  run it: {info['run_command']}")
    if info.get("ollama_create"):
        oc = info["ollama_create"]
        lines.append(f"  ollama create: {'done' if oc['returncode'] == 0 else 'failed'} {oc['output'][-200:]}")
    elif info.get("kind") == "ollama":
        lines.append("  (ollama is not installed here: run the command above where it is)")
    return "\n".join(lines)
