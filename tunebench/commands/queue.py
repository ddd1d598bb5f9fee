"""`tunebench queue [move RUN up|down|top|bottom | cancel RUN] [--json]` and `tunebench scheduler`: the run queue.

Queued runs wait in runs/queue/ (engine.rundir.queue); the scheduler (engine.scheduling.scheduler) starts them
when their device has room by the memory estimate. `tunebench train --queue` and `tunebench sweep` start a
scheduler when none runs; `tunebench scheduler` runs one in the foreground (after a reboot, say).
"""
from __future__ import annotations

import json
import time

from engine.rundir.queue import Queue
from engine.rundir.runs import Run, runs_dir_from
from tunebench.errors import CliError


def add_parser(sub):
    p = sub.add_parser("queue", help="list queued runs; move or cancel one")
    p.add_argument("action", nargs="?", default="list", choices=("list", "move", "cancel"))
    p.add_argument("run", nargs="?", help="run id (move, cancel)")
    p.add_argument("where", nargs="?", choices=("up", "down", "top", "bottom"), help="move: where to")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_queue)
    p = sub.add_parser("scheduler", help="start queued runs as the GPU has room (runs until the queue is empty)")
    p.add_argument("--stay", action="store_true", help="keep running when the queue is empty")
    p.add_argument("--detach", action="store_true", help="start it in the background (when work waits) and return")
    p.set_defaults(func=cmd_scheduler)


def queue_rows(runs_dir) -> list[dict]:
    out = []
    for i, e in enumerate(Queue(runs_dir).entries()):
        st = Run(runs_dir / e.run_id).status()
        out.append({"position": i + 1, "id": e.run_id, "queued": e.queued, "starting": bool(e.claimed),
                    "model": st.get("model"), "method": st.get("method"), "sweep": st.get("sweep"),
                    "trial": st.get("trial")})
    return out


def cmd_queue(args) -> int:
    runs_dir = runs_dir_from(None)
    q = Queue(runs_dir)
    if args.action in ("move", "cancel") and not args.run:
        raise CliError(f"queue {args.action}: name the run (tunebench queue lists them)")
    if args.action == "move":
        if not args.where:
            raise CliError("queue move RUN up|down|top|bottom")
        with q.locked():
            pos = q.move(_entry_id(q, args.run), args.where)
        print(json.dumps({"run": args.run, "position": pos}) if args.json else f"{args.run}: now #{pos} in the queue")
        return 0
    if args.action == "cancel":
        with q.locked():
            run = q.cancel(_entry_id(q, args.run))
        print(json.dumps({"run": run.id, "state": "stopped", "cancelled": True}) if args.json
              else f"{run.id}: cancelled (it never started)")
        return 0
    rows = queue_rows(runs_dir)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print(f"no queued runs in {runs_dir}")
        return 0
    from engine.scheduling.control import running_scheduler

    sched = running_scheduler(runs_dir)
    print(f"{len(rows)} queued; scheduler {'pid ' + str(sched.get('pid')) if sched else 'not running (tunebench scheduler)'}")
    for r in rows:
        when = time.strftime("%m-%d %H:%M:%S", time.localtime(r["queued"]))
        tag = f"  sweep {r['sweep']} trial {r['trial']}" if r["sweep"] else ""
        print(f"#{r['position']:<3} {r['id']:44} {'starting' if r['starting'] else 'waiting':9} {when}{tag}")
    return 0


def _entry_id(q: Queue, ref: str) -> str:
    ids = [e.run_id for e in q.entries()]
    hits = [i for i in ids if i == ref] or [i for i in ids if i.startswith(ref) or i.endswith(ref)]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise CliError(f"{ref}: ambiguous among queued runs: {', '.join(hits[:5])}")
    raise CliError(f"{ref}: not waiting in the queue (tunebench queue lists the queued runs)")


def cmd_scheduler(args) -> int:
    from engine.scheduling.control import ensure_scheduler, running_scheduler
    from engine.scheduling.scheduler import run_scheduler

    runs_dir = runs_dir_from(None)
    if args.detach:
        pid = ensure_scheduler(runs_dir)
        other = running_scheduler(runs_dir) if pid is None else None
        print(f"scheduler started, pid {pid}" if pid else
              f"scheduler already running, pid {other.get('pid')}" if other else "nothing queued: no scheduler needed")
        return 0
    return run_scheduler(runs_dir, exit_when_idle=not args.stay)
