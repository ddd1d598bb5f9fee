"""Slurm: a run's sbatch script, submitting and cancelling its job, and writing down what Slurm says about it.

Light module: sbatch, scancel, scontrol and sacct run as subprocesses with argument lists. tunebench is no
scheduler; Slurm holds, starts, requeues and kills the job. Who writes status.json when:
- `submit` (the CLI, before any engine exists): state `queued` and `slurm` (job id, state PENDING, options);
- the job's engine (rank 0) while the job runs, as for a local run, and on Slurm's SIGTERM the reason for it;
- `refresh` (the watcher process on the submitting host, `tunebench runs/status/stop`) only while Slurm says no
  process of the job exists: pending (reason, a requeue) or over (a node failure, SIGKILL at the time limit, a
  cancel: what the engine could not record). A job starts >1 s before its engine writes, so a refresh that read
  PENDING cannot overwrite the engine's first status.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.config import Config
from engine.rundir import launch
from engine.rundir.runs import ACTIVE, FINAL, WAITING, Run

SCRIPT = "slurm.sh"
# Slurm job states by what they mean for the run's processes (squeue(1) JOB STATE CODES).
PENDING = ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SPECIAL_EXIT")
OVER = ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE",
        "OUT_OF_MEMORY", "REVOKED")
WHY = {"TIMEOUT": "reached its time limit", "NODE_FAIL": "lost a node (NODE_FAIL)", "PREEMPTED": "was preempted",
       "OUT_OF_MEMORY": "exceeded its memory limit (OUT_OF_MEMORY)", "BOOT_FAIL": "could not boot its nodes",
       "DEADLINE": "missed its deadline", "FAILED": "failed", "CANCELLED": "was cancelled (scancel)",
       "REVOKED": "was revoked"}


@dataclass(frozen=True)
class SlurmOptions:
    """What `tunebench train --slurm` asks Slurm for; None leaves Slurm's default."""

    partition: str | None = None
    nodes: int = 1
    gpus_per_node: int = 0
    time: str | None = None  # Slurm's time format, normalised by parse_time
    account: str | None = None
    requeue: bool = False
    sbatch: list[str] = field(default_factory=list)  # extra sbatch options, one #SBATCH line each


def parse_time(text: str) -> str:
    """`--time` as Slurm reads it: MM, HH:MM (tunebench's convention, not Slurm's MM:SS), HH:MM:SS, D-HH[:MM]."""
    t = text.strip()
    if re.fullmatch(r"\d+", t):
        return f"{int(t)}"
    if re.fullmatch(r"\d+:\d\d", t):  # HH:MM: hours and minutes, as the issue and most users mean it
        h, m = t.split(":")
        return f"{int(h):02d}:{m}:00"
    if re.fullmatch(r"\d+:\d\d:\d\d", t) or re.fullmatch(r"\d+-\d+(:\d\d){0,2}", t):
        return t
    raise ValueError(f"--time {text!r}: give HH:MM (e.g. 02:30), HH:MM:SS, D-HH:MM or minutes")


def available() -> str | None:
    """Why Slurm cannot be used from here, or None when sbatch and squeue are on the PATH."""
    missing = [c for c in ("sbatch", "squeue", "scancel", "scontrol") if not shutil.which(c)]
    return f"{', '.join(missing)} not found on the PATH (run this on a Slurm login node)" if missing else None


def _sh(arg: str) -> str:
    """Quote for bash; arguments holding one of our ${VAR} placeholders are expanded, so double-quoted."""
    return f'"{arg}"' if "${" in arg and not re.search(r'["`\\]', arg) else shlex.quote(arg)


def script(run: Run, cfg: Config, opts: SlurmOptions, cwd: Path) -> str:
    """The sbatch script: one task per node runs torchrun, whose c10d rendezvous sits on the first node."""
    for p in (run.path, cwd):
        if re.search(r"\s", str(p)):
            raise ValueError(f"{p}: a path with spaces cannot go into an #SBATCH line; use a runs directory without")
    hw = cfg.hardware
    port = hw.rdzv_endpoint.rpartition(":")[2] if hw.rdzv_endpoint else None
    lines = ["#!/bin/bash", f"# tunebench run {run.id}: written by `tunebench train --slurm`.",
             "# `tunebench train --resume` submits it again; tunebench reads the job's state from Slurm.",
             f"#SBATCH --job-name=tb-{run.id}", f"#SBATCH --nodes={opts.nodes}", "#SBATCH --ntasks-per-node=1"]
    lines += [f"#SBATCH --gpus-per-node={opts.gpus_per_node}"] if opts.gpus_per_node else []
    lines += [f"#SBATCH --partition={opts.partition}"] if opts.partition else []
    lines += [f"#SBATCH --account={opts.account}"] if opts.account else []
    lines += [f"#SBATCH --time={opts.time}"] if opts.time else []
    lines += [f"#SBATCH --chdir={cwd}", f"#SBATCH --output={run.path}/slurm-%j.out", "#SBATCH --open-mode=append",
              "#SBATCH --requeue" if opts.requeue else "#SBATCH --no-requeue"]
    lines += [f"#SBATCH {a}" for a in opts.sbatch]
    # the first node of the allocation hosts the rendezvous; a port from the job id keeps two jobs apart
    lines += ["set -eu", f"export PYTHONPATH={shlex.quote(str(launch.ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}",
              "export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=${TOKENIZERS_PARALLELISM:-false}",
              'HEAD_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
              f"RDZV_PORT={port}" if port else "RDZV_PORT=$(( 20000 + SLURM_JOB_ID % 20000 ))",
              "# a requeued job (preemption) and `tunebench train --resume` continue from the last checkpoint",
              'RESUME=""',
              'if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ] || [ -n "${TUNEBENCH_RESUME:-}" ]; then RESUME=--resume; fi']
    worker = ["-m", "engine.worker", str(run.path)]
    if opts.nodes == 1 and launch.procs_per_node(hw) == 1:  # one process: the engine itself, as a local run
        argv = launch.command(hw, worker)
    else:
        argv = launch.command(hw, worker, rdzv_id=f"{run.id}-${{SLURM_JOB_ID}}", nnodes="${SLURM_JOB_NUM_NODES}",
                              endpoint="${HEAD_NODE}:${RDZV_PORT}", rendezvous=True)
    lines.append("srun --kill-on-bad-exit=1 --ntasks-per-node=1 " + " ".join(map(_sh, argv)) + " $RESUME")
    return "\n".join(lines) + "\n"


