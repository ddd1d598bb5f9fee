"""The run directory: creating runs, atomic status.json, control files, checkpoints, listing runs.

Light module (no torch). Layout and states are the contract of DESIGN.md. Only the engine writes a
run directory, except control/, where clients drop one file per command.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from engine import config as cfgmod
from engine.config.text import printable
from engine.rundir import lock as locks
from engine.rundir.atomic import atomic_write
from engine.rundir.trust import check_run_dir, check_runs_dir, is_mine

STATES = ("created", "queued", "starting", "running", "paused", "stopping", "completed", "stopped", "failed")
# queued: a scheduler holds the run (a pending Slurm job, or the runs dir's own queue, engine.rundir.queue); no
# engine process exists yet, so there is no pid to check and it is never shown as lost. `tunebench stop` takes it
# out of its queue.
WAITING = ("queued",)
# An engine process is alive in these states; a run whose engine is gone while its status says so is `lost`.
ACTIVE = ("starting", "running", "paused", "stopping")
# States a reader derives (never written): `lost` = the engine died while active (or status.json is unreadable
# and no engine holds the run); `unstarted` = created, but its launcher died before an engine took it.
DERIVED = ("lost", "unstarted")
LIVE = WAITING + ACTIVE  # not finished yet
FINAL = ("completed", "stopped", "failed")
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


def placement(status: dict) -> str:
    """Where a run runs, from its status alone: `local`, a host, `2 nodes (a, b)`, `slurm 42 PENDING`."""
    slurm = status.get("slurm")
    if slurm:
        text = f"slurm {slurm.get('job_id', '?')}"
        if slurm.get("state"):
            text += f" {slurm['state']}"
        return text + (f" {slurm['nodelist']}" if slurm.get("nodelist") and slurm.get("state") == "RUNNING" else "")
    nodes = status.get("nodes")
    if nodes:
        hosts = list(dict.fromkeys(n.get("host", "?") for n in nodes))
        return f"{len(nodes)} nodes ({', '.join(hosts)})"
    if (status.get("nnodes") or 1) > 1:
        return f"{status['nnodes']} nodes"
    host = status.get("host")
    return "local" if host in (None, socket.gethostname()) else str(host)


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
        self._written: dict | None = None  # the whole status this handle last wrote (the engine's own record)
        self.launching: locks.RunLock | None = None  # held by the launcher from create_run until start() returns

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
        """A run directory: config.yaml is written first, status.json next (either may be what is left)."""
        return self.config_path.exists() or self.status_path.exists()

    def config(self) -> dict:
        """config.yaml as written (a raw nested dict); refused when another user owns the run (it decides what
        code runs)."""
        check_run_dir(self.path)
        return cfgmod.load_yaml(self.config_path)

    def settings(self) -> cfgmod.Config:
        """config.yaml validated into the typed Config (ConfigError names every problem)."""
        return cfgmod.load_config(base=self.config())

    def status(self) -> dict:
        """status.json; when it is missing or damaged, {"state": "created", "unreadable": why}."""
        try:
            status = json.loads(self.status_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"state": "created", "unreadable": "status.json is missing"}
        except (OSError, ValueError) as e:
            return {"state": "created", "unreadable": f"status.json is damaged ({type(e).__name__})"}
        return status if isinstance(status, dict) else {"state": "created", "unreadable": "status.json is damaged"}

    def base_status(self) -> dict:
        """What status.json said at creation, rebuilt from config.yaml when status.json is gone or damaged."""
        out = {"state": "created", "host": socket.gethostname(), "created": created_time(self), "step": 0,
               "max_steps": None}
        try:
            raw = self.config()
            out.update(method=raw.get("method"), model=(raw.get("model") or {}).get("name_or_path"))
        except Exception:  # noqa: BLE001 - a record of what is known; the config's own errors surface elsewhere
            pass
        return out

    def write_status(self, **updates) -> dict:
        """Write the whole status atomically: what this handle wrote last (the engine's own record, whatever
        happened to the file since), or the file as read the first time, with `updates` laid over it. Never a
        merge into a default: a deleted or damaged status.json comes back complete at the next write.
        Engine only; threads of one engine take turns."""
        with _STATUS_LOCK:
            if self._written is None:
                status = self.status()
                if status.pop("unreadable", None):
                    status = self.base_status()
            else:
                status = dict(self._written)
            status.update(updates)
            status["updated"] = time.time()
            atomic_write(self.status_path, json.dumps(status, indent=1, sort_keys=True))
            self._written = status
            return dict(status)

    def engine_pid(self) -> int | None:
        """The pid of the engine holding the run's lock (0 when unreadable), or None when no engine holds it."""
        return locks.holder(self.path)

    def state(self, status: dict | None = None) -> str:
        """The state to show. A live lock holder means an engine runs, whatever status.json says (it may have
        been deleted or damaged); no holder with an active status means the engine died: `lost`."""
        status = status if status is not None else self.status()
        state = status.get("state", "created")
        unreadable = bool(status.get("unreadable"))
        engine = locks.holder(self.path)
        if engine is not None:
            if unreadable:
                return "running"
            if state == "created":
                return "starting"  # the engine took the run and is about to say so
            if state in ACTIVE or status.get("pid") == engine:
                return state  # a final state with the holder's pid: the engine is on its way out
            return "running"  # a stale file from an earlier engine
        if unreadable:
            return "lost"
        if state == "created":
            return "created" if locks.holder(self.path, locks.LAUNCH_LOCK) is not None else "unstarted"
        if state in ACTIVE:
            if status.get("host") not in (None, socket.gethostname()):
                return state  # another host's process: we cannot tell, trust the file
            if locks.has_lock_file(self.path):
                return "lost"  # this engine version locks the run for its whole life: nobody holds it, so it died
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

    def take_controls(self, before_ns: int | None = None) -> list[str]:
        """Consume pending control commands in order (engine side). Files from other users are ignored.
        `before_ns`: only files sent before that time (their names start with time_ns)."""
        try:
            names = sorted(n for n in os.listdir(self.control_dir) if n.endswith(".json") and not n.startswith("."))
        except FileNotFoundError:
            return []
        if before_ns is not None:
            names = [n for n in names if _sent_ns(n) < before_ns]
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


