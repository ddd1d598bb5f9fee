"""Rows and what can be wrong with them: DataError, a Row with its location, a Problem, the summary of problems.

Light, imports nothing of the project: every data module (and the hub loader, lazily imported by load) uses it.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass


class DataError(Exception):
    """A problem with a data file; the message names the file and line or index."""


@dataclass
class Row:
    data: dict | None
    location: str  # "file.jsonl:12" (line), "file.json[3]" / "file.parquet[3]" (index), "file.csv row 4 (line 5)"
    error: str | None = None  # "kind: detail" when the row cannot be used


SHOW_PER_REASON = 3


@dataclass
class Problem:
    location: str
    kind: str
    detail: str

    def as_dict(self) -> dict:
        return {"location": self.location, "reason": f"{self.kind}: {self.detail}", "kind": self.kind}


def summarize(problems: list[Problem], total: int | None = None, show: int = SHOW_PER_REASON) -> str:
    """Counts by reason and the first rows of each, one line each."""
    by = Counter(p.kind for p in problems)
    of = f" of {total}" if total else ""
    lines = [f"{len(problems)} invalid row(s){of}:"]
    for kind, n in by.most_common():
        lines.append(f"  {kind}: {n}")
        for p in [p for p in problems if p.kind == kind][:show]:
            lines.append(f"    {p.location}: {p.detail}")
    return "\n".join(lines)


class InvalidRows(DataError):
    """The data has invalid rows and data.skip_invalid is off; str() is the summary for the user."""

    def __init__(self, problems: list[Problem], total: int):
        self.problems, self.total = problems, total
        super().__init__(summarize(problems, total) + "\n  fix these rows, or set data.skip_invalid: true to drop "
                                                      "them (the run records how many and why)")


def dropped_info(problems: list[Problem]) -> dict:
    return {"count": len(problems), "by_reason": dict(Counter(p.kind for p in problems)),
            "first": [p.as_dict() for p in problems[:10]]}
