"""Ollama's Modelfile for an exported GGUF: FROM, a Go TEMPLATE written from the training chat template, stops, SYSTEM.

Light module. The TEMPLATE is the chat template's shape (engine.checkpoints.template) in Go text/template syntax
over Ollama's `.Messages`; Ollama puts the SYSTEM text in as the first message when a request has none, so the
system branch covers both. Literal `{{` in the template text is written as {{ "{{" }} (Go would read it as an
action); text containing a triple quote cannot sit inside TEMPLATE \"\"\"...\"\"\" and is refused.
"""
from __future__ import annotations

from engine.checkpoints.template import Shape, TemplateError, end_of_turn


def _lit(text: str) -> str:
    return text.replace("{{", '{{ "{{" }}')


def go_template(shape: Shape) -> str:
    """The shape as a Go template over Ollama's data (.Messages, each with .Role and .Content)."""
    branches = []
    for role in ("system", "user", "assistant"):
        if role == "system" and not shape.system:
            continue
        body = f"{_lit(shape.prefix[role])}{{{{ $m.Content }}}}{_lit(shape.suffix[role])}"
        if role == "user":  # the generation prompt after the last message, when it is the user's
            body += f"{{{{ if eq (len (slice $.Messages $i)) 1 }}}}{_lit(shape.gen)}{{{{ end }}}}"
        branches.append((role, body))
    out = [_lit(shape.header)]
    if shape.implicit_system and not shape.default_system:
        # The template writes an empty system turn when none is given (Llama 3.1's dated header): SYSTEM cannot
        # say "empty", so the TEMPLATE writes it itself. A non-empty default goes to SYSTEM instead.
        out.append('{{ if or (eq (len .Messages) 0) (ne (index .Messages 0).Role "system") }}'
                   f"{_lit(shape.prefix['system'])}{_lit(shape.suffix['system'])}{{{{ end }}}}")
    out.append("{{ range $i, $m := .Messages }}")
    for n, (role, body) in enumerate(branches):
        out.append(f"{{{{ {'if' if n == 0 else 'else if'} eq $m.Role \"{role}\" }}}}{body}")
    out.append("{{ end }}{{ end }}")
    return "".join(out)


def stops(shape: Shape | None, eos_tokens: list[str]) -> list[str]:
    """Stop strings: the end of an assistant turn and the model's end-of-sequence tokens."""
    found = [end_of_turn(shape)] if shape is not None else []
    return [s for s in dict.fromkeys(found + list(eos_tokens)) if s]


def modelfile(gguf_name: str, shape: Shape | None, eos_tokens: list[str], system: str | None = None,
              params: dict | None = None) -> str:
    """The Modelfile text. shape None: a model without a chat template (raw completion through .Prompt)."""
    template = go_template(shape) if shape is not None else "{{ .Prompt }}"
    system = system if system is not None else (shape.default_system if shape is not None else "")
    for what, text in (("TEMPLATE", template), ("SYSTEM", system)):
        if '"""' in text:
            raise TemplateError(f'the {what} contains """, which a Modelfile cannot quote')
    lines = [f"FROM ./{gguf_name}", f'TEMPLATE """{template}"""']
    for s in stops(shape, eos_tokens):
        if '"' in s or "\n" in s:
            raise TemplateError(f"stop string {s!r} holds a quote or a newline, which PARAMETER stop cannot hold")
        lines.append(f'PARAMETER stop "{s}"')
    for k, v in (params or {}).items():
        lines.append(f"PARAMETER {k} {v}")
    if system:
        lines.append(f'SYSTEM """{system}"""')
    return "\n".join(lines) + "\n"
