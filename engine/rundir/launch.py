"""Start an engine process for a run, detached from the caller (its own session, output to engine.log).

Light module. The command is an argument list, never a shell string built from user input.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from engine.rundir.runs import Run


def engine_command(run: Run, resume: bool = False) -> list[str]:
    hw = run.settings().hardware
    n = hw.num_processes
    args = ["-m", "engine.worker", str(run.path)] + (["--resume"] if resume else [])
    if n <= 1:
        return [sys.executable, *args]
    # Several processes: torchrun works for CUDA (nccl) and CPU (gloo); `accelerate launch --cpu` would
    # silently start a single process. An accelerate config (FSDP, DeepSpeed) goes through accelerate.
    acc = hw.accelerate_config
    if acc:
        return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", acc, "--num_processes", str(n),
                *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", *args]


def detached(command: list[str], log_path: Path) -> subprocess.Popen:
    """Start `command` in its own session with this project's code first on its path, output appended to
    `log_path`: closing the terminal or the caller does not stop it."""
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("PYTHONUNBUFFERED", "1")
    root = str(Path(__file__).resolve().parents[2])  # the project root, so the child runs this same code
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(log_path, "ab") as log:
        os.chmod(log_path, 0o600)
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True, env=env)


def spawn(run: Run, resume: bool = False) -> subprocess.Popen:
    """Start the run's engine detached and return at once (the scheduler watches it take the run)."""
    return detached(engine_command(run, resume), run.log_path)


def start(run: Run, resume: bool = False, wait_s: float = 15.0) -> int:
    """Spawn the engine and wait until it has taken the run (status gets a new `started`); return its pid."""
    before = run.status().get("started")
    proc = spawn(run, resume)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        status = run.status()
        if status.get("started") != before and status.get("state") not in ("created", "queued"):
            return proc.pid
        if proc.poll() is not None:
            tail = run.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the engine exited at start (status {proc.returncode}); engine.log ends:\n{tail}")
        time.sleep(0.05)
    return proc.pid
