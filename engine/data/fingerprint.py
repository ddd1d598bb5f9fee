"""The fingerprint of a run's data (each file's resolved path, size, mtime and SHA-256, and the row count), recorded
when the run starts and compared on resume, so a run never goes on silently with other data.

Light (stdlib). A hub dataset id is named, not fingerprinted (its revision is the hub's business).
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from engine.config import Config
from engine.config.text import printable
from engine.data.errors import DataError
from engine.data.load import expand, is_hub_id

ROLES = ("train", "eval", "general_eval", "general_mix_data")
RECORD = "data.json"  # in the run directory: written by the engine when the run starts


class DataChanged(DataError):
    """The data a run trained on is not what its config names now."""


def _specs(cfg: Config) -> dict:
    return {role: getattr(cfg.data, role) for role in ROLES if getattr(cfg.data, role)}


def _files(spec) -> list[Path]:
    out: list[Path] = []
    for p in expand(spec):
        out += sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    return [f.resolve() for f in out]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):  # cost: one more read of the data, ~1 s per GB
            h.update(block)
    return h.hexdigest()


def _entry(path: Path, digest: bool = True) -> dict:
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            **({"sha256": _sha256(path)} if digest else {})}


def record(cfg: Config, rows: int | None = None) -> dict:
    """What the run trains on now: {"sources": {role: [files]}, "hub": {role: id}, "rows": n}."""
    out: dict = {"sources": {}, "hub": {}, "rows": rows, "time": time.time()}
    for role, spec in _specs(cfg).items():
        if isinstance(spec, str) and is_hub_id(spec):
            out["hub"][role] = spec
        else:
            out["sources"][role] = [_entry(f) for f in _files(spec)]
    return out


def _when(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ns / 1e9))


def changes(recorded: dict, cfg: Config) -> list[str]:
    """How the data named by `cfg` differs from `recorded`, one line each; empty when it is the same data. A file
    whose size and mtime are unchanged is the same; one touched but identical (same SHA-256) is too."""
    out: list[str] = []
    specs = _specs(cfg)
    for role in ROLES:
        then = recorded.get("sources", {}).get(role)
        if then is None:
            continue
        spec = specs.get(role)
        try:
            now = _files(spec) if spec else []
        except DataError as e:
            out.append(f"data.{role}: {e}")
            continue
        names_then = [e["path"] for e in then]
        if [str(p) for p in now] != names_then:
            gone = [n for n in names_then if n not in map(str, now)]
            new = [str(p) for p in now if str(p) not in names_then]
            out.append(f"data.{role} now names other files"
                       + (f"; no longer: {', '.join(map(printable, gone[:3]))}" if gone else "")
                       + (f"; new: {', '.join(map(printable, new[:3]))}" if new else ""))
            continue
        for e, p in zip(then, now):
            try:
                st = p.stat()
            except OSError as err:
                out.append(f"{printable(p)}: {err.strerror}")
                continue
            if st.st_size == e["size"] and st.st_mtime_ns == e["mtime_ns"]:
                continue
            if st.st_size == e["size"] and e.get("sha256") and _sha256(p) == e["sha256"]:
                continue  # touched, same bytes
            out.append(f"{printable(p)} changed since the run started: size {e['size']} -> {st.st_size} bytes, "
                       f"modified {_when(e['mtime_ns'])} -> {_when(st.st_mtime_ns)}")
    for role, hub in recorded.get("hub", {}).items():
        if specs.get(role) != hub:
            out.append(f"data.{role} was the hub dataset {printable(hub)}, now {printable(specs.get(role))}")
    return out


def rows_now(cfg: Config) -> int | None:
    """Rows the data holds now (for the refusal message); None when it cannot be read."""
    from engine.data.sources import load

    try:
        return sum(len(load(spec, cfg.data.split, cfg.data.subset)) for spec in _specs(cfg).values()
                   if spec != cfg.data.general_eval)
    except (DataError, OSError):
        return None


def refusal(recorded: dict, cfg: Config, run_id: str, config_path: str | Path) -> str | None:
    """The one-paragraph refusal for `tunebench train --resume` when the data changed, or None."""
    found = changes(recorded, cfg)
    if not found:
        return None
    rows = recorded.get("rows")
    now = rows_now(cfg) if rows is not None else None
    counted = f" (rows {rows} -> {now})" if rows is not None and now is not None and now != rows else ""
    return (f"the data of {printable(run_id)} changed since it started{counted}: {'; '.join(found[:4])}. Resuming "
            "would go on with other data (the data order and the steps done refer to the old rows); restore it, or "
            f"start a new run from this run's config (tunebench train {printable(config_path)})")


def check(run_dir: str | Path, cfg: Config, run_id: str) -> None:
    """Raise DataChanged when the data a run started with changed; nothing for a run without a record."""
    try:
        recorded = json.loads((Path(run_dir) / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # a run from before fingerprints (or one that never got past its start): nothing to compare with
    why = refusal(recorded, cfg, run_id, Path(run_dir) / "config.yaml")
    if why:
        raise DataChanged(why)
