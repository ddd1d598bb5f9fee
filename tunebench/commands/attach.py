"""`tunebench attach RUN`: open the workbench on one run's Monitor (its whole history, then live)."""
from __future__ import annotations

from engine.rundir.runs import resolve_run, runs_dir_from


def add_parser(sub):
    p = sub.add_parser("attach", help="open the workbench on a run's live monitor (any state; detach with q)")
    p.add_argument("run", help="run id, unique prefix, or run directory")
    p.set_defaults(func=cmd_attach)


def cmd_attach(args) -> int:
    run = resolve_run(runs_dir_from(None), args.run)  # LookupError -> one line, exit 2
    args.run_path = str(run.path.resolve())
    from tui.app import main as workbench  # textual loads only when the workbench opens

    return workbench(args)
