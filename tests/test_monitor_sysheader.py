"""The system header: real NVML/psutil sampling, GPU processes matched to runs, the 1 Hz worker."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import psutil
import pytest

from engine import config as cfgmod
from engine.rundir.runs import create_run
from engine.system.telemetry import Nvml
from tests.tui_support import until
from tui.widgets.sysheader import owner_run, render_header, run_pids, take_snapshot

GIB = 1 << 30


def _live_run(runs_dir, pid: int):
    run = create_run(runs_dir, cfgmod.Config().with_values({"model.name_or_path": "tiny", "data.train": "train.jsonl"}))
    run.write_status(state="running", pid=pid, pid_started=psutil.Process(pid).create_time())
    return run


def test_without_a_gpu_the_header_is_one_line_with_cpu_and_ram(tmp_path):
    nvml = Nvml()
    if nvml.available:
        pytest.skip("this machine has a GPU; the no-GPU line is not what it shows")
    snap = take_snapshot(nvml, tmp_path, {})
    assert snap["gpus"] == [] and snap["nvml_error"] and snap["ram_total"] == psutil.virtual_memory().total
    text = render_header(snap, str(tmp_path)).plain
    assert "\n" not in text and "no GPU" in text and "CPU" in text and "RAM" in text and str(tmp_path) in text


def test_gpu_processes_are_matched_to_runs_through_status_pids(tmp_path):
    """A launcher pid in status.json owns its child ranks; other processes show their owner and command."""
    launcher = subprocess.Popen([sys.executable, "-c",
                                 "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
                                 "'import time; time.sleep(60)']); time.sleep(60)"])
    try:
        run = _live_run(tmp_path / "runs", launcher.pid)
        for _ in range(100):
            kids = psutil.Process(launcher.pid).children()
            if kids:
                break
            time.sleep(0.05)
        rank = kids[0].pid
        pids = run_pids(tmp_path / "runs")
        assert pids == {launcher.pid: run.id}
        assert owner_run(rank, pids) == run.id and owner_run(os.getpid(), pids) is None
        # NVML's shape (engine.telemetry.Nvml.devices): render what a server with two jobs on GPU 0 shows.
        snap = {"host": "gpu-box", "cpu_percent": 12.0, "ncpu": 64, "ram_used": 100 * GIB, "ram_total": 512 * GIB,
                "load": 3.0, "nvml_error": None,
                "gpus": [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "mem_used": 79 * GIB, "mem_total": 80 * GIB,
                          "util": 97, "power_w": 650.0, "temp_c": 71,
                          "processes": [{"pid": rank, "mem": 60 * GIB, "user": "alice", "cmd": "python -m engine.worker",
                                         "run": owner_run(rank, pids)},
                                        {"pid": os.getpid(), "mem": 19 * GIB, "user": "bob", "cmd": "/usr/bin/python3 x.py",
                                         "run": None}]},
                         {"index": 1, "name": "NVIDIA H100 80GB HBM3", "mem_used": 0, "mem_total": 80 * GIB,
                          "util": None, "power_w": None, "temp_c": None, "processes": []}]}
        lines = render_header(snap, "runs").plain.split("\n")
        assert len(lines) == 3
        assert "GPU0" in lines[1] and "79.0/80.0 GiB" in lines[1] and f"run {run.id}" in lines[1]
        assert "alice" in lines[1] and "bob" in lines[1] and "python3" in lines[1]
        assert "N/A" in lines[2] and "no processes" in lines[2]
        # An 80-column terminal: one line per GPU still, each whole where it matters (memory, use, whose).
        narrow = render_header(snap, "runs", width=80).plain.split("\n")
        assert len(narrow) == 3 and all(len(line) <= 80 for line in narrow), narrow
        assert "79.0/80.0G" in narrow[1] and "97%" in narrow[1] and f"run {run.id[-4:]} 60.0G" in narrow[1]
        assert "bob" in narrow[1] and "0.0/80.0G" in narrow[2] and "no processes" in narrow[2]
        assert "RAM 100.0/512.0G" in narrow[0] and "runs: runs" in narrow[0]
    finally:
        for p in psutil.Process(launcher.pid).children():
            p.kill()
        launcher.kill()
        launcher.wait()


@pytest.mark.gpu
def test_real_gpus_are_listed_with_memory():
    nvml = Nvml()
    if not nvml.available:
        pytest.skip("no NVIDIA GPU here")
    snap = take_snapshot(nvml, ".", {})
    assert snap["gpus"] and all(g["mem_total"] for g in snap["gpus"])
    assert render_header(snap).plain.count("\n") == len(snap["gpus"])


def test_header_samples_in_a_worker_at_about_one_hertz(tmp_path):
    from tui.app import TuneBench

    async def body():
        app = TuneBench(runs_dir=tmp_path / "runs")
        async with app.run_test(size=(140, 40)) as pilot:
            header = app.query_one("#system-header")
            await until(pilot, lambda: header.samples >= 1, what="the first sample")
            first = header.samples
            await until(pilot, lambda: header.samples >= first + 2, what="two more samples")  # it keeps sampling
            assert header.snapshot is not None and "RAM" in str(header.render())
            await pilot.press("1")  # the UI answers while sampling goes on
            assert app.query_one("#panes").active == "runs"

    asyncio.run(body())
