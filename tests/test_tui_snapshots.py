"""Snapshots of each of the workbench's own panes at 120x36 (update with `pytest --snapshot-update`).

The live system header (CPU, RAM, load) would make every picture differ, so these use the plain header
with a fixed host name; runs and files get fixed names and times.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

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
    assert snap_compare(app, press=["3", "down", "down", "down"], terminal_size=SIZE)


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


def fixed_sweep():
    """A 2x2 grid as the scheduler leaves it on disk: sweep.json, summary.json and the trials' runs."""
    from engine.rundir.atomic import atomic_write

    sid = "20250302-100000-lr-rank-ab12"
    path = Path("runs/sweeps") / sid
    path.mkdir(parents=True)
    space = {"training.learning_rate": {"kind": "choice", "values": [1e-4, 3e-4]},
             "adapter.r": {"kind": "choice", "values": [8, 32]}}
    atomic_write(path / "sweep.json", json.dumps({"id": sid, "name": "lr-rank", "created": 1740909600,
                                                  "state": "running", "mode": "grid", "space": space, "trials": 4,
                                                  "objective": "eval_loss", "direction": "minimize",
                                                  "pruner": "median"}))
    trials, states = [], [("completed", "COMPLETE"), ("completed", "COMPLETE"), ("stopped", "PRUNED"),
                          ("queued", "RUNNING")]
    values = [[1.91, 1.52, 1.31], [1.88, 1.41, 1.12], [2.05, 1.97], []]
    for n, ((run_state, optuna_state), vals) in enumerate(zip(states, values)):
        lr, r = [(1e-4, 8), (1e-4, 32), (3e-4, 8), (3e-4, 32)][n]
        run_id = f"20250302-1000{n:02d}-sft-lr-rank-t{n}-ab{n:02d}"
        done = run_state == "completed"
        fixed_run(run_id, state=run_state, step=[300, 300, 100, 0][n], max_steps=300 if n < 3 else None,
                  started=1740909600 + 600 * n if n < 3 else None, sweep=sid, trial=n,
                  swept={"training.learning_rate": lr, "adapter.r": r},
                  summary={"tokens_per_s": 5120.5 - 300 * n, "peak_cuda_reserved_bytes": (9 + n) * 2**30} if done else None)
        trials.append({"number": n, "state": optuna_state, "params": {"training.learning_rate": lr, "adapter.r": r},
                       "run": run_id, "value": vals[-1] if done else (vals[-1] if vals else None),
                       "intermediate": {str(100 * (i + 1)): v for i, v in enumerate(vals)},
                       "pruned_at": 200 if optuna_state == "PRUNED" else None, "error": None})
    atomic_write(path / "summary.json", json.dumps({
        "id": sid, "state": "running", "objective": "eval_loss", "direction": "minimize", "trials": trials,
        "best": {"trial": 1, "value": 1.12, "params": trials[1]["params"], "run": trials[1]["run"]},
        "importance": {"training.learning_rate": 0.71, "adapter.r": 0.29},
        "importance_note": "Optuna's PED-ANOVA over 2 completed trials", "updated": 1740912000}))
    return sid


async def _sweep_shown(pilot):
    await pilot.press("7")
    table = pilot.app.query_one("#sw-trials")
    await until(pilot, lambda: table.row_count == 4, what="the trials")
    table.focus()
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (120, 36)])
def test_sweeps_pane(snap_compare, steady, size):
    fixed_sweep()
    assert snap_compare(appmod.TuneBench(runs_dir="runs", workdir="."), terminal_size=size, run_before=_sweep_shown)
