"""`tunebench train CONFIG [--set K=V]... [--detach] [--resume RUN]`: start (or resume) a detached run.

In the foreground it follows the run's events with a progress bar; Ctrl-C asks the engine to stop
gracefully (a second Ctrl-C leaves it running). The engine lives in its own session either way, so
a lost terminal never stops it.
"""
from __future__ import annotations

import signal
import sys
import time

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
    p.set_defaults(func=run)


def preflight(cfg: cfgmod.Config) -> dict:
    """engine.planning.preflight (the checks the workbench's Launch runs too), before a run directory exists:
    the model, data.general_eval, and every data row read and converted. Raises CliError with one line per
    problem (the data check's report: counts by reason and the first rows of each) when anything fails."""
    from engine.data.prepare import prepare
    from engine.planning.preflight import preflight as check

    pf = check(cfg, prepare)
    for warning in pf.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not pf.ok:
        raise CliError(f"not started: {len(pf.messages)} problem(s), nothing was created\n"
                       + "\n".join("  " + m.replace("\n", "\n  ") for m in pf.messages))
    return pf.info


def run(args) -> int:

    runs_dir = runs_dir_from(None)
    if args.resume:
        r = resolve_run(runs_dir, args.resume)
        state = r.state()
        if state in ("running", "starting", "paused", "stopping"):
            raise CliError(f"{r.id} is {state}; stop it first (tunebench stop {r.id})")
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
        r = create_run(runs_dir, cfg)
        pid = launch.start(r)
        if info:
            print(f"data: {info['format']}, {info['train_rows']} train rows, {info['eval_rows']} eval rows")
        print(f"engine pid {pid}, logs: tunebench logs {r.id}")
    if args.detach:
        print(r.id)
        return 0
    return follow(r)


def num(value) -> str:
    """A loss for the terminal: null in the events means it was not finite (a diverged run)."""
    return f"{value:.4f}" if isinstance(value, (int, float)) else "NaN (not finite)"


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
                        info = f"loss {num(e.get('loss'))}" + (f"  {e['tokens_per_s']:.0f} tok/s" if e.get("tokens_per_s") else "")
                        st = r.status()
                        bar.update(task, completed=e["step"], total=st.get("max_steps") or None, info=info)
                    elif kind == "eval" and "loss" in e:
                        bar.console.print(f"step {e['step']}: eval loss {num(e['loss'])}")
                    elif kind == "checkpoint":
                        bar.console.print(f"step {e['step']}: checkpoint saved")
                    elif kind == "log" and e.get("level") in ("warning", "error"):
                        bar.console.print(f"[yellow]{e['message']}")
                    elif kind == "state":
                        bar.update(task, info=e["state"])
                if interrupts and not asked_stop:
                    asked_stop = True
                    r.send("stop")
                    bar.console.print("stopping: saving a checkpoint first (Ctrl-C again to leave it running)")
                elif len(interrupts) > 1:
                    bar.console.print(f"left running in the background: tunebench stop {r.id}")
                    return 130
                state = r.state()
                if state in ("completed", "stopped", "failed", "lost"):
                    # The step it ended at: metrics come every logging_steps (355), a stop lands between (358).
                    steps = [e["step"] for e in tail.read() if e.get("kind") in ("metrics", "state") and e.get("step")]
                    bar.update(task, completed=max([*steps, int(r.status().get("step") or 0)]))
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
          + (f": loss {num(s['final_loss'])}, {s['tokens_per_s']:.0f} tokens/s" if s.get('final_loss') is not None else ""))
    return 0
