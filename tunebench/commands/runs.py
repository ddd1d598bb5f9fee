"""`tunebench runs|status|logs|stop|pause|resume|save|eval`: look at runs and steer them."""
from __future__ import annotations

import json
import sys
import time

from engine.rundir.runs import CONTROLS, list_runs, resolve_run, runs_dir_from
from tunebench.errors import CliError


def add_parser(sub):
    p = sub.add_parser("runs", help="list runs")
    p.add_argument("--json", action="store_true", help="one JSON object per run, in a list")
    p.set_defaults(func=cmd_runs)
    p = sub.add_parser("status", help="show one run's status")
    p.add_argument("run", help="run id or run directory")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("logs", help="print a run's engine.log")
    p.add_argument("run")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing as the log grows")
    p.set_defaults(func=cmd_logs)
    p = sub.add_parser("verify", help="check a run directory: events parse, every checkpoint is complete and loads")
    p.add_argument("run")
    p.set_defaults(func=cmd_verify)
    # `eval` is tunebench.commands.eval: evaluate-now for a live run, or benchmarks with --tasks
    for name, helptext in (("stop", "stop a run (saves a checkpoint first)"), ("pause", "pause a run between steps"),
                           ("resume", "resume a paused run"), ("save", "save a checkpoint now")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("run")
        p.set_defaults(func=cmd_control, control=name)


def summary(run) -> dict:
    st = run.status()
    return {"id": run.id, "state": run.state(st), "step": st.get("step"), "max_steps": st.get("max_steps"),
            "last_loss": st.get("last_loss"), "last_eval_loss": st.get("last_eval_loss"),
            "started": st.get("started"), "ended": st.get("ended"), "model": st.get("model"),
            "method": st.get("method"), "error": st.get("error"), "last_checkpoint": st.get("last_checkpoint"),
            "path": str(run.path)}


def _when(t):
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"


def cmd_runs(args) -> int:
    rows = [summary(r) for r in list_runs(runs_dir_from(None))]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print(f"no runs in {runs_dir_from(None)}")
        return 0
    print(f"{'RUN':40} {'STATE':10} {'STEP':>11} {'LOSS':>8}  {'STARTED':16}  MODEL")
    for r in rows:
        step = f"{r['step'] or 0}/{r['max_steps'] or '?'}"
        loss = f"{r['last_loss']:.4f}" if isinstance(r["last_loss"], (int, float)) else "-"
        print(f"{r['id']:40} {r['state']:10} {step:>11} {loss:>8}  {_when(r['started']):16}  {r['model']}")
    return 0


def cmd_status(args) -> int:
    run = resolve_run(runs_dir_from(None), args.run)
    s = summary(run)
    full = {**run.status(), **s}
    if args.json:
        print(json.dumps(full, indent=1))
        return 0
    for key in ("id", "state", "step", "max_steps", "last_loss", "last_eval_loss", "model", "method",
                "last_checkpoint", "error", "path"):
        if full.get(key) is not None:
            print(f"{key:16} {full[key]}")
    for key in ("started", "ended"):
        if full.get(key):
            print(f"{key:16} {_when(full[key])}")
    return 0 if s["state"] not in ("failed", "lost") else 1


def cmd_logs(args) -> int:
    run = resolve_run(runs_dir_from(None), args.run)
    try:
        f = open(run.log_path, "rb")
    except FileNotFoundError:
        print(f"{run.id}: no engine.log yet", file=sys.stderr)
        return 1
    with f:
        while True:
            chunk = f.read()
            if chunk:
                sys.stdout.write(chunk.decode("utf-8", errors="replace"))
                sys.stdout.flush()
            if not args.follow:
                return 0
            if run.state() not in ("created", "starting", "running", "paused", "stopping"):
                sys.stdout.write(f.read().decode("utf-8", errors="replace"))
                return 0
            time.sleep(0.5)


def cmd_control(args) -> int:

    run = resolve_run(runs_dir_from(None), args.run)
    state = run.state()
    if state not in ("starting", "running", "paused", "stopping"):
        raise CliError(f"{run.id} is {state}; {args.control} only reaches a live run")
    assert args.control in CONTROLS
    run.send(args.control)
    print(f"{args.control} sent to {run.id} ({state}); the engine acts on it after the current step")
    return 0


def cmd_verify(args) -> int:
    from engine.rundir.verify import verify_run

    run = resolve_run(runs_dir_from(None), args.run)
    problems = verify_run(run)
    for p in problems:
        print(p)
    n = len(run.checkpoints())
    print(f"{run.id}: {'sound' if not problems else f'{len(problems)} problem(s)'}; {n} complete checkpoint(s)")
    return 1 if problems else 0
