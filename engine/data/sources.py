"""Every row of a data spec, wherever it lives: local files (engine.data.load) or a hub id (engine.data.hub).

The one place that reaches `datasets` for a spec; the TUI's preview reads local files through engine.data.load
and never comes here.
"""
from __future__ import annotations

from engine.data.errors import DataError, Row
from engine.data.load import expand, is_hub_id, read_file


def load(spec, split: str | None = None, subset: str | None = None) -> list[Row]:
    """Every row of a data spec (files, globs, directories or one hub id), bad rows included with `error` set."""
    if isinstance(spec, str) and spec and is_hub_id(spec):
        from engine.data.hub import load_hub  # imports datasets: only for a hub id

        rows = load_hub(spec, split=split or "train", subset=subset)
    else:
        rows = []
        for f in expand(spec):
            rows += read_file(f, split)
    if not rows:
        raise DataError(f"{spec}: the data holds no rows")
    return rows


def read_rows(spec) -> list[Row]:
    """Rows of a spec; raises DataError naming the first unreadable row (strict, for callers without validation)."""
    rows = load(spec)
    for r in rows:
        if r.error:
            raise DataError(f"{r.location}: {r.error}")
    return rows
