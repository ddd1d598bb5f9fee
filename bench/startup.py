"""Time from starting `tunebench` to its first painted screen (median of 5, in tmux), and the TUI's memory.

    .venv/bin/python bench/startup.py [--runs N] [--runs-dir DIR]

Each run starts the real `tunebench` in a fresh tmux session and polls `tmux capture-pane` every 10 ms
until the tab bar ("Runs [1]") is on screen; the time includes Python start-up, imports and the first
paint. The RSS is the app process's after it painted (and settled 2 s). The baseline is `python -c pass`
in the same kind of session, so the ratio shows what the app adds to a bare interpreter.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

BIN = Path(sys.executable).parent / "tunebench"


SOCKET = f"tunebench-bench-{uuid.uuid4().hex[:6]}"  # a private tmux server: no one else's kill-server hits it


def tmux(*args, **kw):
    return subprocess.run(["tmux", "-L", SOCKET, *args], capture_output=True, text=True, **kw)


def first_paint(command: str, needle: str, cwd: str, timeout: float = 60.0) -> tuple[float, int, float]:
    """(seconds until `needle` is on screen, RSS bytes of the pane's process 2 s later, its CPU seconds
    at the paint: the figure a loaded machine inflates least)."""
    name = f"tb-bench-{uuid.uuid4().hex[:8]}"
    t0 = time.perf_counter()
    # `exec` so the pane's pid is the app's own process.
    tmux("new-session", "-d", "-s", name, "-x", "120", "-y", "36", "-c", cwd, f"exec {command}")
    try:
        proc = None
        while time.perf_counter() - t0 < timeout:
            if proc is None:
                pid = int(tmux("display-message", "-p", "-t", name, "#{pane_pid}").stdout.strip() or 0)
                proc = psutil.Process(pid) if pid else None
            if needle in tmux("capture-pane", "-p", "-t", name).stdout:
                elapsed = time.perf_counter() - t0
                cpu = sum(proc.cpu_times()[:2]) if proc else float("nan")
                break
            time.sleep(0.01)
        else:
            raise RuntimeError(f"{command!r}: {needle!r} not on screen after {timeout} s:\n"
                               + tmux("capture-pane", "-p", "-t", name).stdout)
        time.sleep(2.0)
        try:
            rss = proc.memory_info().rss if proc else 0
        except psutil.NoSuchProcess:
            rss = 0
        return elapsed, rss, cpu
    finally:
        tmux("kill-session", "-t", name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--runs-dir", default=None, help="a runs directory to list (default: an empty one)")
    args = ap.parse_args()
    if not shutil.which("tmux"):
        print("bench/startup.py needs tmux", file=sys.stderr)
        return 2
    # A session that lives for the whole bench keeps the private server up: a server whose last session
    # ends shuts down, and a new session started meanwhile would fail.
    tmux("new-session", "-d", "-s", "keeper", "sleep 3600")
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = args.runs_dir or str(Path(tmp) / "runs")
        app = f"{BIN} --runs-dir {runs_dir}"
        base = f"{sys.executable} -c \"print('READY'); import time; time.sleep(30)\""
        first_paint(app, "Runs [1]", tmp)  # warm the page cache; not counted
        times, rss, cpus = [], [], []
        base_times = []
        for _ in range(args.runs):
            t, r, c = first_paint(app, "Runs [1]", tmp)
            times.append(t)
            rss.append(r)
            cpus.append(c)
            base_times.append(first_paint(base, "READY", tmp)[0])
    med, base_med = statistics.median(times), statistics.median(base_times)
    tmux("kill-server")
    print(f"first paint of `tunebench` in tmux: median {med:.3f} s over {args.runs} "
          f"(min {min(times):.3f}, max {max(times):.3f})")
    print(f"bare `python -c` in tmux:           median {base_med:.3f} s; the app adds {med - base_med:.3f} s "
          f"({med / base_med:.1f}x the bare interpreter)")
    print(f"CPU time of the app process at its first paint: median {statistics.median(cpus):.3f} s "
          f"(what an idle machine's wall time approaches)")
    print(f"target 1 s: wall {med / 1.0:.2f}x the target, CPU {statistics.median(cpus) / 1.0:.2f}x")
    print(f"TUI RSS after first paint + 2 s: median {statistics.median(rss) / 2**20:.0f} MiB "
          f"(max {max(rss) / 2**20:.0f} MiB); the ML stack is not loaded (the helper starts on demand)")
    print(f"load average while measuring: {', '.join(f'{x:.1f}' for x in psutil.getloadavg())} on "
          f"{psutil.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
