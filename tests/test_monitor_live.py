"""The Monitor on real tiny-model runs: controls from the pane, a killed TUI, and the real command in tmux."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from engine.rundir.events import read_events
from engine.rundir.runs import Run
from tests.conftest import ROOT, tunebench, wait_for, write_config
from tests.tui_support import until
from tui.app import TuneBench

pytestmark = pytest.mark.slow


async def pane(app, pilot, key):
    """The pane widget once mounted (the app may mount panes after its first paint)."""
    await until(pilot, lambda: bool(app.query(f"#pane-{key}")), 60.0)
    return app.query_one(f"#pane-{key}")


def detached(cfg, runs_dir) -> Run:
    r = tunebench("train", cfg, "--detach", runs_dir=runs_dir)
    assert r.returncode == 0, r.stdout + r.stderr
    return Run(runs_dir / r.stdout.strip().splitlines()[-1])


def logged_steps(run: Run) -> list[int]:
    return [e["step"] for e in read_events(run.events_path, ("metrics",))]


def test_pause_resume_and_stop_from_the_pane_on_a_real_run(tiny_model, chat_jsonl, runs_dir, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tiny_model, chat_jsonl, data={"eval_fraction": 0.125},
                       training={"max_steps": 100000, "eval_steps": 3, "batch_size": 2})
    run = detached(cfg, runs_dir)

    async def body():
        app = TuneBench(runs_dir=runs_dir, run=run.path)
        head = lambda: str(app.query_one("#mon-head").render())  # noqa: E731
        async with app.run_test(size=(170, 60)) as pilot:
            mon = await pane(app, pilot, "monitor")
            await until(pilot, lambda: mon.data.step >= 3, timeout=180, what="3 steps on the monitor")
            await pilot.press("p")
            assert "pause requested" in head() or run.state() == "paused"  # asked, shown beside the engine's state
            await until(pilot, lambda: mon.state == "paused" and "paused" in head(), timeout=60, what="paused")
            assert run.state() == "paused" and "requested" not in head()
            paused_at = run.status()["step"]
            # Save and evaluate while paused: the pane sends both, in order; the engine saves and evaluates and
            # the Monitor shows the state it reports (paused), never one it has left.
            # One after the other: the eval is asked while the engine already waits again after the save (it used
            # to train a step first, when the trainer cleared the flag); a batch sent together is applied in order.
            await pilot.press("s")
            await until(pilot, lambda: paused_at in mon.data.checkpoints, timeout=120, what="the save")
            evals = len(read_events(run.events_path, ("eval",)))
            await pilot.press("e")
            assert [c for c, _ in mon.sent] == ["pause", "save", "eval"]
            await until(pilot, lambda: len(read_events(run.events_path, ("eval",))) > evals, timeout=120,
                        what="the evaluation")
            assert read_events(run.events_path, ("eval",))[-1]["step"] == paused_at  # evaluated while paused
            await until(pilot, lambda: not mon.pending(), timeout=60, what="the engine took both")
            await until(pilot, lambda: mon.state == run.state() == "paused" and "paused" in head(), timeout=30,
                        what="still paused")
            await pilot.press("p")
            await until(pilot, lambda: mon.state == "running" and mon.data.step > paused_at, timeout=60, what="resumed")
            assert "running" in head() and [c for c, _ in mon.sent][-1] == "resume"
            await pilot.press("p")
            await until(pilot, lambda: mon.state == "paused", timeout=60, what="paused again")
            await pilot.press("p")
            await until(pilot, lambda: mon.state == "running", timeout=60, what="running again")
            await until(pilot, lambda: "loss" in mon.data.eval, timeout=180, what="an evaluation")
            await pilot.press("x")
            await pilot.press("y")
            await until(pilot, lambda: mon.state == "stopped", timeout=180, what="stopped")
            await until(pilot, lambda: mon.data.step == logged_steps(run)[-1] and len(mon.data.checkpoints) == 2,
                        what="the last events on the monitor")
            steps = logged_steps(run)
            assert [p[0] for p in mon.data.train["loss"].points()] == steps == list(range(1, steps[-1] + 1))
            assert list(mon.data.checkpoints) == [paused_at, steps[-1]]  # save-now and the stop's, on the axis
            assert f"step {steps[-1]}" in str(app.query_one("#mon-head").render())
            evals = [e["step"] for e in read_events(run.events_path, ("eval",))]
            assert [p[0] for p in mon.data.eval["loss"].points()] == evals

    asyncio.run(body())
    assert run.status()["state"] == "stopped"


def test_killing_the_tui_mid_run_then_reattaching_finds_every_step(tiny_model, chat_jsonl, runs_dir, tmp_path):
    """Two workbenches watch one run; one is SIGKILLed mid-run; the other, and a later one, see every step."""
    cfg = write_config(tmp_path / "c.yaml", tiny_model, chat_jsonl, training={"max_steps": 20, "batch_size": 2})
    run = detached(cfg, runs_dir)
    code = ("import sys; from tui.app import TuneBench; "
            "TuneBench(runs_dir=sys.argv[1], run=sys.argv[2]).run(headless=True, size=(160, 50))")
    tui = subprocess.Popen([sys.executable, "-c", code, str(runs_dir), str(run.path)], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def watch_while_the_other_dies():
        app = TuneBench(runs_dir=runs_dir, run=run.path)
        async with app.run_test(size=(170, 60)) as pilot:
            mon = await pane(app, pilot, "monitor")
            await until(pilot, lambda: mon.data.step >= 5, timeout=180, what="5 steps")
            assert tui.poll() is None, "the other workbench exited by itself"
            os.kill(tui.pid, signal.SIGKILL)
            tui.wait()
            assert psutil.Process(run.status()["pid"]).is_running()  # the engine does not notice
            await until(pilot, lambda: mon.state == "completed", timeout=180, what="completed")
            await pilot.pause(0.5)
            assert [p[0] for p in mon.data.train["loss"].points()] == list(range(1, 21))

    async def reattach():
        app = TuneBench(runs_dir=runs_dir, run=run.path)
        async with app.run_test(size=(170, 60)) as pilot:
            mon = await pane(app, pilot, "monitor")
            await until(pilot, lambda: mon.attach_s is not None and mon.state == "completed", timeout=180, what="attached")
            await pilot.pause(0.1)
            assert [p[0] for p in mon.data.train["loss"].points()] == list(range(1, 21)) == logged_steps(run)
            head = str(app.query_one("#mon-head").render())
            assert "completed" in head and "step 20 / 20" in head

    try:
        asyncio.run(watch_while_the_other_dies())
    finally:
        if tui.poll() is None:
            tui.kill()
            tui.wait()
    asyncio.run(reattach())


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_attach_in_tmux_survives_a_dropped_session(tiny_model, chat_jsonl, runs_dir, tmp_path):
    """`tunebench attach RUN` in tmux; the session is killed (SIGHUP, as when SSH drops); attach again later."""
    cfg = write_config(tmp_path / "c.yaml", tiny_model, chat_jsonl, training={"max_steps": 20, "batch_size": 2})
    run = detached(cfg, runs_dir)
    sock = f"tunebench-test-{os.getpid()}"
    exe = Path(sys.executable).with_name("tunebench")
    cmd = f"{exe if exe.exists() else sys.executable + ' -m tunebench'} --runs-dir {runs_dir} attach {run.id[:15]}"

    def tmux(*args):
        return subprocess.run(["tmux", "-L", sock, *args], capture_output=True, text=True, timeout=30)

    def screen():
        return tmux("capture-pane", "-p", "-t", "mon").stdout

    try:
        # Held paused until the monitor is up: 20 tiny steps can finish before the TUI has drawn.
        assert tunebench("pause", run.id, runs_dir=runs_dir).returncode == 0
        tmux("new-session", "-d", "-s", "mon", "-x", "170", "-y", "55", f"cd {ROOT} && {cmd}")
        wait_for(lambda: "paused" in screen() and "/ 20" in screen(), what="the monitor on the live run", show=screen)
        assert "loss by step" in screen()
        tmux("kill-session", "-t", "mon")
        assert psutil.Process(run.status()["pid"]).is_running()
        assert tunebench("resume", run.id, runs_dir=runs_dir).returncode == 0
        wait_for(lambda: run.status().get("state") == "completed", what="completed")
        tmux("new-session", "-d", "-s", "mon", "-x", "170", "-y", "55", f"cd {ROOT} && {cmd}")
        wait_for(lambda: "completed" in screen() and "step 20 / 20" in screen(), what="the finished run", show=screen)
        tmux("send-keys", "-t", "mon", "q")
        wait_for(lambda: tmux("has-session", "-t", "mon").returncode != 0, timeout=30, what="q to quit")
    finally:
        tmux("kill-server")
