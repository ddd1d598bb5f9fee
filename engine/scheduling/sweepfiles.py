"""A sweep on disk, read without Optuna: runs/sweeps/<id>/ holds sweep.json (what was asked), summary.json (the
study as the scheduler last settled it) and study.db (Optuna's SQLite study).

Light module: the workbench and `tunebench sweep status` read sweeps through here (json files and the trials'
status.json), never through optuna (which loads SQLAlchemy, and numpy/scipy for importance).
"""
from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

from engine.rundir.atomic import atomic_write
from engine.rundir.runs import Run

SWEEPS_DIR = "sweeps"
OPEN = ("running", "stopping")  # states in which the scheduler still has work for a sweep


def sweeps_dir(runs_dir: str | Path) -> Path:
    return Path(runs_dir) / SWEEPS_DIR


def new_sweep_id(name: str) -> str:
    clean = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:32] or "sweep"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{clean}-{secrets.token_hex(2)}"


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def spec(path: Path) -> dict:
    return read_json(path / "sweep.json")


def write_spec(path: Path, data: dict) -> None:
    atomic_write(path / "sweep.json", json.dumps(data, indent=1, default=str))


def summary(path: Path) -> dict:
    return read_json(path / "summary.json")


def list_sweeps(runs_dir: str | Path) -> list[Path]:
    """Sweep directories (those with a sweep.json), newest first."""
    try:
        entries = [Path(e.path) for e in os.scandir(sweeps_dir(runs_dir)) if e.is_dir() and not e.name.startswith(".")]
    except FileNotFoundError:
        return []
    found = [p for p in entries if (p / "sweep.json").exists()]
    return sorted(found, key=lambda p: (spec(p).get("created", 0), p.name), reverse=True)


def open_sweeps(runs_dir: str | Path) -> list[Path]:
    return [p for p in list_sweeps(runs_dir) if spec(p).get("state") in OPEN]


def resolve_sweep(runs_dir: str | Path, ref: str) -> Path:
    """A sweep id (or a unique prefix, suffix or name) under runs/sweeps, or a path to a sweep directory."""
    p = Path(ref)
    if (p / "sweep.json").exists():
        return p
    found = list_sweeps(runs_dir)
    exact = [s for s in found if s.name == ref]
    if exact:
        return exact[0]
    matches = [s for s in found if s.name.startswith(ref) or s.name.endswith(ref) or spec(s).get("name") == ref]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise LookupError(f"{ref}: ambiguous, matches {', '.join(s.name for s in matches[:5])}")
    raise LookupError(f"{ref}: no such sweep in {sweeps_dir(runs_dir)} (see `tunebench sweep status`)")


def peak_of(status: dict) -> int | None:
    s = status.get("summary") or {}
    return s.get("peak_cuda_reserved_bytes") or s.get("peak_cuda_bytes") or s.get("peak_rss_bytes")


def table(runs_dir: str | Path, path: Path) -> dict:
    """The sweep with one row per trial: swept values, state (the run's, or pruned), best and last objective,
    tokens/s, peak memory, and which row is the best. What `tunebench sweep status --json` prints."""
    sp, sm = spec(path), summary(path)
    direction = sp.get("direction", "minimize")
    rows = []
    for t in sm.get("trials", []):
        run = Run(Path(runs_dir) / t["run"]) if t.get("run") else None
        st = run.status() if run is not None and run.exists() else {}
        state = run.state(st) if st else "waiting"
        if t.get("state") == "PRUNED" or (t.get("pruned_at") is not None and state in ("stopping", "stopped")):
            state = "pruned"
        values = [v for _, v in sorted((int(k), v) for k, v in (t.get("intermediate") or {}).items()) if v is not None]
        pick = min if direction == "minimize" else max
        s = st.get("summary") or {}
        rows.append({"trial": t["number"], "run": t.get("run"), "params": t.get("params") or {}, "state": state,
                     "value": t.get("value"), "best": pick(values) if values else None,
                     "last": values[-1] if values else None, "tokens_per_s": s.get("tokens_per_s"),
                     "peak_bytes": peak_of(st), "step": st.get("step"), "max_steps": st.get("max_steps"),
                     "optuna_state": t.get("state"), "error": t.get("error") or st.get("error"),
                     "checkpoint": st.get("final_checkpoint") or st.get("last_checkpoint")})
    best = sm.get("best")
    for r in rows:
        r["is_best"] = bool(best) and r["trial"] == best.get("trial")
    return {"id": path.name, "path": str(path), "name": sp.get("name"), "state": sp.get("state"),
            "mode": sp.get("mode"), "objective": sp.get("objective"), "direction": direction,
            "space": sp.get("space"), "trials_total": sp.get("trials"), "pruner": sp.get("pruner"),
            "best": best, "importance": sm.get("importance"), "importance_note": sm.get("importance_note"),
            "updated": sm.get("updated"), "trials": rows}
