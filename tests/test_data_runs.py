"""Data preparation in real runs: progress while preparing (events, status, `tunebench train` and `status`, the
Monitor), the prepared data reused from the cache by the next run, with identical per-step losses."""
from __future__ import annotations

import asyncio
import json
import os

from engine.rundir.events import read_events
from engine.rundir.runs import list_runs
from tui.app import TuneBench

from .conftest import tunebench, write_config
from .test_monitor_pane import make_run, pane, text_of, until


def test_progress_is_reported_and_the_next_run_reuses_the_prepared_data(tiny_model, runs_dir, tmp_path):
    """The first run prepares (progress events, status, the foreground shows it); the second one finds the same
    data in the cache, says so, and trains with the very same losses step by step."""
    rows = [{"messages": [{"role": "user", "content": f"say {w} {i}"}, {"role": "assistant", "content": f"{w} {w}"}]}
            for i, w in enumerate(["apple", "river", "stone", "cloud"] * 40)]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"messages": oops\n')
    env = {"TUNEBENCH_CACHE_DIR": str(tmp_path / "cache")}
    cfg = write_config(tmp_path / "c.yaml", tiny_model, data, training={"max_steps": 3, "batch_size": 4},
                       data={"train": str(data), "max_length": 64, "skip_invalid": True, "num_proc": 2})
    first = tunebench("train", cfg, runs_dir=runs_dir, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "data ready: 160 rows prepared" in first.stdout  # the foreground said what the engine was doing
    (run,) = list_runs(runs_dir)
    events = read_events(run.events_path)
    step1 = next(i for i, e in enumerate(events) if e["kind"] == "metrics")
    data_events = [e for e in events[:step1] if e["kind"] == "data"]
    progress = [e for e in data_events if e.get("phase") == "prepare"]
    assert progress[0]["rows_done"] == 0 and progress[0]["rows_total"] == 161  # before the first row was read
    assert progress[-1]["rows_done"] == 161 and progress[-1]["invalid"] == 1 and "rows_per_s" in progress[-1]
    ready = next(e for e in data_events if e.get("phase") == "ready")
    report = next(e for e in data_events if "train_rows" in e)
    assert ready["cached"] is False and report["cache"] == {"train": False} and report["train_rows"] == 160
    assert report["dropped"]["first"][0]["location"] == f"{data}:161"
    assert run.status()["data"]["phase"] == "ready"
    status = tunebench("status", run.id, runs_dir=runs_dir)
    assert "data ready: 160 rows prepared in" in status.stdout

    second = tunebench("train", cfg, "--detach", runs_dir=runs_dir, env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    run2 = next(r for r in list_runs(runs_dir) if r.id == second.stdout.strip().splitlines()[-1])
    from tests.conftest import wait_for

    wait_for(lambda: run2.state() in ("completed", "failed", "lost"), what="the second run to end")
    assert run2.state() == "completed", run2.status().get("error")
    events2 = read_events(run2.events_path)
    report2 = next(e for e in events2 if e["kind"] == "data" and "train_rows" in e)
    assert report2["cache"] == {"train": True} and report2["train_rows"] == 160
    assert not [e for e in events2 if e.get("phase") == "prepare"]  # nothing was read again
    losses = [[e["loss"] for e in ev if e["kind"] == "metrics"] for ev in (events, events2)]
    assert len(losses[0]) == 3 and losses[0] == losses[1]


def test_monitor_shows_the_data_preparation(runs_dir):
    """While the engine prepares the data, the Monitor's head says how far it got, not a bare `starting`."""
    progress = {"phase": "prepare", "pass": "train", "rows_done": 120000, "rows_total": 1000000, "rows_per_s": 4100.4,
                "invalid": 2}
    run = make_run(runs_dir, state="starting", pid=os.getpid(), data=progress)

    async def body():
        app = TuneBench(runs_dir=runs_dir, run=run.path)
        async with app.run_test(size=(170, 50)) as pilot:
            mon = await pane(app, pilot, "monitor")
            await until(pilot, lambda: mon.attach_s is not None)
            await until(pilot, lambda: "preparing train data" in text_of(app, "#mon-head"))
            assert "120,000 / 1,000,000 rows, 4,100 rows/s, 2 invalid" in text_of(app, "#mon-head")
            run.write_status(data={**progress, "rows_done": 480000})
            assert await until(pilot, lambda: "480,000 / 1,000,000 rows" in text_of(app, "#mon-head"))
            run.write_status(state="running", data={"phase": "ready", "cached": False, "rows": 999998, "seconds": 240})
            assert await until(pilot, lambda: "preparing" not in text_of(app, "#mon-head"))

    asyncio.run(body())
