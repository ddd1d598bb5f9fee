"""data.train's weighted entries and data.order's values, as validation reads them (engine.data.mixture uses them).

Light: no I/O.
"""
from __future__ import annotations

import math
import re

WEIGHT = re.compile(r"^(?P<path>.+):(?P<weight>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)$")


def split_weight(entry: str) -> tuple[str, float | None]:
    """"path:weight" -> (path, weight); a string without a numeric suffix -> (entry, None)."""
    m = WEIGHT.match(entry.strip())
    if m and not m["path"].endswith(":"):
        return m["path"], float(m["weight"])
    return entry, None


def normalise_train(value) -> tuple[object, str | None]:
    """data.train as validation keeps it: {path, weight} mappings become "path:weight" strings.
    Returns (value, what is wrong or None)."""
    if not isinstance(value, list):
        return value, None
    out = []
    for i, v in enumerate(value):
        if isinstance(v, dict):
            path, weight = v.get("path"), v.get("weight", 1)
            extra = set(v) - {"path", "weight"}
            if not isinstance(path, str) or not path.strip():
                return value, f"entry {i + 1}: a mapping needs path: FILE (and weight: NUMBER)"
            if extra:
                return value, f"entry {i + 1}: unknown key(s) {', '.join(sorted(map(str, extra)))} (path and weight only)"
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight < math.inf:
                return value, f"entry {i + 1}: weight {weight!r} is not a positive number"
            out.append(f"{path}:{weight:g}")
        else:
            out.append(v)
    for i, v in enumerate(out):
        if isinstance(v, str):
            _, w = split_weight(v)
            if w is not None and w <= 0:
                return value, f"entry {i + 1}: weight {w:g} is not a positive number"
    return out, None


def parse_order(order: str) -> tuple[str, str | None]:
    """"column:NAME" -> ("column", NAME); "length" -> ("length", None)."""
    kind, _, name = order.partition(":")
    return kind, (name or None)


def order_problem(order: str) -> str | None:
    kind, name = parse_order(order)
    if kind == "column" and not name:
        return "column needs a name: column:NAME (e.g. column:difficulty)"
    if kind not in ("shuffle", "length", "column", "easy_first") or (name and kind != "column"):
        return f"{order!r} is not one of shuffle, length, column:NAME, easy_first"
    return None


