"""Prepared datasets kept in the user's cache directory, so a resume or the next run on the same data starts at
once: one directory per key, written under a temporary name and renamed when complete.

Light module (pyarrow only to check an entry's files). The root is $TUNEBENCH_CACHE_DIR (default
~/.cache/tunebench) / prepared. A key is the hash of everything that changes the prepared rows: the data files'
identity (absolute path, size, modification time), the tokenizer's content and chat template, and every config
key that changes the result (engine.data.pipeline builds it). An entry whose meta.json is missing or unreadable,
or whose Arrow files are missing, of another size or not whole Arrow streams, is removed and rebuilt. The
total size is kept under $TUNEBENCH_DATA_CACHE_GB (default 20) by removing the least recently used entries.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path

META = "meta.json"
DEFAULT_LIMIT_GB = 20.0


def root() -> Path:
    base = os.environ.get("TUNEBENCH_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tunebench")
    return Path(base) / "prepared"


def limit_bytes() -> int:
    try:
        gb = float(os.environ.get("TUNEBENCH_DATA_CACHE_GB", DEFAULT_LIMIT_GB))
    except ValueError:
        gb = DEFAULT_LIMIT_GB
    return int(gb * 2**30)


def make_key(doc: dict) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _arrow_rows(path: Path) -> int | None:
    """Rows of an Arrow stream file, reading only its batch headers; None when it is not a whole stream."""
    import pyarrow as pa

    try:
        with pa.memory_map(str(path)) as src:
            return sum(batch.num_rows for batch in pa.ipc.open_stream(src))
    except (OSError, pa.ArrowInvalid):
        return None


def damaged(entry: Path, meta: dict) -> str | None:
    """Why an entry cannot be used, or None when every file it lists is there, whole."""
    for f in meta.get("files", []):
        p = entry / f["name"]
        if not p.is_file():
            return f"{f['name']} is missing"
        if p.stat().st_size != f["bytes"]:
            return f"{f['name']} has {p.stat().st_size} bytes, {f['bytes']} were written"
        if "rows" in f and _arrow_rows(p) != f["rows"]:
            return f"{f['name']} is not a whole Arrow file of {f['rows']} rows"
    return None


def lookup(key: str) -> tuple[Path, dict] | tuple[None, str | None]:
    """(entry, meta) for a usable entry (marked as just used), else (None, why a damaged one was removed)."""
    entry = root() / key
    if not entry.is_dir():
        return None, None
    try:
        meta = json.loads((entry / META).read_text())
        why = damaged(entry, meta) if meta.get("key") == key else "its meta.json names another key"
    except (OSError, ValueError) as e:
        why = f"its meta.json is unreadable ({type(e).__name__})"
    if why:
        remove(entry)
        return None, why
    os.utime(entry / META)  # the least recently used entries go first when the cache is full
    return entry, meta


def staging(key: str) -> Path:
    """A new directory to build an entry in; its name says which process builds it."""
    d = root() / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    d.mkdir(parents=True, mode=0o700)
    return d


def write_meta(d: Path, meta: dict) -> None:
    tmp = d / (META + ".tmp")
    tmp.write_text(json.dumps(meta, default=str))
    os.replace(tmp, d / META)


def publish(tmp: Path, key: str, meta: dict) -> Path:
    """Complete an entry: meta.json last, then the directory renamed into place. When another process
    published the same key first, its entry is kept and this one removed."""
    write_meta(tmp, {**meta, "key": key, "created": time.time()})
    final = root() / key
    try:
        os.rename(tmp, final)
    except OSError:  # the key exists: a run beside this one finished first; both hold the same rows
        if lookup(key)[0] is None:
            return tmp  # ... but it was damaged (and is gone now): this run keeps reading its own copy
        remove(tmp)
    evict(keep=key)
    return final


def remove(path: Path) -> None:
    """Rename away first, then delete: a reader never sees a half-deleted entry under its key."""
    gone = path.with_name(f".deleting-{path.name}-{uuid.uuid4().hex[:6]}")
    try:
        os.rename(path, gone)
    except OSError:
        return
    shutil.rmtree(gone, ignore_errors=True)


def _size(d: Path) -> int:
    return sum(f.stat().st_size for f in d.iterdir() if f.is_file())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def evict(keep: str | None = None, limit: int | None = None) -> list[str]:
    """Remove the least recently used entries until the cache fits its limit (never `keep`), and the
    staging directories of builders that died. Returns the removed keys."""
    base, limit = root(), limit_bytes() if limit is None else limit
    if not base.is_dir():
        return []
    entries, removed = [], []
    for d in base.iterdir():
        if d.name.startswith(".tmp-"):
            pid = d.name.split("-")[2]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(d, ignore_errors=True)
            continue
        if d.name.startswith(".deleting-"):
            shutil.rmtree(d, ignore_errors=True)
            continue
        if d.is_dir():
            try:
                used = (d / META).stat().st_mtime
            except OSError:
                used = 0.0
            entries.append((used, d.name, _size(d)))
    total = sum(e[2] for e in entries)
    for used, name, size in sorted(entries):
        if total <= limit:
            break
        if name == keep:
            continue
        remove(base / name)
        removed.append(name)
        total -= size
    return removed
