"""Read data files into rows (dicts), each remembering where it came from (file and line, index or row).

Light module: plain json/csv at import; pyarrow (parquet, save_to_disk directories) only when such a file is
read. Hub ids go through engine.data.sources, which adds engine.data.hub (`datasets`). Sources: .jsonl/.ndjson, .json (array or object of arrays),
.csv, .tsv, .parquet, .txt, a `save_to_disk` directory, several files, a glob, or a hub dataset id.

A row that cannot be read (invalid JSON, invalid UTF-8, not an object) is kept as a Row with `error` set,
so validation can report every bad row with its location instead of stopping at the first.
"""
from __future__ import annotations

import csv
import errno
import glob
import io
import json
import os
import re
import stat
from pathlib import Path

from engine.config.sources import split_weight
from engine.config.text import excerpt, printable
from engine.data.errors import DataError, Row

FILE_TYPES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".txt", ".arrow")
# Lone surrogates are what errors="surrogateescape" leaves where bytes were not UTF-8.
_SURROGATE = re.compile("[\udc80-\udcff]")
# Any surrogate in decoded JSON: a \ud800-style escape with no partner, which no UTF-8 text can hold.
_ANY_SURROGATE = re.compile("[\ud800-\udfff]")
TOO_DEEP = "nested too deeply: more than 64 levels of nested arrays or objects; flatten the row"


def bad_utf8(value) -> bool:
    """True when a decoded value (str, or lists/dicts of them) holds bytes that were not UTF-8."""
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(bad_utf8(k) or bad_utf8(v) for k, v in value.items())
    if isinstance(value, list):
        return any(bad_utf8(v) for v in value)
    return False


MAX_DEPTH = 64  # a row nested deeper than this is no training example; past ~1000 Python's parser gives up


def lone_surrogate(value) -> str | None:
    """The first lone surrogate (as \\uXXXX) in a decoded value, or None: JSON can spell one, UTF-8 cannot hold it,
    and a tokenizer or a terminal fails on it far from its row."""
    stack = [value]
    while stack:  # iterative: a value may be nested deeply
        v = stack.pop()
        if isinstance(v, str):
            m = _ANY_SURROGATE.search(v)
            if m:
                return f"\\u{ord(m.group()):04x}"
        elif isinstance(v, dict):
            stack += [*v.keys(), *v.values()]
        elif isinstance(v, list):
            stack += v
    return None


def too_deep(value, limit: int = MAX_DEPTH) -> bool:
    stack = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(v, dict):
            stack += [(x, depth + 1) for x in v.values()]
        elif isinstance(v, list):
            stack += [(x, depth + 1) for x in v]
    return False


def row_problem(obj) -> str | None:
    """What makes a parsed JSON row unusable beyond its syntax: nesting too deep, a lone surrogate."""
    if too_deep(obj):
        return TOO_DEEP
    bad = lone_surrogate(obj)
    return (f"invalid character: a lone surrogate {bad} (an escape with no partner) cannot be encoded; fix the "
            "escape or drop the row") if bad else None


def is_hub_id(spec: str) -> bool:
    """`owner/name` (or `name`) that is no local path and has no file suffix: a dataset on the hub."""
    if Path(spec).exists() or any(c in spec for c in "*?[\\") or spec.startswith((".", "/", "~")):
        return False
    return bool(re.fullmatch(r"[\w.-]+(/[\w.-]+)?", spec)) and Path(spec).suffix.lower() not in FILE_TYPES


def _missing(s: str) -> DataError:
    """Why a path that does not exist does not: a symlink loop or a dangling link is not "no such file"."""
    try:
        os.stat(s)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return DataError(f"{printable(s)}: a symlink loop (the link leads back to itself); point it at a data file")
        if os.path.islink(s):
            return DataError(f"{printable(s)}: a symlink to {printable(os.readlink(s))}, which does not exist")
        if e.errno in (errno.EACCES, errno.EPERM):
            return DataError(f"{printable(s)}: permission denied")
    return DataError(f"{printable(s)}: no such file or directory (check data.train / data.eval)")


def regular_file(p: Path) -> None:
    """Refuse what is not a regular file or a directory: a FIFO or a device would block or never end."""
    mode = os.stat(p).st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or \
            stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
        raise DataError(f"{printable(p)}: {kind}, not a data file; tunebench reads regular files only")


