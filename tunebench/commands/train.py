"""`tunebench train CONFIG [--set K=V]... [--detach] [--queue] [--resume RUN[@STEP]] [--slurm ...]`: start (or
resume) a run.

In the foreground it follows the run's events with a progress bar; Ctrl-C asks the engine to stop
gracefully (a second Ctrl-C leaves it running). The engine lives in its own session either way, so
a lost terminal never stops it. A resume is checked before anything starts: one engine per run, the
checkpoint it goes on from (complete, loadable, with its optimizer), the data unchanged. With --slurm the
run is an sbatch job instead: queued until Slurm starts it.
With --queue the run waits in state `queued` until the scheduler (started here when none runs) finds room for it
on the GPU by the memory estimate; see tunebench/commands/queue.py.
"""
from __future__ import annotations

import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

from engine import config as cfgmod
from engine.config.text import printable
from engine.data import fingerprint
from engine.data.progress import describe
from engine.rundir import launch, slurm
from engine.rundir.events import EventTail
from engine.rundir.lock import RunBusy
from engine.rundir.paths import absolute_paths
from engine.rundir.resume import check_overrides, parse_ref
from engine.rundir.resume import plan as resume_plan
from engine.rundir.runs import LIVE, WAITING, Run, create_run, new_run_id, resolve_run, runs_dir_from
from engine.rundir.trust import code_warnings
from tunebench.errors import CliError


def add_parser(sub):
    p = sub.add_parser("train", help="start a training run from a config (or resume one)")
    p.add_argument("config", nargs="?", help="YAML config (a preset or your own); optional with --resume")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V",
                   help="override a key, e.g. --set training.learning_rate=1e-4 (repeatable)")
    p.add_argument("--detach", action="store_true", help="print the run id as the last line and return at once")
    p.add_argument("--resume", metavar="RUN[@STEP]", help="continue a stopped, failed or lost run from its newest "
                   "checkpoint that loads (or from STEP's); --set may change only what does not alter the training")
    p.add_argument("--resume-weights-only", action="store_true",
                   help="with --resume: accept a checkpoint without optimizer/scheduler state (they start fresh)")
    s = p.add_argument_group("Slurm", "submit the run as an sbatch job (see README: Running on a cluster)")
    s.add_argument("--slurm", action="store_true", help="submit with sbatch; the run is queued until Slurm starts it")
    s.add_argument("--slurm-print", action="store_true", help="print the sbatch script and submit nothing")
    s.add_argument("--partition", help="Slurm partition (default: the cluster's)")
    s.add_argument("--nodes", type=_positive, help="nodes to allocate (default hardware.nnodes)")
    s.add_argument("--gpus-per-node", type=_positive, help="GPUs per node; one process each (hardware.nproc_per_node)")
    s.add_argument("--time", help="time limit, HH:MM (or D-HH:MM); at the limit the engine saves and the run fails "
                   "with Slurm's reason")
    s.add_argument("--account", help="Slurm account to charge")
    s.add_argument("--requeue", action="store_true", help="let Slurm requeue the job after preemption; it resumes "
                   "from its last checkpoint")
    s.add_argument("--sbatch", action="append", default=[], metavar="OPTION",
                   help="one more sbatch option for the script, e.g. --sbatch=--mem=64G (repeatable)")
    p.add_argument("--queue", action="store_true", help="wait in the queue until the GPU has room for the run "
                   "(by the memory estimate) instead of starting now")
    p.set_defaults(func=run)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def slurm_options(args, cfg: cfgmod.Config, base: slurm.SlurmOptions | None = None) -> tuple:
    """(SlurmOptions, the config with the nodes and processes it asks for). The config keeps what the user typed:
    --nodes and --gpus-per-node fill hardware.nnodes / nproc_per_node only where the config left the default."""
    hw = cfg.hardware
    base = base or slurm.SlurmOptions(nodes=hw.nnodes)
    nodes = args.nodes or base.nodes
    if args.nodes and hw.nnodes not in (1, args.nodes):
        raise CliError(f"--nodes {args.nodes} contradicts hardware.nnodes {hw.nnodes} in the config; give one")
    per_node = launch.procs_per_node(hw)
    gpus = args.gpus_per_node or base.gpus_per_node
    if args.gpus_per_node and per_node not in (1, args.gpus_per_node):
        raise CliError(f"--gpus-per-node {args.gpus_per_node} contradicts {per_node} processes per node in the config "
                       "(hardware.nproc_per_node / num_processes); give one")
    try:
        time_limit = slurm.parse_time(args.time) if args.time else base.time
    except ValueError as e:
        raise CliError(str(e)) from None
    opts = replace(base, nodes=nodes, gpus_per_node=gpus, time=time_limit, partition=args.partition or base.partition,
                   account=args.account or base.account, requeue=args.requeue or base.requeue,
                   sbatch=base.sbatch + list(args.sbatch))
    cfg = cfg.with_values({"hardware.nnodes": nodes, "hardware.nproc_per_node": gpus or hw.nproc_per_node})
    return opts, cfg


