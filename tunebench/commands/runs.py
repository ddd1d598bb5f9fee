"""`tunebench runs|status|logs|stop|pause|resume|save|eval`: look at runs and steer them."""
from __future__ import annotations

import json
import sys
import time

from engine.config.text import printable
from engine.rundir import slurm
from engine.rundir.evalkeys import fmt_metric, metric_values
from engine.rundir.runs import ACTIVE, CONTROLS, LIVE, WAITING, list_runs, placement, resolve_run, runs_dir_from
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


def fresh_status(run) -> dict:
    """status.json, brought up to date with Slurm first for a Slurm run that is not over (no engine may be alive
    to say what happened to it: cancelled while pending, killed at its time limit, a node failure)."""
    st = run.status()
    sl = st.get("slurm")
    if sl and (st.get("state") in LIVE or sl.get("state") not in slurm.OVER) and not slurm.available():
        st = slurm.refresh(run)
    return st


def summary(run, positions: dict | None = None) -> dict:
    st = fresh_status(run)
    state = run.state(st)
    if state == "queued" and positions is None:
        from engine.rundir.queue import Queue

        positions = Queue(run.path.parent).positions()
    return {"id": run.id, "state": state, "where": placement(st), "queue_position": (positions or {}).get(run.id),
            "sweep": st.get("sweep"), "trial": st.get("trial"), "step": st.get("step"), "max_steps": st.get("max_steps"),
            "last_loss": st.get("last_loss"), "last_eval_loss": st.get("last_eval_loss"),
            "started": st.get("started"), "ended": st.get("ended"), "model": st.get("model"),
            "method": st.get("method"), "error": st.get("error"), "note": st.get("note"),
            "last_checkpoint": st.get("last_checkpoint"), "slurm": st.get("slurm"), "nodes": st.get("nodes"),
            "path": str(run.path)}


def _when(t):
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"


def cmd_runs(args) -> int:
    from engine.rundir.queue import Queue

    positions = Queue(runs_dir_from(None)).positions()
    rows = [summary(r, positions) for r in list_runs(runs_dir_from(None))]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print(f"no runs in {runs_dir_from(None).resolve()}")
        return 0
    print(f"{'RUN':40} {'STATE':10} {'WHERE':20} {'STEP':>11} {'LOSS':>8}  {'STARTED':16}  MODEL")
    for r in rows:
        step = f"{r['step'] or 0}/{r['max_steps'] or '?'}"
        loss = f"{r['last_loss']:.4f}" if isinstance(r["last_loss"], (int, float)) else "-"
        state = f"queued #{r['queue_position']}" if r["state"] == "queued" and r["queue_position"] else r["state"]
        print(f"{printable(r['id']):40} {state:10} {printable(r['where']):20} {step:>11} {loss:>8}  "
              f"{_when(r['started']):16}  {printable(r['model'])}")
    return 0


def cmd_status(args) -> int:
    run = resolve_run(runs_dir_from(None), args.run)
    s = summary(run)
    full = {**run.status(), **s}
    sl = full.get("slurm") or {}
    if sl:
        full["slurm"] = " ".join(f"{k}={sl[k]}" for k in ("job_id", "state", "reason", "nodelist") if sl.get(k))
    if args.json:
        print(json.dumps(full, indent=1))
        return 0
    for key in ("id", "state", "where", "slurm", "queue_position", "sweep", "trial", "step", "max_steps",
                "last_loss", "last_eval_loss", "model", "method", "last_checkpoint", "error", "note", "path"):
        if full.get(key) is not None:
            print(f"{key:16} {printable(full[key])}")
    if isinstance(full.get("data"), dict):
        from engine.data.progress import describe

        print(f"{'data':16} {describe(full['data'])}")
    scores = full.get("last_eval_metrics")
    if isinstance(scores, dict) and len(scores) > 1:  # eval.metrics, accuracy...: the last evaluation's
        shown = "  ".join(f"{k} {fmt_metric(k, v)}" for k, v in metric_values(scores).items())
        print(f"{'eval metrics':16} {shown} (step {scores.get('step', '?')})")
    for key in ("started", "ended"):
        if full.get(key):
            print(f"{key:16} {_when(full[key])}")
    return 0 if s["state"] not in ("failed", "lost") else 1


def log_files(run) -> list:
    """The run's logs: engine.log (a local run, or the node that started a multi-node one), each Slurm job's
    output (slurm-<job>.out holds every node's engine output), the other nodes' launchers (nodes/*.log)."""
    paths = [run.log_path] if run.log_path.exists() else []
    paths += sorted(run.path.glob("slurm-*.out"), key=lambda p: p.stat().st_mtime)
    return paths + sorted((run.path / "nodes").glob("*.log"))


def cmd_logs(args) -> int:
    run = resolve_run(runs_dir_from(None), args.run)
    paths = log_files(run)
    if not paths:
        print(f"{run.id}: no engine.log yet" + (" (queued in Slurm)" if run.state() in WAITING else ""),
              file=sys.stderr)
        return 1
    if not args.follow:
        for p in paths:
            if len(paths) > 1:
                print(f"==> {p} <==")
            sys.stdout.write(p.read_text(encoding="utf-8", errors="replace"))
        return 0
    main = paths[-1] if not run.log_path.exists() else run.log_path  # the newest Slurm job's, or engine.log
    with open(main, "rb") as f:
        while True:
            chunk = f.read()
            if chunk:
                sys.stdout.write(chunk.decode("utf-8", errors="replace"))
                sys.stdout.flush()
            if run.state() not in ("created",) + LIVE:
                sys.stdout.write(f.read().decode("utf-8", errors="replace"))
                return 0
            time.sleep(0.5)


def cmd_control(args) -> int:

    run = resolve_run(runs_dir_from(None), args.run)
    state = run.state(fresh_status(run))
    if state in WAITING and args.control == "stop":  # no engine yet: take it out of its queue
        if run.status().get("slurm"):
            return cancel_queued(run)
        from engine.rundir.queue import Queue

        q = Queue(run.path.parent)
        with q.locked():
            try:
                q.cancel(run.id)
            except LookupError:
                state = run.state()  # its engine took it meanwhile: stop the live run below
                if state in WAITING:
                    raise CliError(f"{printable(run.id)} is queued, but not by Slurm nor in {q.dir}; nothing here "
                                   "can take it out of its queue") from None
            else:
                print(f"{printable(run.id)}: cancelled while queued (it never started)")
                return 0
    if state not in ACTIVE:
        raise CliError(f"{run.id} is {state}; {args.control} only reaches a live run")
    assert args.control in CONTROLS
    run.send(args.control)
    print(f"{args.control} sent to {printable(run.id)} ({state}); the engine acts on it after the current step")
    return 0


def cancel_queued(run) -> int:
    """Take a pending Slurm job out of Slurm's queue (scancel)."""
    sl = run.status().get("slurm")
    why = slurm.available()
    if why:
        raise CliError(f"{run.id} is Slurm job {sl.get('job_id')}: {why}")
    try:
        status = slurm.cancel(run)
    except RuntimeError as e:
        raise CliError(str(e)) from None
    print(f"cancelled Slurm job {sl.get('job_id')} ({run.id}); the run is {run.state(status)}")
    return 0


def cmd_verify(args) -> int:
    from engine.rundir.verify import verify_run

    run = resolve_run(runs_dir_from(None), args.run)
    problems = verify_run(run)
    for p in problems:
        print(printable(p))
    n = len(run.checkpoints())
    print(f"{printable(run.id)}: {'sound' if not problems else f'{len(problems)} problem(s)'}; {n} complete checkpoint(s)")
    return 1 if problems else 0
