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


def summarize(problems: list[Problem], total: int | None = None, show: int = SHOW_PER_REASON,
              counts: dict | None = None) -> str:
    """Counts by reason and the first rows of each, one line each. `counts` gives the exact counts by reason
    when `problems` holds only the first rows of each (a ProblemLog of a big file)."""
    by = Counter(counts) if counts else Counter(p.kind for p in problems)
    of = f" of {total}" if total else ""
    lines = [f"{sum(by.values())} invalid row(s){of}:"]
    for kind, n in by.most_common():
        lines.append(f"  {kind}: {n}")
        for p in [p for p in problems if p.kind == kind][:show]:
            lines.append(f"    {p.location}: {p.detail}")
    return "\n".join(lines)


class InvalidRows(DataError):
    """The data has invalid rows and data.skip_invalid is off; str() is the summary for the user."""

    def __init__(self, problems: list[Problem], total: int, counts: dict | None = None):
        self.problems, self.total = problems, total
        self.counts = dict(counts) if counts else dict(Counter(p.kind for p in problems))
        super().__init__(summarize(problems, total, counts=self.counts) + "\n  fix these rows, or set "
                         "data.skip_invalid: true to drop them (the run records how many and why)")


def dropped_info(problems: list[Problem], counts: dict | None = None) -> dict:
    by = dict(counts) if counts else dict(Counter(p.kind for p in problems))
    return {"count": sum(by.values()), "by_reason": by, "first": [p.as_dict() for p in problems[:10]]}


class ProblemLog:
    """Every problem counted by reason, the first `keep` of each reason kept (in file order within a reason):
    what a report shows of a file of any size, in bounded memory."""

    def __init__(self, keep: int = 200):
        self.keep, self.counts, self.kept = keep, Counter(), []

    def add(self, p: Problem) -> None:
        self.counts[p.kind] += 1
        if self.counts[p.kind] <= self.keep:
            self.kept.append(p)

    def extend(self, problems) -> None:
        for p in problems:
            self.add(p)

    def add_counted(self, kind: str, n: int, first: list[Problem]) -> None:
        """`n` problems of one kind of which only `first` were kept (a shape decided after the pass)."""
        self.counts[kind] += n
        room = self.keep - sum(1 for p in self.kept if p.kind == kind)
        self.kept += first[:max(0, room)]

    def merge(self, other: ProblemLog) -> None:
        """Add another log's problems after this one's (the next shard of the file)."""
        for p in other.kept:
            if sum(1 for q in self.kept if q.kind == p.kind) < self.keep:
                self.kept.append(p)
        self.counts.update(other.counts)

    def __len__(self) -> int:
        return sum(self.counts.values())

    def __bool__(self) -> bool:
        return bool(self.counts)

    def as_json(self) -> dict:
        return {"counts": dict(self.counts), "kept": [[p.location, p.kind, p.detail] for p in self.kept]}

    @classmethod
    def from_json(cls, doc: dict, keep: int = 200) -> ProblemLog:
        log = cls(keep)
        log.counts.update(doc.get("counts") or {})
        log.kept = [Problem(*p) for p in doc.get("kept") or []]
        return log

    def error(self, total: int) -> InvalidRows:
        return InvalidRows(self.kept, total, counts=self.counts)

    def dropped(self) -> dict:
        return dropped_info(self.kept, counts=self.counts)