def submit(r: Run, cfg: cfgmod.Config, opts: slurm.SlurmOptions, resume: bool = False) -> None:
    why = slurm.available()
    if why:
        raise CliError(f"--slurm: {why}")
    try:
        job = slurm.submit(r, cfg, opts, Path.cwd(), resume=resume)
    except (RuntimeError, ValueError) as e:
        raise CliError(str(e)) from None
    print(f"submitted Slurm job {job}: the run is queued until Slurm starts it (tunebench status {r.id}); "
          f"script {r.path / slurm.SCRIPT}")


def preflight(cfg: cfgmod.Config) -> dict:
    """engine.planning.preflight (the checks the workbench's Launch runs too), before a run directory exists:
    the model, data.general_eval, and every data row read and converted. Raises CliError with one line per
    problem (the data check's report: counts by reason and the first rows of each) when anything fails.

    The data check is one streaming pass on every core (engine.data.check), remembered in the user's cache for
    the same files and settings; the engine repeats it as it tokenises (rows too long)."""
    from engine.data.check import streamed_reader
    from engine.planning.preflight import preflight as check

    live = sys.stderr.isatty()

    def progress(**p):
        if live and not p.get("final"):
            total = f" of ~{p['rows_total']:,}" if p.get("rows_total") else ""
            print(f"\rchecking {p['pass']} data: {p['rows_done']:,}{total} rows, {p['rows_per_s']:,.0f} rows/s, "
                  f"{p['invalid']} invalid   ", end="", file=sys.stderr, flush=True)

    try:
        pf = check(cfg, streamed_reader(progress))
    finally:
        if live:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
    for warning in pf.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not pf.ok:
        raise CliError(f"not started: {len(pf.messages)} problem(s), nothing was created\n"
                       + "\n".join("  " + m.replace("\n", "\n  ") for m in pf.messages))
    return pf.info


def warn(lines: list[str]) -> None:
    for line in lines:
        print(f"warning: {line}", file=sys.stderr)


def resume(args, runs_dir: Path, use_slurm: bool = False) -> tuple[Run | None, int]:
    """Check everything a resume needs, then start its engine (or submit it again to Slurm when the run was a
    Slurm job or --slurm is given); returns (run, events offset to follow from), (None, 0) for --slurm-print."""
    ref, step = parse_ref(args.resume)
    r = resolve_run(runs_dir, ref)
    holder = r.engine_pid()
    if holder is not None:
        raise RunBusy(r.path, holder)
    state = r.state()
    if state in WAITING and not r.status().get("slurm"):
        raise CliError(f"{r.id} is queued: it starts when the scheduler has room (tunebench queue; "
                       f"tunebench queue cancel {r.id} takes it out)")
    if state in LIVE:
        raise CliError(f"{r.id} is {state}; stop it first (tunebench stop {r.id})")
    if state == "created":
        raise CliError(f"{r.id} is being launched by another tunebench; wait for it to start")
    if state == "completed" and step is None:
        raise CliError(f"{r.id} completed; nothing to resume (RUN@STEP goes back to an earlier checkpoint)")
    if args.config:
        raise CliError("--resume continues a run with its own config.yaml; drop CONFIG")
    check_overrides(args.overrides)  # only what does not change the trajectory
    cfg = r.settings()
    warn(code_warnings(cfg))
    plan = resume_plan(r, step, args.resume_weights_only)
    fingerprint.check(r.path, cfg, r.id)
    warn(plan.notes())
    last = plan.checkpoint
    print(f"resuming {r.id} from {last.name if last else 'the start (no complete checkpoint)'}")
    offset = r.events_path.stat().st_size if r.events_path.exists() else 0  # follow only what this engine writes
    extra = (["--step", str(step)] if step is not None else []) + \
        (["--weights-only"] if args.resume_weights_only else []) + [a for o in args.overrides for a in ("--set", o)]
    queued = r.status().get("slurm")
    if queued or use_slurm:  # a Slurm run resumes as a new job of the same script (new options allowed)
        if extra:
            raise CliError("RUN@STEP, --set and --resume-weights-only are not passed to a Slurm job; resume from its "
                           "newest checkpoint, or locally")
        base = slurm.SlurmOptions(**queued["options"]) if queued and queued.get("options") else None
        opts, cfg = slurm_options(args, cfg, base)
        if args.slurm_print:
            print(slurm.script(r, cfg, opts, Path.cwd()), end="")
            return None, 0
        submit(r, cfg, opts, resume=True)
        return r, offset
    launch.start(r, resume=True, extra=extra)
    if cfg.hardware.nnodes > 1:
        print(f"this node waits at the rendezvous: run `tunebench join {r.id}` on each other node")
    return r, offset


