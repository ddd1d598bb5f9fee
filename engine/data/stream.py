"""Rows of a data spec one at a time, cut into shards that processes read side by side: a file of any size is
read in bounded memory, every row keeping the location engine.data.load gives it.

Light module: plain json/csv; pyarrow for .parquet and save_to_disk directories; `datasets` only for a hub id
(engine.data.hub, streaming). A JSON-lines or .txt file is cut at newlines into pieces of about SHARD_BYTES
(at least one per process), each knowing the number of its first line, so `file:line` is exact in any shard.
CSV/TSV, Parquet and save_to_disk data are read in one shard per file, as a stream. A JSON document (an array
or an object of arrays) up to WHOLE_JSON bytes is parsed whole, as engine.data.load does; a larger array is
decoded object by object.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from engine.data.errors import DataError, Row
from engine.data.load import FILE_TYPES, bad_utf8, csv_rows, expand, is_hub_id, parse_json_line, read_file, saved_shards

SPLIT_BYTES = 4 << 20  # a JSON-lines file under this size is one shard: forking costs more than it saves
SHARD_BYTES = 64 << 20  # larger ones are cut into pieces of about this size (at least one per process)
WHOLE_JSON = 256 << 20  # a JSON array larger than this is decoded object by object instead of parsed whole
BLOCK = 8 << 20  # bytes read at a time while counting lines
BOM = b"\xef\xbb\xbf"


@dataclass
class Shard:
    """A piece of the data: `kind` says how to read it (lines, text, csv, tsv, parquet, saved, json_array,
    whole, hub); byte range [start, end) and the number of its first line for lines and text."""

    source: str
    kind: str
    start: int = 0
    end: int | None = None
    first_line: int = 1
    rows_hint: int = 0  # lines in the piece (blank ones too), or rows when the format says; 0 = unknown
    split: str | None = None
    subset: str | None = None
    size: int = 0


def _kind(path: Path) -> str:
    """How a local file is read; refuses an empty or binary file as engine.data.load does."""
    if path.is_dir():
        return "saved"
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    if suffix == ".arrow":
        return "saved"
    if suffix not in FILE_TYPES:
        raise DataError(f"{path}: unsupported file type {suffix!r}; use .jsonl, .json, .csv, .tsv, .parquet, .txt "
                        "or a datasets save_to_disk directory")
    with open(path, "rb") as f:
        head = f.read(8192)
        while head.isspace() and len(head) < (1 << 20):  # leading blank space: look further for the content
            more = f.read(8192)
            if not more:
                break
            head += more
    if not head.strip():
        raise DataError(f"{path}: the file is empty")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "whole"  # UTF-16: decoded whole by engine.data.load
    if b"\x00" in head[:8192]:
        raise DataError(f"{path}: this is a binary file, not text (NUL bytes near the start); "
                        "give a .jsonl, .json, .csv, .tsv, .parquet or .txt file")
    if suffix in (".csv", ".tsv"):
        return suffix[1:]
    if suffix == ".txt":
        return "text"
    if suffix in (".jsonl", ".ndjson"):
        return "lines"
    return _json_kind(path)


def _json_kind(path: Path) -> str:
    """A .json file: JSON lines (engine.data.load's test: the first line alone is a complete object), or a
    document (parsed whole up to WHOLE_JSON bytes, else streamed when it is an array)."""
    with open(path, "rb") as f:
        first = b""
        while not first.strip():
            line = f.readline()
            if not line:
                break
            first += line
        more = f.read(4096)
    text = first.removeprefix(BOM).decode("utf-8", "surrogateescape").lstrip()
    if not text.startswith(("[", "{")):
        return "lines"
    if text.startswith("{") and more.strip() and text.strip().endswith("}"):
        try:
            json.loads(text.strip())
            return "lines"
        except ValueError:
            pass
    if path.stat().st_size > WHOLE_JSON and text.startswith("["):
        return "json_array"
    return "whole"


def _line_shards(path: Path, kind: str, pieces: int) -> list[Shard]:
    """Cut a lines file at newlines into `pieces` shards of about equal size, counting lines on the way."""
    size = path.stat().st_size
    targets = [size * k // pieces for k in range(1, pieces)] if pieces > 1 else []
    cuts, lines_before, count, offset = [0], [0], 0, 0
    with open(path, "rb") as f:
        while True:
            block = f.read(BLOCK)
            if not block:
                break
            pos = 0
            while targets and targets[0] < offset + len(block):
                at = block.find(b"\n", max(pos, targets[0] - offset))
                if at < 0:
                    break  # the target's line ends in the next block
                count += block.count(b"\n", pos, at + 1)
                pos = at + 1
                if offset + pos > cuts[-1] and offset + pos < size:
                    cuts.append(offset + pos)
                    lines_before.append(count)
                targets.pop(0)
            count += block.count(b"\n", pos)
            offset += len(block)
    total = count + (1 if size and not _ends_with_newline(path) else 0)
    cuts.append(size)
    lines_before.append(total)
    return [Shard(str(path), kind, cuts[i], cuts[i + 1], lines_before[i] + 1, lines_before[i + 1] - lines_before[i],
                  size=cuts[i + 1] - cuts[i]) for i in range(len(cuts) - 1)]


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, 2)
        return f.read(1) == b"\n"


def plan(spec, split: str | None = None, subset: str | None = None, procs: int = 1) -> list[Shard]:
    """The shards of a data spec (files, globs, directories or a hub id), in the order rows are read."""
    if isinstance(spec, str) and spec and is_hub_id(spec):
        return [Shard(spec, "hub", split=split or "train", subset=subset)]
    out: list[Shard] = []
    for path in expand(spec):
        kind = _kind(path)
        if kind in ("lines", "text"):
            size = path.stat().st_size
            pieces = 1 if size < SPLIT_BYTES or procs <= 1 else max(procs, -(-size // SHARD_BYTES))
            out += _line_shards(path, kind, pieces)
        elif kind == "parquet":
            out.append(Shard(str(path), kind, rows_hint=_parquet_rows(path), size=path.stat().st_size))
        else:
            out.append(Shard(str(path), kind, split=split, size=_size(path)))
    return out


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def _parquet_rows(path: Path) -> int:
    try:
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable Parquet file: {e}") from None


def rows(shard: Shard) -> Iterator[Row]:
    """Every row of a shard, bad ones included with `error` set (as engine.data.load reads them)."""
    kind, name = shard.kind, shard.source
    if kind in ("lines", "text"):
        yield from _lines(shard)
    elif kind in ("csv", "tsv"):
        with open(name, encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
            yield from csv_rows(name, f, "\t" if kind == "tsv" else ",")
    elif kind == "parquet":
        yield from _parquet(Path(name))
    elif kind == "saved":
        yield from _saved(Path(name), shard.split)
    elif kind == "json_array":
        yield from _json_array(Path(name))
    elif kind == "hub":
        from engine.data.hub import iter_hub  # imports datasets: only for a hub id

        yield from iter_hub(name, split=shard.split or "train", subset=shard.subset)
    else:
        yield from read_file(Path(name), shard.split)


def _lines(shard: Shard) -> Iterator[Row]:
    name, text = shard.source, shard.kind == "text"
    with open(name, "rb") as f:
        f.seek(shard.start)
        pos, line_no = shard.start, shard.first_line
        end = shard.end if shard.end is not None else float("inf")
        while pos < end:
            raw = f.readline()
            if not raw:
                break
            pos += len(raw)
            if line_no == 1:
                raw = raw.removeprefix(BOM)
            line = raw.decode("utf-8", "surrogateescape").removesuffix("\n").removesuffix("\r")
            if line.strip():
                where = f"{name}:{line_no}"
                if not text:
                    yield parse_json_line(line, where)
                elif bad_utf8(line):
                    yield Row(None, where, "invalid UTF-8: the line holds bytes that are not UTF-8")
                else:
                    yield Row({"text": line}, where)
            line_no += 1


def _parquet(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    i = 0
    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
            for r in batch.to_pylist():
                yield Row(r, f"{path}[{i}]")
                i += 1
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable Parquet file: {e}") from None


def _saved(path: Path, split: str | None) -> Iterator[Row]:
    import pyarrow as pa

    if path.suffix.lower() == ".arrow":
        path = path.parent
    folder, shards = saved_shards(path, split)
    i = 0
    for shard in shards:  # save_to_disk writes the Arrow streaming format; memory-mapped, read batch by batch
        with pa.memory_map(str(shard)) as src:
            for batch in pa.ipc.open_stream(src):
                for r in batch.to_pylist():
                    yield Row(r, f"{folder}[{i}]")
                    i += 1


def _json_array(path: Path) -> Iterator[Row]:
    """The objects of a big JSON array, decoded one by one from a sliding window of the file."""
    dec, name = json.JSONDecoder(), str(path)
    with open(path, "rb") as f:
        text = f.read(BLOCK).removeprefix(BOM).decode("utf-8", "surrogateescape")
        pos, i, consumed_lines, done = text.index("[") + 1, 0, 0, False
        while True:
            while pos < len(text) and text[pos] in " \t\r\n,":
                pos += 1
            if pos < len(text) and text[pos] == "]":
                return
            try:
                obj, end = dec.raw_decode(text, pos)
            except ValueError as e:
                if done:
                    line = consumed_lines + text.count("\n", 0, min(e.pos, len(text))) + 1
                    raise DataError(f"{name}:{line}: invalid JSON: {e.msg}; the whole file is one JSON document, "
                                    "so nothing after this point can be read") from None
                chunk = f.read(BLOCK)
                done = not chunk
                consumed_lines += text.count("\n", 0, pos)
                text = text[pos:] + chunk.decode("utf-8", "surrogateescape")  # a multi-byte character cut at the
                pos = 0  # block's end decodes as escapes here; rare, and only in a value that spans blocks
                continue
            where = f"{name}[{i}]"
            if not isinstance(obj, dict):
                yield Row(None, where, f"not an object: expected an object, got {type(obj).__name__}")
            elif bad_utf8(obj):
                yield Row(None, where, "invalid UTF-8: the row holds bytes that are not UTF-8")
            else:
                yield Row(obj, where)
            i, pos = i + 1, end


def head(shards: list[Shard], n: int = 400) -> list[Row]:
    """The first n rows of the data (what format detection reads)."""
    out: list[Row] = []
    for shard in shards:
        for row in rows(shard):
            out.append(row)
            if len(out) >= n:
                return out
    return out


def identity(spec, split: str | None = None, subset: str | None = None) -> list | None:
    """What names the data's content for a cache key, without reading it: each file's absolute path, size and
    modification time (nanoseconds), and the split asked for; None for a hub id (its rows can change)."""
    if isinstance(spec, str) and spec and is_hub_id(spec):
        return None
    out: list = [["split", split, subset]]
    for path in expand(spec):
        p = path.resolve()
        if p.suffix.lower() == ".arrow":
            p = p.parent
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        out += [[str(f), st.st_size, st.st_mtime_ns] for f in files for st in [f.stat()]]
    return out
