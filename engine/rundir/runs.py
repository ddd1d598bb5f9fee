"""The run directory: creating runs, atomic status.json, control files, checkpoints, listing runs.

Light module (no torch). Layout and states are the contract of DESIGN.md. Only the engine writes a
run directory, except control/, where clients drop one file per command.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from engine import config as cfgmod
from engine.rundir.atomic import atomic_write

# queued: waiting in the runs dir's queue (engine.rundir.queue) for the scheduler to start it; no process yet,
# so it is not ACTIVE (never shown as lost).
STATES = ("created", "queued", "starting", "running", "paused", "stopping", "completed", "stopped", "failed")
ACTIVE = ("starting", "running", "paused", "stopping")
CONTROLS = ("stop", "pause", "resume", "save", "eval")
META = "tunebench.json"  # the self-description written into every checkpoint
DEFAULT_RUNS_DIR = "runs"
_STATUS_LOCK = threading.Lock()  # the engine's threads (training loop, progress writer) read-modify-write status.json


def runs_dir_from(arg: str | None = None) -> Path:
    return Path(arg or os.environ.get("TUNEBENCH_RUNS_DIR") or DEFAULT_RUNS_DIR)


def process_alive(pid: int | None, started: float | None = None) -> bool:
    """True when `pid` runs and (if given) was created at `started`: a recycled pid is not our engine."""
    if not pid:
        return False
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(p.create_time() - started) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return False


@dataclass
class Checkpoint:
    path: Path
    step: int
    meta: dict

    @property
    def name(self) -> str:
        return self.path.name


class Run:
    """A handle on one run directory; cheap to create, reads files on demand."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def id(self) -> str:
        return self.path.name

    config_path = property(lambda self: self.path / "config.yaml")
    status_path = property(lambda self: self.path / "status.json")
    events_path = property(lambda self: self.path / "events.jsonl")
    log_path = property(lambda self: self.path / "engine.log")
    control_dir = property(lambda self: self.path / "control")
    checkpoints_dir = property(lambda self: self.path / "checkpoints")

    def exists(self) -> bool:
        return self.status_path.exists()

    def config(self) -> dict:
        """config.yaml as written (a raw nested dict)."""
        return cfgmod.load_yaml(self.config_path)

    def settings(self) -> cfgmod.Config:
        """config.yaml validated into the typed Config (ConfigError names every problem)."""
        return cfgmod.load_config(base=self.config())

    def status(self) -> dict:
        try:
            return json.loads(self.status_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {"state": "created"}

    def write_status(self, **updates) -> dict:
        """Merge `updates` into status.json atomically (engine only; threads of one engine take turns)."""
        with _STATUS_LOCK:
            status = self.status()
            status.update(updates)
            status["updated"] = time.time()
            atomic_write(self.status_path, json.dumps(status, indent=1, sort_keys=True))
            return status

    def state(self, status: dict | None = None) -> str:
        """The state to show: `lost` when the status says active but the engine process is gone."""
        status = status or self.status()
        state = status.get("state", "created")
        if state in ACTIVE:
            if status.get("host") not in (None, socket.gethostname()):
                return state  # another host's process: we cannot tell, trust the file
            if not process_alive(status.get("pid"), status.get("pid_started")):
                return "lost"
        return state

    # -- control ----------------------------------------------------------------------------------
    def send(self, command: str, **args) -> Path:
        """Drop a control file; the engine consumes it between steps."""
        if command not in CONTROLS:
            raise ValueError(f"unknown control {command!r}; one of {', '.join(CONTROLS)}")
        self.control_dir.mkdir(mode=0o700, exist_ok=True)
        name = f"{time.time_ns()}-{command}.json"
        atomic_write(self.control_dir / name, json.dumps({"command": command, "uid": os.getuid(), **args}))
        return self.control_dir / name

    def take_controls(self) -> list[str]:
        """Consume pending control commands in order (engine side). Files from other users are ignored."""
        try:
            names = sorted(n for n in os.listdir(self.control_dir) if n.endswith(".json") and not n.startswith("."))
        except FileNotFoundError:
            return []
        out = []
        me = os.getuid()
        for name in names:
            p = self.control_dir / name
            try:
                owner = p.stat().st_uid
                body = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                body, owner = {}, -1
            try:
                p.unlink()
            except OSError:
                pass
            if owner == me and body.get("command") in CONTROLS:
                out.append(body["command"])
        return out

    # -- checkpoints ------------------------------------------------------------------------------
    def checkpoints(self) -> list[Checkpoint]:
        """Complete checkpoints only (renamed into place with their meta file), by step."""
        out = []
        try:
            entries = list(os.scandir(self.checkpoints_dir))
        except FileNotFoundError:
            return out
        for e in entries:
            if not e.name.startswith("checkpoint-") or not e.is_dir():
                continue
            meta_path = Path(e.path) / META
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            out.append(Checkpoint(Path(e.path), int(meta.get("step", 0)), meta))
        return sorted(out, key=lambda c: c.step)

    def last_checkpoint(self) -> Checkpoint | None:
        cps = self.checkpoints()
        return cps[-1] if cps else None


def new_run_id(cfg: cfgmod.Config) -> str:
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in cfg.name)[:32]
    parts = [time.strftime("%Y%m%d-%H%M%S"), cfg.method] + ([name] if name else []) + [secrets.token_hex(2)]
    return "-".join(parts)


def create_run(runs_dir: str | Path, cfg: cfgmod.Config, state: str = "created", **extra) -> Run:
    """Make runs/<id>/ (owner-only), write config.yaml once and status.json as `state` (created, or queued for
    the queue), with `extra` fields (a sweep trial's `sweep`, `trial` and `swept` values)."""
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    while True:
        run = Run(runs_dir / new_run_id(cfg))
        try:
            run.path.mkdir(mode=0o700)
            break
        except FileExistsError:
            continue
    os.chmod(run.path, 0o700)  # mkdir's mode is masked by umask; a shared server must not let others read
    run.control_dir.mkdir(mode=0o700)
    run.checkpoints_dir.mkdir(mode=0o700)
    atomic_write(run.config_path, cfgmod.dump(cfg))
    run.write_status(state=state, created=time.time(), host=socket.gethostname(),
                     method=cfg.method, model=cfg.model.name_or_path, step=0, max_steps=None, **extra)
    return run


def created_time(run: Run) -> float:
    """When the run was created: config.yaml is written once, at creation (ids only resolve seconds)."""
    try:
        return run.config_path.stat().st_mtime
    except OSError:
        return 0.0


def list_runs(runs_dir: str | Path) -> list[Run]:
    """Every run directory under `runs_dir` (those with a status.json), newest first."""
    try:
        entries = [e for e in os.scandir(runs_dir) if e.is_dir() and not e.name.startswith(".")]
    except FileNotFoundError:
        return []
    runs = [Run(e.path) for e in entries]
    runs = [r for r in runs if r.exists()]
    return sorted(runs, key=lambda r: (created_time(r), r.id), reverse=True)


def resolve_run(runs_dir: str | Path, ref: str) -> Run:
    """A run id (or unique prefix/suffix) under `runs_dir`, or a path to a run directory."""
    p = Path(ref)
    if (p / "status.json").exists():
        return Run(p)
    candidate = Run(Path(runs_dir) / ref)
    if candidate.exists():
        return candidate
    matches = [r for r in list_runs(runs_dir) if r.id.startswith(ref) or r.id.endswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise LookupError(f"{ref}: ambiguous, matches {', '.join(r.id for r in matches[:5])}")
    raise LookupError(f"{ref}: no such run in {runs_dir} (see `tunebench runs`)")
