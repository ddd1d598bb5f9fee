"""Snapshots of each of the workbench's own panes at 120x36 (update with `pytest --snapshot-update`).

The live system header (CPU, RAM, load) would make every picture differ, so these use the plain header
with a fixed host name; runs and files get fixed names and times.
"""
from __future__ import annotations

import json
import time

import pytest

from engine.rundir.runs import Run
from tests.tui_support import until
from tui import app as appmod
from tui.launching import PROJECT_PRESETS

SIZE = (120, 36)


@pytest.fixture
def steady(tmp_path, monkeypatch):
    """A fixed header, time zone, working directory and runs dir."""
    monkeypatch.setattr(appmod, "HEADER", "tui.widgets.header:SystemHeader")
    monkeypatch.setattr("tui.widgets.header.socket.gethostname", lambda: "gpu-box")
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TUNEBENCH_RUNS_DIR", "runs")
    yield tmp_path
    monkeypatch.undo()
    time.tzset()


def fixed_run(name: str, **status) -> Run:
    run = Run(f"runs/{name}")
    run.path.mkdir(parents=True)
    run.write_status(**{"host": "elsewhere", "model": "Qwen/Qwen2.5-0.5B-Instruct", "method": "sft", **status})
    return run


def test_runs_pane(snap_compare, steady):
    fixed_run("20250301-101500-sft-chat-a1b2", state="completed", step=300, max_steps=300, last_loss=0.4123,
              started=1740824100)
    fixed_run("20250302-091000-dpo-pref-c3d4", state="running", step=42, max_steps=500, last_loss=0.6931,
              started=1740906600, method="dpo")
    fixed_run("20250302-120000-sft-oom-e5f6", state="failed", step=7, max_steps=100, started=1740916800)
    assert snap_compare(appmod.TuneBench(runs_dir="runs", workdir="."), terminal_size=SIZE)


def test_hyperparams_pane(snap_compare, steady):
    app = appmod.TuneBench(runs_dir="runs", workdir=".", preset=str(PROJECT_PRESETS / "sft-lora-small.yaml"))

    async def shown(pilot):  # keys typed while the pane is still being shown would go to the previous one
        await pilot.press("3")
        await until(pilot, lambda: pilot.app.focused.id == "hp-table", what="the form focused")

    assert snap_compare(app, press=["down", "down", "down"], run_before=shown, terminal_size=SIZE)


def test_dataset_pane(snap_compare, steady):
    with open("chat.jsonl", "w") as f:
        for i in range(30):
            f.write(json.dumps({"messages": [{"role": "user", "content": f"say {i}"},
                                             {"role": "assistant", "content": f"{i} {i}"}]}) + "\n")
        f.write("{broken\n")
    app = appmod.TuneBench(runs_dir="runs", workdir=".", dataset="chat.jsonl")

    async def inspected(pilot):
        await pilot.press("2")
        pane = app.query_one("#pane-dataset")
        await until(pilot, lambda: pane.report is not None and "row 1 of" in str(pane.query_one("#ds-render").render()),
                    timeout=120, what="the inspection")
        await until(pilot, lambda: not app.query_one("#spinner").jobs, what="the spinner off")
        pane.query_one("#ds-rows").focus()  # not the path input: its blinking cursor would differ per run
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=inspected)


def test_help_screen(snap_compare, steady):
    assert snap_compare(appmod.TuneBench(runs_dir="runs", workdir="."), press=["question_mark"], terminal_size=SIZE)