def run(args) -> int:
    runs_dir = runs_dir_from(None)
    if args.resume_weights_only and not args.resume:
        raise CliError("--resume-weights-only goes with --resume RUN")
    use_slurm = args.slurm or args.slurm_print
    if args.queue and (use_slurm or args.resume):
        raise CliError("--queue is tunebench's own queue for a new run on this machine; --slurm queues in Slurm")
    offset = 0
    if args.resume:
        r, offset = resume(args, runs_dir, use_slurm)
        if r is None:
            return 0  # --slurm-print: the script was printed
    else:
        if not args.config:
            raise CliError("train: give a CONFIG file (see presets/) or --resume RUN")
        # config.yaml means the same from any directory
        cfg = absolute_paths(cfgmod.load_config(args.config, args.overrides, for_run=True))
        warn(code_warnings(cfg))
        if use_slurm:
            opts, cfg = slurm_options(args, cfg)
            if args.slurm_print:  # nothing is created: the path is the one a submission now would get
                print(slurm.script(Run(runs_dir.resolve() / new_run_id(cfg)), cfg, opts, Path.cwd()), end="")
                return 0
        else:
            problems = launch.local_problems(cfg.hardware)
            if problems:
                raise cfgmod.ConfigError(problems, source=args.config)
        info = preflight(cfg)
        if use_slurm:
            r = create_run(runs_dir.resolve(), cfg)
            submit(r, cfg, opts)
        elif args.queue:
            from engine.rundir.queue import enqueue
            from engine.scheduling.control import ensure_scheduler

            r, position = enqueue(runs_dir, cfg)  # its paths are absolute: the scheduler may start it elsewhere
            pid = ensure_scheduler(runs_dir)
            print(f"queued {r.id} at #{position}" + (f"; scheduler started (pid {pid})" if pid else ""))
        else:
            r = create_run(runs_dir, cfg)
            pid = launch.start(r)
            print(f"engine pid {pid}, logs: tunebench logs {r.id}")
            if cfg.hardware.nnodes > 1:
                print(f"this node waits at the rendezvous ({cfg.hardware.rdzv_endpoint}): run "
                      f"`tunebench join {r.id}` on each of the other {cfg.hardware.nnodes - 1} node(s)")
        if info:
            print(f"data: {info['format']}, {info['train_rows']} train rows, {info['eval_rows']} eval rows")
    if args.detach:
        print(r.id)
        return 0
    return follow(r, offset)


def num(value) -> str:
    """A loss for the terminal: null in the events means it was not finite (a diverged run)."""
    return f"{value:.4f}" if isinstance(value, (int, float)) else "NaN (not finite)"


def follow(r: Run, offset: int = 0) -> int:
    """Show the run's progress until it ends (from `offset` of its events: a resume shows only its own);
    Ctrl-C once = stop gracefully, twice = leave it running."""
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
    tail = EventTail(r.events_path, offset)
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
                        bar.console.print(printable(e["message"]), style="yellow", markup=False)
                    elif kind == "state":
                        bar.update(task, info=e["state"])
                    elif kind == "data" and e.get("phase"):
                        line = describe(e)
                        if e["phase"] in ("prepare", "score"):
                            bar.update(task, info=line)
                        else:
                            bar.console.print(line)
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
                    if r.state() in WAITING and r.status().get("slurm"):  # no engine yet: out of Slurm's queue
                        slurm.cancel(r)
                        bar.console.print("cancelled the pending Slurm job")
                    else:
                        r.send("stop")
                        bar.console.print("stopping: saving a checkpoint first (Ctrl-C again to leave it running)")
                elif len(interrupts) > 1:
                    bar.console.print(f"left running in the background: tunebench stop {r.id}")
                    return 130
                state = r.state()
                if state in ("completed", "stopped", "failed", "lost", "unstarted"):
                    # The step it ended at: metrics come every logging_steps (355), a stop lands between (358).
                    steps = [e["step"] for e in tail.read() if e.get("kind") in ("metrics", "state") and e.get("step")]
                    st = r.status()  # the total too: a run stopped before its first metrics event never set it
                    bar.update(task, completed=max([*steps, int(st.get("step") or 0)]), total=st.get("max_steps") or None)
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