def _sent_ns(name: str) -> int:
    try:
        return int(name.split("-", 1)[0])
    except ValueError:
        return 0


def new_run_id(cfg: cfgmod.Config) -> str:
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in cfg.name)[:32]
    parts = [time.strftime("%Y%m%d-%H%M%S"), cfg.method] + ([name] if name else []) + [secrets.token_hex(2)]
    return "-".join(parts)


def create_run(runs_dir: str | Path, cfg: cfgmod.Config, state: str = "created", **extra) -> Run:
    """Make runs/<id>/ (owner-only), write config.yaml once and status.json as `state` (created, or queued for
    the queue), with `extra` fields (a sweep trial's `sweep`, `trial` and `swept` values).

    A created run holds its launch lock (`run.launching`) until launch.start() hands it to an engine: a run
    whose creator dies before that shows as `unstarted`, never as pending. A queued one waits for its scheduler."""
    problems = cfgmod.run_rules(cfg.to_dict())  # every creator (CLI, workbench) refuses before a directory exists
    if problems:
        raise cfgmod.ConfigError(problems)
    runs_dir = Path(runs_dir)
    check_runs_dir(runs_dir)
    if not runs_dir.exists():
        runs_dir.parent.mkdir(parents=True, exist_ok=True)
        runs_dir.mkdir(mode=0o700, exist_ok=True)  # a new runs dir is owner-only; an existing one is left as it is
    while True:
        run = Run(runs_dir / new_run_id(cfg))
        try:
            run.path.mkdir(mode=0o700)
            break
        except FileExistsError:
            continue
    os.chmod(run.path, 0o700)  # mkdir's mode is masked by umask; a shared server must not let others read
    try:
        if state == "created":
            run.launching = locks.RunLock.acquire(run.path, locks.LAUNCH_LOCK)
        for d in (run.control_dir, run.checkpoints_dir):
            d.mkdir(mode=0o700)
            os.chmod(d, 0o700)
        atomic_write(run.config_path, cfgmod.dump(cfg))
        run.write_status(state=state, created=time.time(), host=socket.gethostname(),
                         method=cfg.method, model=cfg.model.name_or_path, step=0, max_steps=None, **extra)
    except OSError as e:  # a full disk, most likely: no half-made run is left behind
        if run.launching is not None:
            run.launching.release()
        shutil.rmtree(run.path, ignore_errors=True)
        raise locks.Refused(f"cannot create a run in {printable(runs_dir)}: {e.strerror}") from None
    run._written = None  # the engine starts its own record from the file
    return run


def created_time(run: Run) -> float:
    """When the run was created: config.yaml is written once, at creation (ids only resolve seconds)."""
    try:
        return run.config_path.stat().st_mtime
    except OSError:
        return 0.0


def list_runs(runs_dir: str | Path) -> list[Run]:
    """Every run directory of yours under `runs_dir` (those with a config.yaml or status.json), newest first.
    Refused (trust.Refused) for a runs directory that is not yours or that others may write without the sticky
    bit; other users' run directories in it are never read."""
    check_runs_dir(runs_dir)
    try:
        entries = [e for e in os.scandir(runs_dir) if e.is_dir() and not e.name.startswith(".")]
    except FileNotFoundError:
        return []
    runs = [Run(e.path) for e in entries if is_mine(e.path)]
    runs = [r for r in runs if r.exists()]
    return sorted(runs, key=lambda r: (created_time(r), r.id), reverse=True)


def resolve_run(runs_dir: str | Path, ref: str) -> Run:
    """A run id (or unique prefix/suffix) under `runs_dir`, or a path to a run directory; refused (trust.Refused)
    when another user owns it."""
    p = Path(ref)
    if ref and Run(p).exists() and p.is_dir():
        check_run_dir(p)
        return Run(p)
    check_runs_dir(runs_dir)
    candidate = Run(Path(runs_dir) / ref)
    if ref and "/" not in ref and candidate.exists():
        check_run_dir(candidate.path)
        return candidate
    matches = [r for r in list_runs(runs_dir) if ref and (r.id.startswith(ref) or r.id.endswith(ref))]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise LookupError(f"{printable(ref)}: ambiguous, matches {', '.join(printable(r.id) for r in matches[:5])}")
    raise LookupError(f"{printable(ref)}: no such run in {printable(runs_dir)} (see `tunebench runs`)")
