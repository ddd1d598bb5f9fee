"""Start an engine process for a run, detached from the caller (its own session, output to engine.log).

Light module. The command is an argument list, never a shell string built from user input.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from engine.rundir import lock as locks
from engine.rundir.runs import Run


def engine_command(run: Run, resume: bool = False, extra: list[str] = ()) -> list[str]:
    hw = run.settings().hardware
    n = hw.num_processes
    args = ["-m", "engine.worker", str(run.path)] + (["--resume"] if resume else []) + list(extra)
    if n <= 1:
        return [sys.executable, *args]
    # Several processes: torchrun works for CUDA (nccl) and CPU (gloo); `accelerate launch --cpu` would
    # silently start a single process. An accelerate config (FSDP, DeepSpeed) goes through accelerate.
    acc = hw.accelerate_config
    if acc:
        return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", acc, "--num_processes", str(n),
                *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", *args]


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
    pid. RunBusy when another engine holds the run, before or after spawning (two launchers racing)."""
    try:
        holder = locks.holder(run.path)
        if holder is not None:
            raise locks.RunBusy(run.path, holder)
        env = dict(os.environ)
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        env.setdefault("PYTHONUNBUFFERED", "1")
        root = str(Path(__file__).resolve().parents[2])  # the project root, so the engine runs this same code
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        fd = os.open(run.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        with open(fd, "ab") as log:
            os.fchmod(fd, 0o600)
            proc = subprocess.Popen(engine_command(run, resume, extra), stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True, close_fds=True, env=env)
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
