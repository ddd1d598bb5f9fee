"""`tunebench join RUN [--detach]`: start this node's share of a multi-node run (hardware.nnodes > 1).

The node that ran `tunebench train` waits at the rendezvous (hardware.rdzv_endpoint) until every node has
joined; the run directory must be on a filesystem this node sees at the same path. The launcher's output goes
to RUN/nodes/<host>-<pid>.log. In the foreground, join waits for this node's share to end and exits with its
status; Ctrl-C leaves it running (stop the run with `tunebench stop RUN`, which reaches every node).
"""
from __future__ import annotations

from engine.rundir import launch
from engine.rundir.runs import resolve_run, runs_dir_from
from tunebench.errors import CliError


def add_parser(sub):
    p = sub.add_parser("join", help="start this node's share of a multi-node run (hardware.nnodes > 1)")
    p.add_argument("run", help="run id or run directory, on a filesystem every node sees")
    p.add_argument("--detach", action="store_true", help="return at once; the node's share keeps running")
    p.set_defaults(func=cmd_join)


def cmd_join(args) -> int:
    try:
        run = resolve_run(runs_dir_from(None), args.run)
    except LookupError as e:
        raise CliError(f"{e}. On another node the run directory must be on a shared filesystem at the same path "
                       "(--runs-dir or TUNEBENCH_RUNS_DIR)") from None
    state = run.state()
    if state == "completed":
        raise CliError(f"{run.id} completed; nothing to join")
    try:
        proc, log = launch.join(run)
    except ValueError as e:
        raise CliError(str(e)) from None
    print(f"joined {run.id}: this node's launcher pid {proc.pid}, log {log}")
    if args.detach:
        return 0
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        print(f"left running: tunebench stop {run.id} stops every node")
        return 130
    print(f"this node's share of {run.id} ended with status {code}; the run is {run.state()}")
    return code
