"""Text that came from files or users, made safe to print: control characters escaped, excerpts kept short.

Light, imports nothing of the project, so every layer's messages use it. A run id, a file name or a line of a
file that failed to parse can hold terminal escape sequences or a secret (a symlink to /etc/shadow): messages
quote at most a short, escaped excerpt, never the raw text.
"""
from __future__ import annotations

EXCERPT = 40  # characters of a file's content a message may quote


def printable(text) -> str:
    """`text` with every non-printable character (controls, ESC, line breaks, lone surrogates) as an escape."""
    text = str(text)
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


def excerpt(text, limit: int = EXCERPT) -> str:
    """The first `limit` characters of `text`, escaped, with how much was left out."""
    text = str(text)
    short = printable(text[:limit])
    return short + (f"... ({len(text) - limit} more characters)" if len(text) > limit else "")
