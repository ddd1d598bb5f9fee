"""`tunebench train CONFIG [--set K=V]... [--detach] [--queue] [--resume RUN]`: start (or resume) a detached run.

With --queue the run waits in state `queued` until the scheduler (started here when none runs) finds room for it
on the GPU by the memory estimate; see tunebench/commands/queue.py.

In the foreground it follows the run's events with a progress bar; Ctrl-C asks the engine to stop
gracefully (a second Ctrl-C leaves it running). The engine lives in its own session either way, so
a lost terminal never stops it.
"""
from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from engine import config as cfgmod
from engine.rundir import launch
from engine.rundir.events import EventTail
from engine.rundir.runs import Run, create_run, resolve_run, runs_dir_from
from tunebench.errors import CliError


def add_parser(sub):
    p = sub.add_parser("train", help="start a training run from a config (or resume one)")
    p.add_argument("config", nargs="?", help="YAML config (a preset or your own); optional with --resume")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V",
                   help="override a key, e.g. --set training.learning_rate=1e-4 (repeatable)")
    p.add_argument("--detach", action="store_true", help="print the run id as the last line and return at once")
    p.add_argument("--resume", metavar="RUN", help="continue a stopped, failed or lost run from its last checkpoint")
    p.add_argument("--queue", action="store_true", help="wait in the queue until the GPU has room for the run "
                   "(by the memory estimate) instead of starting now")
    p.set_defaults(func=run)


def preflight(cfg: cfgmod.Config) -> dict:
    """Checks that need no ML stack, before a run directory exists: every data row must read and convert.

    Invalid rows raise InvalidRows (a DataError: exit 2 with counts by reason and the first rows of each)
    unless data.skip_invalid is set; the engine repeats the check with the tokenizer (rows too long to train).
    """
    from engine.data.prepare import prepare

    _, _, info = prepare(cfg)
    for warning in info.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    return info


def run(args) -> int:

    runs_dir = runs_dir_from(None)
    if args.resume:
        r = resolve_run(runs_dir, args.resume)
        state = r.state()
        if state in ("running", "starting", "paused", "stopping"):
            raise CliError(f"{r.id} is {state}; stop it first (tunebench stop {r.id})")
        if state == "queued":
            raise CliError(f"{r.id} is queued: it starts when the scheduler has room (tunebench queue; "
                           f"tunebench queue cancel {r.id} takes it out)")
        if state == "completed":
            raise CliError(f"{r.id} completed; nothing to resume")
        if args.config or args.overrides:
            raise CliError("--resume continues a run with its own config.yaml; drop CONFIG and --set")
        last = r.last_checkpoint()
        print(f"resuming {r.id} from {last.name if last else 'the start (no complete checkpoint)'}")
        launch.start(r, resume=True)
    else:
        if not args.config:
            raise CliError("train: give a CONFIG file (see presets/) or --resume RUN")
        cfg = cfgmod.load_config(args.config, args.overrides)
        if cfg.model.trust_remote_code:
            print(f"warning: model.trust_remote_code is on: Python code shipped with {cfg.model.name_or_path} "
                  "will run in the engine with your permissions; only for models you trust", file=sys.stderr)
        info = preflight(cfg)
        if args.queue:
            from engine.rundir.queue import enqueue
            from engine.scheduling.control import ensure_scheduler
            from tui.launching import absolute_paths  # the scheduler's engines may start in another directory

            r, position = enqueue(runs_dir, absolute_paths(cfg, Path.cwd()))
            pid = ensure_scheduler(runs_dir)
            print(f"queued {r.id} at #{position}" + (f"; scheduler started (pid {pid})" if pid else ""))
        else:
            r = create_run(runs_dir, cfg)
            pid = launch.start(r)
            print(f"engine pid {pid}, logs: tunebench logs {r.id}")
        if info:
            print(f"data: {info['format']}, {info['train_rows']} train rows, {info['eval_rows']} eval rows")
    if args.detach:
        print(r.id)
        return 0
    return follow(r)


def follow(r: Run) -> int:
    """Show the run's progress until it ends; Ctrl-C once = stop gracefully, twice = leave it running."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=False)
    interrupts = []
    previous = signal.signal(signal.SIGINT, lambda *_: interrupts.append(time.time()))
    tail = EventTail(r.events_path)
    asked_stop = False
    try:
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                      console=console, transient=False) as bar:
            task = bar.add_task(r.id, total=None, info="starting")
            while True:
                for e in tail.read():
                    kind = e.get("kind")
                    if kind == "metrics":
                        info = f"loss {e['loss']:.4f}" + (f"  {e['tokens_per_s']:.0f} tok/s" if e.get("tokens_per_s") else "")
                        st = r.status()
                        bar.update(task, completed=e["step"], total=st.get("max_steps") or None, info=info)
                    elif kind == "eval" and "loss" in e:
                        bar.console.print(f"step {e['step']}: eval loss {e['loss']:.4f}")
                    elif kind == "checkpoint":
                        bar.console.print(f"step {e['step']}: checkpoint saved")
                    elif kind == "log" and e.get("level") in ("warning", "error"):
                        bar.console.print(f"[yellow]{e['message']}")
                    elif kind == "state":
                        bar.update(task, info=e["state"])
                if r.status().get("state") == "queued":
                    from engine.rundir.queue import Queue

                    pos = Queue(r.path.parent).positions().get(r.id)
                    bar.update(task, info=f"queued #{pos}" if pos else "queued")
                if interrupts and not asked_stop and r.status().get("state") == "queued":
                    from engine.rundir.queue import Queue

                    q = Queue(r.path.parent)
                    with q.locked():
                        try:
                            q.cancel(r.id)  # it never started: Ctrl-C takes it out of the queue
                        except LookupError:
                            pass  # its engine took it meanwhile: stopped below like any live run
                        else:
                            bar.console.print(f"{r.id}: cancelled while queued (it never started)")
                            return 130
                if interrupts and not asked_stop:
                    asked_stop = True
                    r.send("stop")
                    bar.console.print("stopping: saving a checkpoint first (Ctrl-C again to leave it running)")
                elif len(interrupts) > 1:
                    bar.console.print(f"left running in the background: tunebench stop {r.id}")
                    return 130
                state = r.state()
                if state in ("completed", "stopped", "failed", "lost"):
                    for e in tail.read():
                        if e.get("kind") == "metrics":
                            bar.update(task, completed=e["step"])
                    break
                time.sleep(0.25)
    finally:
        signal.signal(signal.SIGINT, previous)
    status = r.status()
    if state == "failed":
        print(f"run {r.id} failed: {status.get('error')}", file=sys.stderr)
        return 1
    if state == "lost":
        print(f"run {r.id} lost: the engine process is gone; see tunebench logs {r.id}", file=sys.stderr)
        return 1
    s = status.get("summary") or {}
    print(f"run {r.id} {state} at step {status.get('step')}"
          + (f": loss {s['final_loss']:.4f}, {s['tokens_per_s']:.0f} tokens/s" if s.get("final_loss") is not None else ""))
    return 0
