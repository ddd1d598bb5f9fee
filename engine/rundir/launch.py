"""Start an engine process for a run, detached from the caller (its own session, output to engine.log).

Light module. The command is an argument list, never a shell string built from user input. One node: the
engine itself, or torchrun/accelerate for several processes. Several nodes: torchrun's c10d rendezvous at
hardware.rdzv_endpoint, with the run id as the rendezvous id; `start` launches this node's share and
`join` the share of each other node (the ranks meet at the rendezvous, rank 0 lands on any of them).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from engine.config import ConfigError, Hardware, Problem
from engine.rundir import lock as locks
from engine.rundir.runs import Run

ROOT = Path(__file__).resolve().parents[2]  # the project root, so every engine runs this same code


def procs_per_node(hw: Hardware) -> int:
    return hw.nproc_per_node or hw.num_processes


def worker_args(run: Run, resume: bool = False, extra: list[str] = ()) -> list[str]:
    """The engine's module and arguments; `extra` are a resume's --step/--weights-only/--set."""
    return ["-m", "engine.worker", str(run.path.absolute())] + (["--resume"] if resume else []) + list(extra)


def command(hw: Hardware, args: list[str], *, rdzv_id: str = "", nnodes: int | str | None = None,
            endpoint: str | None = None, rendezvous: bool = False, python: str = sys.executable) -> list[str]:
    """The launcher argv that runs `args` (the worker module and its arguments) on this node.

    `nnodes`/`endpoint` default to the config's; the Slurm script passes shell variables in their place.
    `rendezvous` forces torchrun's c10d rendezvous even for one node (the Slurm script always uses it)."""
    nnodes = hw.nnodes if nnodes is None else nnodes
    n = procs_per_node(hw)
    multi = rendezvous or str(nnodes) != "1"
    if not multi and n <= 1:
        return [python, *args]
    acc = hw.accelerate_config
    if multi:
        endpoint = endpoint or hw.rdzv_endpoint or ""
        if acc:  # accelerate hands these to torchrun; with c10d the machine rank is assigned at the rendezvous
            host, _, port = endpoint.rpartition(":")
            total = str(int(nnodes) * n) if str(nnodes).isdigit() else f"$(( {nnodes} * {n} ))"
            return [python, "-m", "accelerate.commands.launch", "--config_file", acc, "--num_machines", str(nnodes),
                    "--num_processes", total, "--machine_rank", "0", "--main_process_ip", host,
                    "--main_process_port", port, "--rdzv_backend", "c10d", *args]
        return [python, "-m", "torch.distributed.run", f"--nnodes={nnodes}", f"--nproc_per_node={n}",
                "--rdzv_backend=c10d", f"--rdzv_endpoint={endpoint}", f"--rdzv_id={rdzv_id}", *args]
    # Several processes: torchrun works for CUDA (nccl) and CPU (gloo); `accelerate launch --cpu` would
    # silently start a single process. An accelerate config (FSDP, DeepSpeed) goes through accelerate.
    if acc:
        return [python, "-m", "accelerate.commands.launch", "--config_file", acc, "--num_processes", str(n), *args]
    return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", *args]


def engine_command(run: Run, resume: bool = False, extra: list[str] = ()) -> list[str]:
    return command(run.settings().hardware, worker_args(run, resume, extra), rdzv_id=run.id)


def local_problems(hw: Hardware) -> list[Problem]:
    """What stops a launch outside a scheduler (the CLI and the workbench ask before a run directory exists)."""
    if hw.nnodes > 1 and not hw.rdzv_endpoint:
        return [Problem("hardware.rdzv_endpoint", f"a run on {hw.nnodes} nodes needs the rendezvous address",
                        "set it to host:port of the first node (every node must reach it), or submit with --slurm")]
    return []


def _env() -> dict:
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def spawn(argv: list[str], log_path: Path) -> subprocess.Popen:
    """Start `argv` in a session of its own (a lost terminal does not stop it), appending to `log_path` (0600)."""
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    with open(fd, "ab") as log:
        os.fchmod(fd, 0o600)
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True, env=_env())


def spawn_engine(run: Run, resume: bool = False) -> subprocess.Popen:
    """Start a queued run's engine detached and return at once (the scheduler watches it take the run).
    `--queued`: the engine starts the run only by taking its queue entry, so an engine that comes late (another
    scheduler's took the run, even ran it to the end) touches nothing."""
    return spawn(engine_command(run, resume, ["--queued"]), run.log_path)


def _ours(pid: int, proc: subprocess.Popen) -> bool:
    """`pid` is the process we started or one of its descendants (rank 0 under torchrun)."""
    if pid == proc.pid:
        return True
    try:
        return any(p.pid == proc.pid for p in psutil.Process(pid).parents())
    except psutil.Error:
        return False


def start(run: Run, resume: bool = False, wait_s: float = 15.0, extra: list[str] = ()) -> int:
    """Spawn the engine and wait until it has taken the run (holds its lock and wrote its status); return its
    pid. RunBusy when another engine holds the run, before or after spawning (two launchers racing).

    A multi-node run starts only when every node has joined the rendezvous (and its rank 0 may land on another
    node), so for one the wait is short: long enough to see this node's launcher fail at once (a bad endpoint,
    a port in use)."""
    try:
        hw = run.settings().hardware
        problems = local_problems(hw)
        if problems:
            raise ConfigError(problems, source=str(run.config_path))
        holder = locks.holder(run.path)
        if holder is not None:
            raise locks.RunBusy(run.path, holder)
        if hw.nnodes > 1:
            run.write_status(nnodes=hw.nnodes, rdzv_endpoint=hw.rdzv_endpoint)  # no engine yet: placement for readers
            wait_s = min(wait_s, 3.0)
        proc = spawn(engine_command(run, resume, extra), run.log_path)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            pid = locks.holder(run.path)
            if pid and _ours(pid, proc) and run.status().get("pid") == pid:
                return pid
            if proc.poll() is not None:
                other = locks.holder(run.path)
                if other is not None or proc.returncode == locks.BUSY_EXIT:
                    raise locks.RunBusy(run.path, other)
                tail = run.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the engine exited at start (status {proc.returncode}); engine.log ends:\n{tail}")
            time.sleep(0.05)
        return proc.pid
    finally:
        if run.launching is not None:  # the engine has the run now (or never will): the launch is over
            run.launching.release()
            run.launching = None


def node_log(run: Run) -> Path:
    """Where a joining node's launcher writes: nodes/<host>-<pid>.log in the (shared) run directory."""
    d = run.path / "nodes"
    d.mkdir(mode=0o700, exist_ok=True)
    return d / f"{socket.gethostname()}-{os.getpid()}.log"


def join(run: Run) -> tuple[subprocess.Popen, Path]:
    """Start this node's share of a multi-node run; it waits at the rendezvous for the others.

    No --resume here: the ranks agree at start (engine.training.cluster), so a node joining a resumed run
    resumes with it."""
    hw = run.settings().hardware
    if hw.nnodes <= 1:
        raise ValueError(f"{run.id} runs on one node (hardware.nnodes is 1); there is nothing to join")
    problems = local_problems(hw)
    if problems:
        raise ConfigError(problems, source=str(run.config_path))
    log = node_log(run)
    proc = spawn(engine_command(run), log)
    return proc, log
