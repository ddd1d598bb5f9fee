"""The first rows of a data file, fast, without reading the whole file: what the dataset pane shows first.

Light module: no `datasets`, no torch (pyarrow only for .parquet and save_to_disk directories). Reads a
bounded prefix of the file (1 MiB, growing only while a single line is longer), so a multi-GB JSONL
previews in milliseconds; the row count of a big file is an estimate from the sampled line sizes.
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from engine.data import formats
from engine.data.errors import DataError, Row
from engine.data.load import TOO_DEEP, _arrow_rows, expand, is_hub_id, parse_json_line, row_problem

CHUNK = 1 << 20
MAX_PREFIX = 64 << 20  # a preview never reads more than this, however long a line is
MAX_CHARS = 2000  # longest string value shown per field; the pane is a preview, not an editor


def _prefix_lines(path: Path, n: int) -> tuple[list[bytes], int, bool]:
    """The first n complete lines (bytes, CR kept), the bytes they span, and whether the file ended."""
    with open(path, "rb") as f:
        buf = b""
        while True:
            chunk = f.read(CHUNK if len(buf) < CHUNK else len(buf))
            buf += chunk
            lines = buf.split(b"\n")
            done = not chunk
            if len(lines) > n or done or len(buf) >= MAX_PREFIX:
                keep = lines if done else lines[:-1]  # the last piece may be cut mid-line
                keep = keep[:n]
                return keep, sum(len(x) + 1 for x in keep), done and len(lines) <= n + 1


def estimate_lines(path: Path, windows: int = 8, size: int = 1 << 16) -> int:
    """Lines in a big file from newline counts in a few windows spread over it (8 x 64 KiB reads)."""
    total = path.stat().st_size
    if total <= windows * size:
        with open(path, "rb") as f:
            return f.read().count(b"\n") or 1
    seen = newlines = 0
    with open(path, "rb") as f:
        for k in range(windows):
            f.seek(k * (total - size) // (windows - 1))
            block = f.read(size)
            seen, newlines = seen + len(block), newlines + block.count(b"\n")
    return max(1, round(total * newlines / seen)) if newlines else 1


def _clip(value):
    if isinstance(value, str):
        return value if len(value) <= MAX_CHARS else value[:MAX_CHARS] + f"... [{len(value) - MAX_CHARS} more chars]"
    if isinstance(value, list):
        return [_clip(v) for v in value[:50]]
    if isinstance(value, dict):
        return {k: _clip(v) for k, v in value.items()}
    return value


def _jsonl(path: Path, n: int) -> tuple[list[Row], int | None, bool]:
    lines, spanned, whole = _prefix_lines(path, n)
    rows, name = [], str(path)
    for i, raw in enumerate(lines, 1):
        if i == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        line = raw.decode("utf-8", errors="surrogateescape").removesuffix("\r")
        if line.strip():
            rows.append(parse_json_line(line, f"{name}:{i}"))
    return rows, len(rows) if whole else estimate_lines(path), whole


def _json_array(path: Path, n: int) -> tuple[list[Row], int | None, bool]:
    """Objects of a JSON array decoded one by one from a growing prefix (raw_decode), never the whole file."""
    name, dec = str(path), json.JSONDecoder()
    with open(path, "rb") as f:
        text, pos, rows, whole = "", None, [], False
        while len(rows) < n:
            chunk = f.read(CHUNK)
            whole = not chunk
            text += chunk.decode("utf-8", errors="surrogateescape") if chunk else ""
            if pos is None:
                stripped = text.lstrip("\ufeff \t\r\n")
                if not stripped:
                    if whole:
                        raise DataError(f"{name}: the file is empty")
                    continue
                if stripped[0] != "[":
                    raise _NotArray()
                pos = len(text) - len(stripped) + 1
            while len(rows) < n:
                while pos < len(text) and text[pos] in " \t\r\n,":
                    pos += 1
                if pos < len(text) and text[pos] == "]":
                    return rows, len(rows), True
                try:
                    obj, end = dec.raw_decode(text, pos)
                except ValueError as e:
                    if whole or len(text) > MAX_PREFIX:
                        rows.append(Row(None, f"{name}[{len(rows)}]", f"invalid JSON: {e.msg}"))
                        return rows, None, whole
                    break  # the object continues in the next chunk
                except RecursionError:  # nesting Python's parser cannot follow: nothing after it can be found
                    rows.append(Row(None, f"{name}[{len(rows)}]", TOO_DEEP))
                    return rows, None, whole
                where = f"{name}[{len(rows)}]"
                bad = row_problem(obj) if isinstance(obj, dict) else f"not an object: got {type(obj).__name__}"
                rows.append(Row(None, where, bad) if bad else Row(obj, where))
                pos = end
            if whole:
                break
    # Rough: the file's size over the mean size of the objects read so far (characters ~ bytes).
    return rows, round(path.stat().st_size / (pos / len(rows))) if rows and pos else None, False


class _NotArray(Exception):
    pass


def _delimited(path: Path, n: int, delimiter: str) -> tuple[list[Row], int | None, bool]:
    lines, spanned, whole = _prefix_lines(path, n + 1)
    text = b"\n".join(lines).decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [h.strip() for h in next(reader, [])]
    rows = [Row(dict(zip(header, v)), f"{path} row {i}") if len(v) == len(header) else
            Row(None, f"{path} row {i}", f"wrong number of fields: {len(v)}, the header has {len(header)}")
            for i, v in enumerate(reader, 1) if v]
    return rows, len(rows) if whole else estimate_lines(path) - 1, whole


def _arrow(path: Path, n: int) -> tuple[list[Row], int | None, bool]:
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        batch = next(pf.iter_batches(batch_size=n), None)
        rows = _arrow_rows(str(path), [batch] if batch is not None else [])
        return rows, pf.metadata.num_rows, pf.metadata.num_rows <= n
    from engine.data.load import read_saved

    rows = read_saved(path)  # save_to_disk shards are memory-mapped: cheap to open
    return rows[:n], len(rows), len(rows) <= n


def preview(spec, n: int = 20, method: str = "sft", fmt: str = "auto", columns=None) -> dict:
    """{source, files, size_bytes, rows (first n, values clipped), invalid, columns, format, estimated_rows, exact}.

    `format` is the detection on these rows (None with `format_error` when no format fits)."""
    if isinstance(spec, str) and is_hub_id(spec):
        raise DataError(f"{spec}: a hub dataset id; preview reads local files only (tunebench inspect loads it)")
    files = expand(spec)
    path = files[0]
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in (".parquet", ".arrow"):
        rows, estimate, exact = _arrow(path.parent if suffix == ".arrow" else path, n)
    elif path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    else:
        with open(path, "rb") as f:
            head = f.read(4096)
        if b"\x00" in head:
            raise DataError(f"{path}: this is a binary file, not text (NUL bytes near the start)")
        if suffix in (".csv", ".tsv"):
            rows, estimate, exact = _delimited(path, n, "\t" if suffix == ".tsv" else ",")
        elif suffix == ".json":
            try:
                rows, estimate, exact = _json_array(path, n)
            except _NotArray:  # JSON lines in a .json file, or an object holding the rows
                if path.stat().st_size <= MAX_PREFIX:
                    from engine.data.load import read_file

                    every = read_file(path)  # an object of arrays cannot be read in part; small enough to read
                    rows, estimate, exact = every[:n], len(every), len(every) <= n
                else:
                    rows, estimate, exact = _jsonl(path, n)
        elif suffix == ".txt":
            lines, _, exact = _prefix_lines(path, n)
            rows = [Row({"text": ln.decode("utf-8", "replace").rstrip("\r")}, f"{path}:{i}")
                    for i, ln in enumerate(lines, 1) if ln.strip()]
            estimate = len(rows) if exact else None
        else:
            rows, estimate, exact = _jsonl(path, n)
    cols = formats.parse_columns(columns)
    usable = [Row(formats.remap(r.data, cols), r.location) if r.data else r for r in rows]
    out = {"source": str(spec), "files": [str(f) for f in files], "size_bytes": sum(_size(f) for f in files),
           "rows": [{"location": r.location, "data": _clip(r.data)} for r in usable if r.data is not None],
           "invalid": [{"location": r.location, "reason": r.error} for r in usable if r.error],
           "columns": sorted({k for r in usable if r.data for k in r.data}),
           "estimated_rows": estimate if len(files) == 1 else None, "exact": exact and len(files) == 1,
           "format": None}
    try:
        out["format"] = fmt if fmt != "auto" else (formats.detect(usable, method) if usable else None)
    except DataError as e:
        out["format_error"] = str(e)
    return out


def _size(p: Path) -> int:
    if p.is_dir():
        return sum(os.path.getsize(f) for f in p.rglob("*") if f.is_file())
    return p.stat().st_size
