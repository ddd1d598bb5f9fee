"""The scheduler: starts queued runs when their device has room, and keeps sweeps' studies in step with their runs.

Light module (no torch; optuna is imported only when the runs dir has sweeps). One scheduler process per runs
dir (`tunebench scheduler`, or `python -m engine.scheduling RUNS_DIR`), guarded by an flock on
runs/queue/scheduler.lock; `ensure_scheduler` starts one, detached like an engine, when work is waiting. It
polls once a second and exits when the queue is empty and every sweep is settled.

Each tick, under the queue's lock: repair the queue against the runs, settle sweeps (tell Optuna about ended
trials, prune losing ones, ask for new ones), decide (engine.scheduling.room), mark the chosen entries claimed;
then, outside the lock, spawn their engines. The engine takes its run by removing its entry under the same
lock (engine.rundir.queue.taking), so a scheduler killed at any point, or two racing, never start a run twice,
and a restarted one finds every waiting run where it was.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from engine.rundir import launch
from engine.rundir.queue import Queue, queue_dir
from engine.rundir.runs import ACTIVE, Run, list_runs, process_alive
from engine.scheduling import sweepfiles
from engine.scheduling.control import hold_singleton, running_scheduler
from engine.scheduling.room import Load, Machine, decide, device_of, predicted_peak

INTERVAL = 1.0


def _me() -> dict:
    p = psutil.Process()
    return {"by": p.pid, "by_started": p.create_time(), "host": socket.gethostname()}


def _claim_alive(claim: dict) -> bool:
    return claim.get("host") == socket.gethostname() and process_alive(claim.get("by"), claim.get("by_started"))


class Scheduler:
    """One runs dir's scheduler; `tick()` is one round, `loop()` runs rounds until idle."""

    def __init__(self, runs_dir: str | Path, machine=Machine.probe):
        self.runs_dir = Path(runs_dir)
        self.queue = Queue(runs_dir)
        self.machine = machine  # a callable returning the Machine to plan against (tests pass their own)
        self.me = _me()
        self.procs: dict[str, subprocess.Popen] = {}  # engines this scheduler spawned, by run id
        self.peaks: dict[str, tuple[str, int | None, int]] = {}  # run id -> (device, peak, max_concurrent)
        self.sweeps = None  # engine.scheduling.sweeps.Driver, created when the first sweep appears
        self.log = queue_dir(runs_dir) / "decisions.jsonl"
        self._last_logged: dict[str, str] = {}

    # -- one round ----------------------------------------------------------------------------------
    def tick(self) -> list[dict]:
        machine = self.machine()
        with self.queue.locked():
            self.queue.repair()
            self._reap()
            self._settle_sweeps()
            entries = self.queue.entries()
            pending, waiting = [], []
            for e in entries:
                claim = e.claimed
                if claim and (claim.get("by") == self.me["by"] or _claim_alive(claim)
                              or process_alive(claim.get("engine_pid"), claim.get("engine_started"))):
                    pending.append(e)  # its engine is on its way: it counts against the room
                    continue
                if claim:  # claimed by a scheduler that died before its engine took the run: offer it again
                    e.claimed = None
                    self.queue.write(e)
                waiting.append(e)
            active = self._active(machine) + [self._load(e.run_id, machine, running=False) for e in pending]
            decisions = decide([self._load(e.run_id, machine) for e in waiting], active, machine)
            chosen = [e for e, d in zip(waiting, decisions) if d["action"] == "start"]
            for e in chosen:
                e.claimed = {**self.me, "time": time.time()}
                self.queue.write(e)
        for e in chosen:  # outside the lock: the engine needs it to take its run
            run = Run(self.runs_dir / e.run_id)
            try:
                proc = launch.spawn_engine(run)
            except OSError as exc:  # could not even start a process (no python, no space for engine.log)
                with self.queue.locked():
                    if self.queue.remove(e.run_id):
                        run.write_status(state="failed", ended=time.time(), error=f"the engine could not start: {exc}")
                continue
            self.procs[e.run_id] = proc
            try:
                born = psutil.Process(proc.pid).create_time()
            except psutil.Error:
                continue  # exited already: _reap looks at it next round
            with self.queue.locked():
                if self.queue.entry_path(e.run_id).exists():
                    e.claimed = {**e.claimed, "engine_pid": proc.pid, "engine_started": born}
                    self.queue.write(e)
        self._record(decisions)
        return decisions

    def _load(self, run_id: str, machine: Machine, running: bool = True) -> Load:
        """The run's device and predicted peak: recorded by its engine when it has started, else estimated
        from its config (cached: a config never changes)."""
        run = Run(self.runs_dir / run_id)
        status = run.status()
        if run_id not in self.peaks:
            try:
                cfg = run.settings()
                device = device_of(cfg, machine)
                self.peaks[run_id] = (device, predicted_peak(cfg, device, machine), cfg.hardware.max_concurrent)
            except Exception:  # noqa: BLE001 - an unreadable config: plan it as unknown, the engine will fail it
                self.peaks[run_id] = ("cuda" if machine.cuda else "cpu", None, 0)
        device, peak, cap = self.peaks[run_id]
        device = (status.get("resolved") or {}).get("device", device)
        peak = status.get("predicted_peak_bytes") or peak
        return Load(run_id, device, peak, running and status.get("state") in ("running", "paused", "stopping"), cap)

    def _active(self, machine: Machine) -> list[Load]:
        out = []
        for run in list_runs(self.runs_dir):
            st = run.status()
            if st.get("state") in ACTIVE and run.state(st) in ACTIVE:
                out.append(self._load(run.id, machine))
        return out

    def _reap(self) -> None:
        """Engines this scheduler spawned that exited: one that never took its run failed at start."""
        for run_id, proc in list(self.procs.items()):
            if proc.poll() is None:
                continue
            del self.procs[run_id]
            run = Run(self.runs_dir / run_id)
            if run.status().get("state") == "queued" and self.queue.entry_path(run_id).exists():
                tail = run.log_path.read_text(errors="replace")[-800:] if run.log_path.exists() else ""
                self.queue.remove(run_id)
                run.write_status(state="failed", ended=time.time(),
                                 error=f"the engine exited at start (status {proc.returncode}); engine.log ends: {tail}")

    def _settle_sweeps(self) -> None:
        if self.sweeps is None:
            if not sweepfiles.open_sweeps(self.runs_dir):
                return
            from engine.scheduling.sweeps import Driver  # optuna: only for a runs dir with sweeps

            self.sweeps = Driver(self.runs_dir)
        self.sweeps.settle()

    def _record(self, decisions: list[dict]) -> None:
        """Append each start, and each new reason to wait, to queue/decisions.jsonl (a wait repeats every
        second: only changes are written)."""
        lines = []
        for d in decisions:  # the room in a reason moves with NVML's figure: a wait is new when its cause is
            key = f"{d['action']}:{d['active']}:{'cap' if 'at most' in d['reason'] else 'memory'}"
            if d["action"] == "start" or self._last_logged.get(d["run"]) != key:
                self._last_logged[d["run"]] = key
                lines.append(json.dumps({"time": round(time.time(), 3), **d}, default=str) + "\n")
        if lines:
            fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, "".join(lines).encode())
            finally:
                os.close(fd)

    # -- the process ----------------------------------------------------------------------------------
    def idle(self) -> bool:
        """Nothing left to do: no waiting run (an entry stays until its engine has taken it), every sweep settled."""
        return not self.queue.entries() and not sweepfiles.open_sweeps(self.runs_dir)

    def loop(self, stop: threading.Event | None = None, exit_when_idle: bool = True,
             interval: float = INTERVAL, on_idle=lambda: None) -> None:
        """Rounds every `interval` s until `stop`, or until idle; `on_idle` runs under the queue's lock just
        before returning (the process releases its scheduler lock there: an enqueue either happened before and
        kept this scheduler going, or happens after and finds no scheduler, so it starts one)."""
        stop = stop or threading.Event()
        while not stop.is_set():
            try:
                self.tick()
            except Exception as e:  # noqa: BLE001 - one bad round (a run deleted meanwhile) must not end the queue
                print(f"scheduler: round failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            if exit_when_idle:
                with self.queue.locked():
                    if self.idle():
                        on_idle()
                        return
            stop.wait(interval)


def run_scheduler(runs_dir: str | Path, exit_when_idle: bool = True, stop: threading.Event | None = None,
                  machine=Machine.probe) -> int:
    """The scheduler process's body: 0 after it went idle, 1 when another scheduler holds the runs dir."""
    fd = hold_singleton(runs_dir, record=True)
    if fd is None:
        other = running_scheduler(runs_dir) or {}
        print(f"a scheduler already runs for {runs_dir} (pid {other.get('pid', '?')})", file=sys.stderr)
        return 1
    held = [fd]

    def release():
        if held:
            os.close(held.pop())

    try:
        Scheduler(runs_dir, machine=machine).loop(stop=stop, exit_when_idle=exit_when_idle, on_idle=release)
    finally:
        release()
    return 0


__all__ = ["Scheduler", "run_scheduler"]