def expand(spec) -> list[Path]:
    """A path, a glob, a directory or a list of them -> existing files or save_to_disk dirs, in a stable order.
    A name that exists as written is that file, even with glob characters in it (`data[1].jsonl`)."""
    specs = [spec] if isinstance(spec, (str, Path)) else list(spec or [])
    files: list[Path] = []
    for s in map(str, specs):
        if not s.strip():
            raise DataError("data.train: empty file name; give a data file, a list of files, a glob or a hub id")
        literal = os.path.lexists(os.path.expanduser(s))
        if not literal and split_weight(s)[1] is not None:  # a mixture's path:weight (engine.data.mixture)
            s = split_weight(s)[0]
            literal = os.path.lexists(os.path.expanduser(s))
        if any(c in s for c in "*?[") and not literal:
            hits = sorted(glob.glob(s, recursive=True))
            if not hits:
                raise DataError(f"{printable(s)}: the glob matches no file")
            files += [Path(h) for h in hits if Path(h).is_file() and Path(h).suffix.lower() in FILE_TYPES]
        else:
            p = Path(s).expanduser()
            if not p.exists():
                raise _missing(str(p))
            regular_file(p)
            if p.is_dir() and not is_saved_dataset(p):
                inner = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in FILE_TYPES[:-1])
                if not inner:
                    raise DataError(f"{s}: the directory holds no data file ({', '.join(FILE_TYPES[:-1])}) "
                                    "and is not a datasets save_to_disk directory")
                files += inner
            else:
                files.append(p)
    if not files:
        raise DataError("data.train: no data file given")
    return files


def is_saved_dataset(p: Path) -> bool:
    return p.is_dir() and any((p / n).exists() for n in ("state.json", "dataset_dict.json", "dataset_info.json"))


def _decode(raw: bytes, name: str) -> str:
    if not raw.strip():
        raise DataError(f"{name}: the file is empty")
    head = raw[:8192]
    if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{name}: this is a binary file, not text (NUL bytes near the start); "
                        "give a .jsonl, .json, .csv, .tsv, .parquet or .txt file")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    # surrogateescape keeps going past bytes that are not UTF-8; the rows holding them are reported one by one.
    return raw.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")


def split_lines(text: str):
    """(line number, line) on \\n only: str.splitlines() also splits at U+2028 etc., valid inside JSON strings."""
    for i, line in enumerate(text.split("\n"), 1):
        yield i, line.removesuffix("\r")


def parse_json_line(line: str, where: str) -> Row:
    if bad_utf8(line):
        return Row(None, where, "invalid UTF-8: the line holds bytes that are not UTF-8; re-save the file as UTF-8")
    try:
        obj = json.loads(line)
    except ValueError as e:
        return Row(None, where, f"invalid JSON: {e.msg} (column {e.colno})")
    except RecursionError:
        return Row(None, where, TOO_DEEP)
    if not isinstance(obj, dict):
        return Row(None, where, f"not an object: expected a JSON object per line, got {type(obj).__name__}")
    bad = row_problem(obj)
    return Row(None, where, bad) if bad else Row(obj, where)


def _json_rows(name: str, text: str) -> list[Row]:
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise DataError(f"{name}:{e.lineno}: invalid JSON: {e.msg} (column {e.colno}); the whole file is one JSON "
                        "document, so nothing in it can be read") from None
    except RecursionError:
        raise DataError(f"{name}: {TOO_DEEP}; the whole file is one JSON document, so nothing in it can be read") from None
    if isinstance(obj, dict):  # an object of arrays: {"train": [...]} or column-wise {"a": [..], "b": [..]}
        lists = {k: v for k, v in obj.items() if isinstance(v, list)}
        if len(lists) == 1:
            obj = next(iter(lists.values()))
        elif lists and len({len(v) for v in lists.values()}) == 1 and len(lists) == len(obj):
            keys = list(lists)
            obj = [dict(zip(keys, vals)) for vals in zip(*lists.values())]
        elif "train" in lists:
            obj = lists["train"]
        else:
            keys = ", ".join(excerpt(k, 20) for k in sorted(obj)[:5])
            raise DataError(f"{name}: expected a JSON array of rows, or an object holding one array "
                            f"(found keys {keys})")
    if not isinstance(obj, list):
        raise DataError(f"{name}: expected a JSON array of rows, got {type(obj).__name__}")
    rows = []
    for i, r in enumerate(obj):
        where = f"{name}[{i}]"
        if not isinstance(r, dict):
            rows.append(Row(None, where, f"not an object: expected an object, got {type(r).__name__}"))
        elif bad_utf8(r):
            rows.append(Row(None, where, "invalid UTF-8: the row holds bytes that are not UTF-8"))
        elif row_problem(r):
            rows.append(Row(None, where, row_problem(r)))
        else:
            rows.append(Row(r, where))
    return rows


