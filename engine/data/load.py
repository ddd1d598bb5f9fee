"""Read data files into rows (dicts), each remembering where it came from (file and line or index).

Light module: plain json/csv, no `datasets` import. Supported here: .jsonl, .json (array or object of
arrays), .csv, .tsv, .txt; several files or a glob.
"""
from __future__ import annotations

import csv
import glob
import json
from dataclasses import dataclass
from pathlib import Path


class DataError(Exception):
    """A problem with a data file; the message names the file and line or index."""


@dataclass
class Row:
    data: dict
    location: str  # "file.jsonl:12" (line) or "file.json[3]" (index) or "file.csv row 4"


def expand(spec) -> list[Path]:
    """A path, a glob, or a list of them -> existing files, in a stable order."""
    specs = [spec] if isinstance(spec, str) else list(spec or [])
    files: list[Path] = []
    for s in specs:
        if any(c in s for c in "*?["):
            hits = sorted(glob.glob(s, recursive=True))
            if not hits:
                raise DataError(f"{s}: the glob matches no file")
            files += [Path(h) for h in hits if Path(h).is_file()]
        else:
            p = Path(s)
            if not p.exists():
                raise DataError(f"{s}: no such file (check data.train / data.eval)")
            files.append(p)
    if not files:
        raise DataError("data.train: no data file given")
    return files


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # tolerate a byte-order mark
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: invalid UTF-8 (byte {e.start}); re-save the file as UTF-8") from None
    return text


def read_file(path: Path) -> list[Row]:
    suffix = path.suffix.lower()
    text = _read_text(path)
    name = str(path)
    if suffix in (".jsonl", ".ndjson") or (suffix == ".json" and not text.lstrip().startswith(("[", "{"))):
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise DataError(f"{name}:{i}: invalid JSON: {e.msg} (column {e.colno})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{name}:{i}: expected a JSON object per line, got {type(obj).__name__}")
            rows.append(Row(obj, f"{name}:{i}"))
        return rows
    if suffix == ".json":
        try:
            obj = json.loads(text)
        except ValueError as e:
            raise DataError(f"{name}:{e.lineno}: invalid JSON: {e.msg} (column {e.colno})") from None
        if isinstance(obj, dict):  # an object of arrays: {"train": [...]} or column-wise {"a": [..], "b": [..]}
            lists = {k: v for k, v in obj.items() if isinstance(v, list)}
            if len(lists) == 1:
                obj = next(iter(lists.values()))
            elif lists and len({len(v) for v in lists.values()}) == 1:
                keys = list(lists)
                obj = [dict(zip(keys, vals)) for vals in zip(*lists.values())]
            else:
                raise DataError(f"{name}: expected a JSON array of rows or an object holding one")
        rows = []
        for i, r in enumerate(obj):
            if not isinstance(r, dict):
                raise DataError(f"{name}[{i}]: expected an object, got {type(r).__name__}")
            rows.append(Row(r, f"{name}[{i}]"))
        return rows
    if suffix in (".csv", ".tsv"):
        reader = csv.DictReader(text.splitlines(), delimiter="\t" if suffix == ".tsv" else ",")
        return [Row(dict(r), f"{name} row {i}") for i, r in enumerate(reader, 1)]
    if suffix == ".txt":
        return [Row({"text": line}, f"{name}:{i}") for i, line in enumerate(text.splitlines(), 1) if line.strip()]
    raise DataError(f"{name}: unsupported file type {suffix!r}; use .jsonl, .json, .csv, .tsv or .txt")


def read_rows(spec) -> list[Row]:
    rows: list[Row] = []
    for f in expand(spec):
        rows += read_file(f)
    if not rows:
        raise DataError(f"{spec}: the data holds no rows")
    return rows