def _run(argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def submit(run: Run, cfg: Config, opts: SlurmOptions, cwd: Path, resume: bool = False) -> str:
    """Write slurm.sh into the run directory, sbatch it, record the job as queued; return the job id."""
    path = run.path / SCRIPT
    path.write_text(script(run, cfg, opts, cwd), encoding="utf-8")
    os.chmod(path, 0o700)
    env = dict(os.environ, TUNEBENCH_RESUME="1") if resume else {k: v for k, v in os.environ.items()
                                                                   if k != "TUNEBENCH_RESUME"}
    # sbatch passes its umask to the job: slurm-<job>.out (every node's engine output) is then private, 0600
    r = subprocess.run(["sbatch", "--parsable", str(path)], capture_output=True, text=True, timeout=60, env=env,
                       umask=0o077)
    if r.returncode != 0:
        raise RuntimeError(f"sbatch refused {path}: {(r.stderr or r.stdout).strip()}")
    job_id = r.stdout.strip().split(";")[0]
    run.write_status(state="queued", error=None, ended=None, note=None, slurm={
        "job_id": job_id, "state": "PENDING", "reason": None, "nodelist": None, "submitted": time.time(),
        "script": SCRIPT, "options": asdict(opts), "resume": resume})
    start_watcher(run)
    return job_id


def start_watcher(run: Run) -> int:
    """The process that writes down the job's fate while no engine can: `python -m engine.rundir.slurm watch`."""
    proc = launch.spawn([sys.executable, "-m", "engine.rundir.slurm", "watch", str(run.path)],
                        run.path / "slurm-watch.log")
    return proc.pid


def query(job_id: str) -> dict | None:
    """What Slurm says about a job: state, reason, nodelist, exit code, restarts, time limit; None if unknown.

    scontrol knows jobs until MinJobAge after they end; sacct (when accounting is on) knows older ones."""
    try:
        r = _run(["scontrol", "show", "job", "-o", str(job_id)])
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode == 0 and "JobState=" in r.stdout:
        kv = dict(re.findall(r"(\w+)=(\S*)", r.stdout.splitlines()[0]))
        reason = kv.get("Reason") if kv.get("Reason") not in ("None", "(null)", "") else None
        return {"state": kv.get("JobState"), "reason": reason, "nodelist": kv.get("NodeList") or None,
                "exit_code": kv.get("ExitCode"), "restarts": int(kv.get("Restarts") or 0),
                "time_limit": kv.get("TimeLimit"), "requeue": kv.get("Requeue") == "1"}
    try:
        r = _run(["sacct", "-j", str(job_id), "-X", "-n", "-P", "-o", "State,Reason,NodeList,ExitCode,Timelimit"])
    except (OSError, subprocess.TimeoutExpired):
        return None
    line = r.stdout.strip().splitlines()[0] if r.returncode == 0 and r.stdout.strip() else ""
    if not line:
        return None
    state, reason, nodelist, exit_code, limit = (line.split("|") + [""] * 5)[:5]
    return {"state": state.split()[0], "reason": reason if reason not in ("None", "") else None, "nodelist": nodelist or None,
            "exit_code": exit_code, "restarts": 0, "time_limit": limit, "requeue": False}


def ended_message(run: Run, job_id: str, info: dict, step) -> str:
    """The run's error for a job Slurm ended: Slurm's state and reason, where the run stands, what to do."""
    state = info["state"]
    last = run.last_checkpoint()
    where = (f" at step {step}" if step else "") + (f"; {last.name} is saved" if last else "; no checkpoint was saved")
    reason = f", Reason={info['reason']}" if info.get("reason") else ""
    code = f", ExitCode={info['exit_code']}" if state in ("FAILED", "OUT_OF_MEMORY") and info.get("exit_code") else ""
    todo = {"TIMEOUT": f"Resubmit with more time: tunebench train --resume {run.id} --time HH:MM",
            "FAILED": f"See {run.path}/slurm-{job_id}.out and engine.log",
            "COMPLETED": f"Its engine recorded no end; see {run.path}/slurm-{job_id}.out"}.get(
        state, f"Resubmit: tunebench train --resume {run.id}")
    limit = f" of {info['time_limit']}" if state == "TIMEOUT" and info.get("time_limit") else ""
    return f"Slurm job {job_id} {WHY.get(state, 'ended')}{limit} (JobState={state}{reason}{code}){where}. {todo}."


def refresh(run: Run) -> dict:
    """Bring status.json up to date with Slurm where no engine can (see the module docstring); return it."""
    status = run.status()
    slurm = dict(status.get("slurm") or {})
    job_id = slurm.get("job_id")
    if not job_id or available():
        return status
    info = query(job_id)
    if info is None or not info.get("state"):
        return status
    state = info["state"]
    fresh = {**slurm, **{k: info[k] for k in ("state", "reason", "exit_code", "restarts")},
             "nodelist": info.get("nodelist") or slurm.get("nodelist")}
    updates: dict = {}
    if state in PENDING:
        if status.get("state") not in WAITING:  # requeued after its engine ended (preemption, a node failure)
            updates.update(state="queued", ended=None,
                           note=f"Slurm requeued job {job_id}; it resumes from the last checkpoint when it starts")
    elif state in OVER:
        if status.get("state") in WAITING + ACTIVE or status.get("state") == "created":  # no engine recorded an end
            if state == "CANCELLED":
                updates.update(state="stopped", ended=time.time(), error=None,
                               note=f"Slurm job {job_id} was cancelled"
                                    + (" before it started" if status.get("state") in WAITING else ""))
            elif state == "COMPLETED" and status.get("state") == "completed":
                pass
            else:
                updates.update(state="failed", ended=time.time(), error=ended_message(run, job_id, info, status.get("step")))
        elif status.get("state") == "stopped" and state in ("TIMEOUT", "NODE_FAIL", "PREEMPTED"):
            # the engine stopped on Slurm's SIGTERM without learning why (no scontrol on the node): say it now
            updates.update(state="failed", error=ended_message(run, job_id, info, status.get("step")))
    else:
        return status  # RUNNING, COMPLETING...: the engine's to write
    if fresh != slurm or updates:
        # A fresh handle reads the file first: `run` (the watcher's, kept across polls) would lay these updates
        # over its own last write and undo what the engine wrote since (its final `completed`).
        status = Run(run.path).write_status(slurm=fresh, **updates)
    return status


def finished(status: dict) -> bool:
    """The watcher's end: Slurm is done with the job and the run's status says how it ended."""
    return (status.get("slurm") or {}).get("state") in OVER and status.get("state") in FINAL


def watch(run: Run, every: float = 3.0) -> int:
    """Refresh until the job is over (a requeue keeps it going). Cost: one scontrol call every `every` s."""
    while True:
        status = refresh(run)
        if finished(status) or not run.path.exists():
            return 0
        time.sleep(every)


def cancel(run: Run) -> dict:
    """scancel the run's job (a pending one never starts; a running one gets SIGTERM); return the refreshed status."""
    job_id = (run.status().get("slurm") or {}).get("job_id")
    r = _run(["scancel", str(job_id)])
    if r.returncode != 0:
        raise RuntimeError(f"scancel {job_id}: {(r.stderr or r.stdout).strip()}")
    deadline = time.monotonic() + 15
    status = refresh(run)
    while status.get("state") in WAITING and time.monotonic() < deadline:  # scancel returns before the job ends
        time.sleep(0.5)
        status = refresh(run)
    return status


def stop_reason(job_id: str) -> dict:
    """Why Slurm is stopping this job (asked by its engine on SIGTERM): {} when it cannot tell.

    Seen at the SIGTERM: JobState=COMPLETING Reason=TimeLimit at a time limit; Restarts above the job's
    SLURM_RESTART_COUNT for a requeue (preemption, `scontrol requeue`); CANCELLED or PREEMPTED otherwise."""
    info = query(job_id)
    if not info:
        return {}
    restarted = info.get("restarts", 0) > int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    if info.get("reason") == "TimeLimit" or info["state"] == "TIMEOUT":
        return {**info, "why": "TIMEOUT"}
    if restarted or info["state"] in ("PREEMPTED", "REQUEUED"):
        return {**info, "why": "REQUEUED" if restarted or info.get("requeue") else "PREEMPTED"}
    if info["state"] in ("CANCELLED", "NODE_FAIL"):
        return {**info, "why": info["state"]}
    return {}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.rundir.slurm")
    p.add_argument("action", choices=["watch", "refresh"])
    p.add_argument("run_dir")
    a = p.parse_args(argv)
    run = Run(a.run_dir)
    if a.action == "refresh":
        print(json.dumps(refresh(run).get("slurm"), indent=1))
        return 0
    return watch(run)


if __name__ == "__main__":
    sys.exit(main())
