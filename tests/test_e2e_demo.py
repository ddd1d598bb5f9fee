"""End to end in tmux: the real `tunebench demo`, Dataset -> Hyperparameters -> Launch with keys, the run in
Runs, quit, and the run still going without the app."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from engine.rundir.runs import Run, list_runs, process_alive

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not shutil.which("tmux"), reason="needs tmux")]
BIN = Path(sys.executable).parent / "tunebench"


class Tmux:
    def __init__(self, command: str, cwd: Path, size: tuple[int, int] = (140, 40)):
        self.name = f"tb-e2e-{uuid.uuid4().hex[:8]}"
        self.socket = ["-L", self.name]  # a private tmux server: another test's kill-server cannot end it
        env = {k: v for k, v in os.environ.items() if k != "TUNEBENCH_RUNS_DIR"}
        env["TERM"] = "xterm-256color"
        subprocess.run(["tmux", *self.socket, "new-session", "-d", "-s", self.name, "-x", str(size[0]), "-y", str(size[1]), "-c", str(cwd),
                        f"{command}; echo APP-EXITED-$?; sleep 600"], check=True, env=env)

    def screen(self) -> str:
        return subprocess.run(["tmux", *self.socket, "capture-pane", "-p", "-t", self.name], capture_output=True, text=True).stdout

    def keys(self, *keys: str) -> None:
        for k in keys:
            subprocess.run(["tmux", *self.socket, "send-keys", "-t", self.name, k], check=True)
            time.sleep(0.3)

    def wait_for(self, *needles: str, timeout: float = 120.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            screen = self.screen()
            if all(n in screen for n in needles):
                return screen
            time.sleep(0.25)
        raise AssertionError(f"never saw {needles} on screen; it shows:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(["tmux", *self.socket, "kill-server"], capture_output=True)


def test_demo_walkthrough_launch_quit_and_the_run_goes_on(tmp_path):
    work = tmp_path / "demo"
    tmux = Tmux(f"{BIN} demo --dir {work}", tmp_path)
    run = None
    try:
        tmux.wait_for("1 Runs", "No runs yet", timeout=240)  # the model is built first (~10 s idle)
        tmux.keys("2")
        tmux.wait_for("numbers-train.jsonl:1", "format: messages", "write")
        tmux.wait_for("row 1 of", timeout=180)  # the helper process rendered a row with its trained tokens
        tmux.keys("C-u")  # Use in config -> Hyperparameters
        tmux.wait_for("ready to launch", "numbers")
        tmux.keys("C-l")  # Launch
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            runs = list_runs(work / "runs")
            if runs and runs[0].status().get("state") not in (None, "created"):
                run = runs[0]
                break
            time.sleep(0.25)
        assert run is not None, tmux.screen()
        tmux.wait_for("launched")
        tmux.keys("Escape", "1")
        tmux.wait_for("run(s) in")  # the Runs pane
        end = time.monotonic() + 30
        while time.monotonic() < end:
            rows = [ln for ln in tmux.screen().splitlines() if run.id in ln and "launched" not in ln]
            if rows and any(s in rows[0] for s in ("starting", "running", "completed")):
                break
            time.sleep(0.25)
        else:
            raise AssertionError(f"the run is not listed in Runs:\n{tmux.screen()}")
        tmux.keys("q")
        tmux.wait_for("APP-EXITED-0", timeout=30)
        status = run.status()
        # The app is gone; the engine, in its own session, is not.
        assert status["state"] in ("starting", "running", "completed"), status
        if status["state"] != "completed":
            assert process_alive(status.get("pid"), status.get("pid_started"))
            time.sleep(2)
            assert Run(run.path).state() in ("starting", "running", "completed")
    finally:
        tmux.close()
        if run is not None and Run(run.path).state() in ("starting", "running", "paused"):
            run.send("stop")  # free the CPU for the other tests
            end = time.monotonic() + 60
            while Run(run.path).state() in ("starting", "running", "stopping") and time.monotonic() < end:
                time.sleep(0.5)
            pid = run.status().get("pid")
            if Run(run.path).state() in ("starting", "running", "stopping") and pid:
                os.kill(pid, 9)