def _csv_rows(name: str, text: str, delimiter: str) -> list[Row]:
    return list(csv_rows(name, io.StringIO(text, newline=""), delimiter))


def csv_rows(name: str, stream, delimiter: str):
    """Rows of a CSV/TSV text stream (opened with newline=""), one at a time."""
    reader = csv.reader(stream, delimiter=delimiter)  # csv itself handles CRLF and quoted newlines
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{name}: the file is empty") from None
    header = [h.strip() for h in header]
    if len(set(header)) != len(header) or not all(header):
        raise DataError(f"{name}: line 1 must be a header of distinct, non-empty column names; it begins "
                        f"{excerpt(','.join(header))}")
    for i, values in enumerate(reader, 1):
        if not values or not any(v.strip() for v in values):
            continue
        where = f"{name} row {i} (line {reader.line_num})"
        if len(values) != len(header):
            yield Row(None, where, f"wrong number of fields: {len(values)} fields, the header has "
                                   f"{len(header)} (an unquoted {delimiter!r} in a value?)")
        elif bad_utf8(values):
            yield Row(None, where, "invalid UTF-8: the row holds bytes that are not UTF-8")
        else:
            yield Row(dict(zip(header, values)), where)


def _arrow_rows(name: str, tables) -> list[Row]:
    rows, i = [], 0
    for table in tables:
        for r in table.to_pylist():
            rows.append(Row(r, f"{name}[{i}]"))  # an index, as in a JSON array
            i += 1
    return rows


def read_parquet(path: Path) -> list[Row]:
    try:
        import pyarrow.parquet as pq

        return _arrow_rows(str(path), [pq.read_table(path)])
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable Parquet file: {e}") from None


def saved_shards(path: Path, split: str | None = None) -> tuple[Path, list[Path]]:
    """The split directory of a `save_to_disk` directory and its .arrow files (Arrow streaming format)."""
    if (path / "dataset_dict.json").exists():
        splits = json.loads((path / "dataset_dict.json").read_text()).get("splits", [])
        pick = split or ("train" if "train" in splits else (splits[0] if splits else ""))
        if pick not in splits:
            raise DataError(f"{path}: a DatasetDict with splits {splits}; set data.split to one of them")
        path = path / pick
    shards = sorted(path.glob("*.arrow"))
    if not shards:
        raise DataError(f"{path}: no .arrow files; not a save_to_disk directory")
    return path, shards


def read_saved(path: Path, split: str | None = None) -> list[Row]:
    """A `datasets.save_to_disk` directory (a Dataset, or a DatasetDict whose `split` is taken)."""
    import pyarrow as pa

    path, shards = saved_shards(path, split)
    tables = []
    for shard in shards:  # save_to_disk writes the Arrow streaming format
        with pa.memory_map(str(shard)) as src:
            tables.append(pa.ipc.open_stream(src).read_all())
    return _arrow_rows(str(path), tables)


def read_file(path: Path, split: str | None = None) -> list[Row]:
    if path.is_dir():
        return read_saved(path, split)
    regular_file(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return read_parquet(path)
    if suffix == ".arrow":
        return read_saved(path.parent, split)
    name = printable(path)
    text = _decode(path.read_bytes(), name)
    if suffix in (".jsonl", ".ndjson") or (suffix == ".json" and not text.lstrip().startswith(("[", "{"))):
        return [parse_json_line(line, f"{name}:{i}") for i, line in split_lines(text) if line.strip()]
    if suffix == ".json":
        stripped = text.lstrip()
        # A .json file that is really JSON lines: the first line alone is a complete object.
        first = stripped.split("\n", 1)[0].strip()
        if stripped.startswith("{") and "\n" in stripped.strip() and first.endswith("}"):
            try:
                json.loads(first)
                return [parse_json_line(line, f"{name}:{i}") for i, line in split_lines(text) if line.strip()]
            except ValueError:
                pass
        return _json_rows(name, text)
    if suffix in (".csv", ".tsv"):
        return _csv_rows(name, text, "\t" if suffix == ".tsv" else ",")
    if suffix == ".txt":
        return [Row(None, f"{name}:{i}", "invalid UTF-8: the line holds bytes that are not UTF-8") if bad_utf8(line)
                else Row({"text": line}, f"{name}:{i}") for i, line in split_lines(text) if line.strip()]
    raise DataError(f"{name}: unsupported file type {suffix!r}; use .jsonl, .json, .csv, .tsv, .parquet, .txt "
                    "or a datasets save_to_disk directory")
