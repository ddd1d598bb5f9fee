"""Multi-node and Slurm figures on this machine: what the start-up handshake costs, how fast a lost node is
named, and what watching a Slurm job costs.

    .venv/bin/python bench/cluster.py [--steps N] [--polls N]

1. Two torchrun "nodes" (gloo on the CPU, 127.0.0.1) train a tiny Llama; the handshake time is the engine's own
   log line (after torch's import: waiting for the slower node, then one store exchange). Then one node is
   SIGKILLed and the time until status.json says `failed` naming it is measured (the survivor's collective
   error, the probe of every rank's socket, the 3 s linger, the write).
2. Against the local Slurm cluster (.ci/slurm-up.sh), when there is one: the wall time of one watcher poll
   (`scontrol show job`), median of --polls, and of `tunebench runs` with one Slurm run in it.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.demo.tinymodel import build_tiny_llama  # noqa: E402
from engine.rundir import slurm  # noqa: E402
from engine.rundir.events import read_events  # noqa: E402
from engine.rundir.runs import resolve_run  # noqa: E402


def cli(*args, runs_dir: Path, **kw):
    env = {**os.environ, "TUNEBENCH_RUNS_DIR": str(runs_dir), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "tunebench", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=env, **kw)


def wait(pred, timeout=900.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError


def two_nodes(work: Path, steps: int) -> None:
    model = build_tiny_llama(work / "model")
    data = work / "chat.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"say {w}"},
                                                     {"role": "assistant", "content": f"{w} {w}"}]}) + "\n"
                            for w in ["apple", "river", "stone", "cloud"] * 16))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = work / "two.yaml"
    cfg.write_text(json.dumps({"model": {"name_or_path": str(model)}, "data": {"train": str(data), "max_length": 64},
                               "training": {"max_steps": 100000, "batch_size": 2, "save_steps": 5},
                               "hardware": {"device": "cpu", "nnodes": 2, "rdzv_endpoint": f"127.0.0.1:{port}"}}))
    runs = work / "runs"
    r = cli("train", cfg, "--detach", runs_dir=runs)
    assert r.returncode == 0, r.stderr
    run = resolve_run(runs, r.stdout.split()[-1])
    joined = subprocess.Popen([sys.executable, "-m", "tunebench", "join", run.id], cwd=ROOT, stdout=subprocess.DEVNULL,
                              env={**os.environ, "TUNEBENCH_RUNS_DIR": str(runs), "PYTHONPATH": str(ROOT)})
    wait(lambda: run.status().get("state") == "running" and (run.status().get("step") or 0) >= steps)
    met = next(e["message"] for e in read_events(run.events_path) if e["kind"] == "log" and "met at start" in e["message"])
    print(f"handshake: {met}")
    rank1 = next(p for p in psutil.process_iter(["cmdline"]) if "engine.worker" in " ".join(p.info["cmdline"] or [])
                 and str(run.path) in " ".join(p.info["cmdline"]) and p.environ().get("RANK") == "1")
    t0 = time.monotonic()
    for p in (rank1.parent(), rank1):
        p.send_signal(signal.SIGKILL)
    wait(lambda: run.status().get("state") == "failed")
    print(f"lost node named in status.json {time.monotonic() - t0:.1f} s after the SIGKILL "
          f"(of which {3.0:.1f} s is the deliberate linger): {run.status()['error'][:120]}...")
    joined.wait(timeout=120)


def slurm_costs(work: Path, polls: int) -> None:
    if slurm.available() or "UP" not in subprocess.run(["scontrol", "ping"], capture_output=True, text=True).stdout:
        print("slurm: no local cluster (run .ci/slurm-up.sh as root); skipped")
        return
    job = subprocess.run(["sbatch", "--parsable", "--output=/dev/null", "--wrap", "sleep 120"], capture_output=True,
                         text=True).stdout.strip()
    try:
        times = []
        for _ in range(polls):
            t0 = time.perf_counter()
            slurm.query(job)
            times.append(time.perf_counter() - t0)
        print(f"slurm: one watcher poll (scontrol show job) {statistics.median(times) * 1000:.0f} ms median of {polls}")
    finally:
        subprocess.run(["scancel", job])


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=3, help="steps trained on two nodes before one is killed")
    p.add_argument("--polls", type=int, default=20)
    a = p.parse_args()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as d:
        two_nodes(Path(d), a.steps)
        slurm_costs(Path(d), a.polls)
    return 0


if __name__ == "__main__":
    sys.exit(main())
