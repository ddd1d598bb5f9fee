"""`tunebench sweep CONFIG --grid K=A,B ... | --search K=loguniform:LOW:HIGH --trials N`, `sweep status [SWEEP]`,
`sweep stop SWEEP`: hyperparameter sweeps whose trials are queued runs, backed by an Optuna study in SQLite.

Everything is checked before the sweep exists: each grid point and each end of each range is validated as a run
config, and the objective needs evaluation data. The study, sweep.json and summary.json live in
runs/sweeps/<id>/ (see README, "Queue and sweeps"); `status --json` prints what the Sweeps pane shows.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from engine import config as cfgmod
from engine.config import ConfigError
from engine.rundir.runs import runs_dir_from
from engine.scheduling import space as spacemod
from engine.scheduling import sweepfiles
from tunebench.errors import CliError

GIB = 2**30


def add_parser(sub):
    p = sub.add_parser("sweep", help="run a grid or an Optuna search of configs through the queue; status, stop",
                       description="tunebench sweep CONFIG --grid K=A,B | --search K=loguniform:LOW:HIGH --trials N; "
                                   "tunebench sweep status [SWEEP] [--json]; tunebench sweep stop SWEEP")
    p.add_argument("target", nargs="?", help="CONFIG (a YAML file), or `status` / `stop`")
    p.add_argument("sweep", nargs="?", help="status/stop: the sweep id (or a unique prefix, suffix or name)")
    p.add_argument("--grid", action="append", default=[], metavar="K=A,B",
                   help="every combination of these values (repeatable: 3 values x 2 values = 6 trials)")
    p.add_argument("--search", action="append", default=[], metavar="K=KIND:...",
                   help="Optuna (TPE) samples KEY from loguniform:LOW:HIGH, uniform:LOW:HIGH, int:LOW:HIGH, "
                        "logint:LOW:HIGH or choice:A,B (repeatable)")
    p.add_argument("--enqueue", action="append", default=[], metavar="K=V,K=V",
                   help="search: try these values first, before the sampler (repeatable; e.g. your current config)")
    p.add_argument("--trials", type=int, default=0, help="search: how many trials (required with --search)")
    p.add_argument("--objective", default="eval_loss",
                   help="eval metric to optimise: eval_loss (default), accuracy, f1, ... (the run's eval events)")
    p.add_argument("--direction", choices=("minimize", "maximize"),
                   help="default: minimize for losses, maximize for anything else")
    p.add_argument("--pruner", choices=("median", "halving", "none"), default="median",
                   help="stop clearly losing trials at an evaluation: median (worse than the median of earlier "
                        "trials at that step), halving (successive halving), none")
    p.add_argument("--prune-after", type=int, default=2, metavar="N",
                   help="median pruner: completed trials before any trial is pruned (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the search's sampler")
    p.add_argument("--name", default="", help="a label; it becomes part of the sweep id and the trials' run ids")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V",
                   help="override a key of CONFIG for every trial")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args) -> int:
    runs_dir = runs_dir_from(None)
    if args.target == "status":
        return status(runs_dir, args)
    if args.target == "stop":
        return stop(runs_dir, args)
    if not args.target:
        raise CliError("sweep: give a CONFIG with --grid or --search, or `sweep status` / `sweep stop SWEEP`")
    if args.sweep:
        raise CliError(f"sweep {args.target}: unexpected {args.sweep!r} (the values go in --grid/--search)")
    return create(runs_dir, args)


def create(runs_dir: Path, args) -> int:
    if args.grid and args.search:
        raise CliError("sweep: --grid or --search, not both (a search samples from ranges; list fixed values "
                       "with --search KEY=choice:A,B)")
    base = cfgmod.load_config(args.target, args.overrides)
    space, problems = spacemod.parse_space(args.grid, args.search)
    mode = "grid" if args.grid else "search"
    if mode == "search" and args.trials < 1:
        problems.append(cfgmod.Problem("--trials", "a search needs the number of trials", "e.g. --trials 12"))
    if mode == "grid" and args.trials:
        problems.append(cfgmod.Problem("--trials", "a grid runs every combination once; --trials is for --search"))
    first = []
    for text in args.enqueue:
        point, more = spacemod.parse_point(text, space)
        problems += more
        first.append(point)
    if first and mode == "grid":
        problems.append(cfgmod.Problem("--enqueue", "a grid runs its own points; --enqueue is for --search"))
    if not problems:
        problems = spacemod.check(base, space, mode, args.objective, first)
    if problems:
        raise ConfigError(problems, source=args.target)
    from engine.scheduling import sweeps
    from engine.scheduling.control import ensure_scheduler
    from tui.launching import absolute_paths  # the scheduler's engines may start in another directory
    from tunebench.commands.train import preflight

    preflight(base)  # every data row reads, before any run exists
    direction = args.direction or spacemod.direction_of(args.objective)
    path = sweeps.create(runs_dir, absolute_paths(base, Path.cwd()), space, mode=mode, trials=args.trials,
                         objective=args.objective, direction=direction, pruner=args.pruner,
                         prune_after=args.prune_after, seed=args.seed, name=args.name, source=str(args.target),
                         first=first)
    pid = ensure_scheduler(runs_dir)
    table = sweepfiles.table(runs_dir, path)
    if args.json:
        print(json.dumps(table, indent=1, default=str))
        return 0
    total = table["trials_total"]
    print(f"sweep {path.name}: {mode}, {total} trial(s), {direction} {args.objective}, pruner {args.pruner}; "
          f"{len(table['trials'])} queued now" + (f"; scheduler started (pid {pid})" if pid else ""))
    print(f"follow it: tunebench sweep status {path.name}   (or the Sweeps pane [8] in the workbench)")
    return 0


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def status(runs_dir: Path, args) -> int:
    paths = [sweepfiles.resolve_sweep(runs_dir, args.sweep)] if args.sweep else sweepfiles.list_sweeps(runs_dir)
    tables = [sweepfiles.table(runs_dir, p) for p in paths]
    if args.json:
        print(json.dumps(tables[0] if args.sweep else tables, indent=1, default=str))
        return 0
    if not tables:
        print(f"no sweeps in {sweepfiles.sweeps_dir(runs_dir)}")
        return 0
    for t in tables:
        done = sum(1 for r in t["trials"] if r["optuna_state"] in ("COMPLETE", "PRUNED", "FAIL"))
        best = t["best"]
        print(f"{t['id']}  {t['state']}  {t['mode']}  {done}/{t['trials_total']} done  {t['direction']} "
              f"{t['objective']}" + (f"  best {_fmt(best['value'])} (trial {best['trial']})" if best else ""))
        if not args.sweep:
            continue
        keys = list(t["space"] or {})
        print(f"  {'#':>3} {'state':10} " + " ".join(f"{k.rpartition('.')[2][:14]:>14}" for k in keys)
              + f" {'best':>9} {'last':>9} {'tok/s':>8} {'peak GiB':>8}  run")
        for r in t["trials"]:
            mark = "*" if r["is_best"] else " "
            peak = f"{r['peak_bytes'] / GIB:.2f}" if r["peak_bytes"] else "-"
            print(f" {mark}{r['trial']:>3} {r['state']:10} " + " ".join(f"{_fmt(r['params'].get(k)):>14}" for k in keys)
                  + f" {_fmt(r['best']) if r['best'] is not None else '-':>9} "
                  f"{_fmt(r['last']) if r['last'] is not None else '-':>9} "
                  f"{_fmt(r['tokens_per_s']) if r['tokens_per_s'] else '-':>8} {peak:>8}  {r['run'] or '-'}")
        if t["importance"]:
            print("  importance: " + ", ".join(f"{k} {v:.2f}" for k, v in t["importance"].items()))
        elif t["importance_note"]:
            print(f"  {t['importance_note']}")
        if t.get("updated"):
            print(f"  settled {time.strftime('%H:%M:%S', time.localtime(t['updated']))}")
    return 0


def stop(runs_dir: Path, args) -> int:
    if not args.sweep:
        raise CliError("sweep stop SWEEP: name the sweep (tunebench sweep status lists them)")
    from engine.scheduling import sweeps

    path = sweepfiles.resolve_sweep(runs_dir, args.sweep)
    done = sweeps.stop(runs_dir, path)
    state = sweepfiles.spec(path).get("state")
    if args.json:
        print(json.dumps({"id": path.name, "state": state, **done}, indent=1))
        return 0
    print(f"{path.name}: {state}; cancelled {len(done['cancelled'])} queued trial(s), "
          f"asked {len(done['stopped'])} running trial(s) to stop")
    return 0
