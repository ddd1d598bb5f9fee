"""The Runs pane under Pilot: every run with its state (lost marked), live refresh, opening a run."""
from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from engine import config as cfgmod
from engine.rundir.runs import create_run
from tests.tui_support import cells, text, until
from tui import app as appmod
from tui.app import TuneBench


def make_run(runs_dir, name, state, pid=None, **status):
    cfg = cfgmod.Config(name=name).with_values({"model.name_or_path": "org/tiny-model", "data.train": "d.jsonl"})
    run = create_run(runs_dir, cfg)
    extra = {"pid": pid, "pid_started": psutil.Process(pid).create_time() if psutil.pid_exists(pid) else 1.0} if pid else {}
    run.write_status(state=state, started=time.time() - 120, **extra, **status)
    return run


@pytest.fixture
def live_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.mark.asyncio
async def test_runs_listed_with_state_step_loss_and_live_refresh(runs_dir, tmp_path, live_pid):
    done = make_run(runs_dir, "done", "completed", step=10, max_steps=10, last_loss=0.1234)
    lost = make_run(runs_dir, "crashed", "running", pid=2 ** 22 + 7, step=3, max_steps=10)  # no such process
    alive = make_run(runs_dir, "going", "running", pid=live_pid, step=5, max_steps=10, last_loss=1.5)
    app = TuneBench(runs_dir=runs_dir, workdir=tmp_path)
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.query_one("#runs-table")
        await until(pilot, lambda: table.row_count == 3, what="three runs listed")
        rows = {r[0]: r for r in cells(table)}
        assert rows[done.id][1:5] == ["completed", "local", "10/10", "0.1234"]
        assert rows[lost.id][1] == "lost (crashed)" and rows[lost.id][3] == "3/10"
        assert rows[alive.id][1:5] == ["running", "local", "5/10", "1.5000"]
        assert rows[alive.id][6:] == ["org/tiny-model", "sft"]
        assert "3 run(s)" in text(app, "#runs-summary") and "1 active" in text(app, "#runs-summary")
        # A run that appears, and a status that changes, show up without a key press.
        late = make_run(runs_dir, "late", "running", pid=live_pid, step=1, max_steps=4)
        alive.write_status(step=9, last_loss=0.5)
        await until(pilot, lambda: table.row_count == 4 and late.id in [r[0] for r in cells(table)], timeout=10,
                    what="the new run listed")
        ids = [r[0] for r in cells(table)]
        assert ids == [late.id, alive.id, lost.id, done.id]  # newest first, by creation (ids only resolve seconds)
        await until(pilot, lambda: {r[0]: r for r in cells(table)}[alive.id][3] == "9/10", timeout=10,
                    what="the step refreshed")


@pytest.mark.asyncio
async def test_where_each_run_runs_queued_slurm_nodes_and_other_hosts(runs_dir, tmp_path):
    """The `where` column is what the run directory records: the pane asks neither Slurm nor the nodes."""
    queued = make_run(runs_dir, "held", "queued", slurm={"job_id": "42", "state": "PENDING", "reason": "Resources"})
    on_slurm = make_run(runs_dir, "big", "running", host="gpu017", step=5, max_steps=10,
                        slurm={"job_id": "43", "state": "RUNNING", "nodelist": "gpu[017-018]"})
    nodes = make_run(runs_dir, "pair", "running", host="node-a", step=2, max_steps=10,
                     nodes=[{"node": 0, "host": "node-a", "ranks": [0]}, {"node": 1, "host": "node-b", "ranks": [1]}])
    timed_out = make_run(runs_dir, "late", "failed", slurm={"job_id": "44", "state": "TIMEOUT"})
    app = TuneBench(runs_dir=runs_dir, workdir=tmp_path)
    async with app.run_test(size=(160, 30)) as pilot:
        table = app.query_one("#runs-table")
        await until(pilot, lambda: table.row_count == 4, what="four runs listed")
        rows = {r[0]: r[1:3] for r in cells(table)}
        assert rows[queued.id] == ["queued", "slurm 42 PENDING"]
        assert rows[on_slurm.id] == ["running", "slurm 43 RUNNING gpu[017-018]"]  # another host: trusted, not lost
        assert rows[nodes.id] == ["running", "2 nodes (node-a, node-b)"]
        assert rows[timed_out.id] == ["failed", "slurm 44 TIMEOUT"]
        assert "4 run(s)" in text(app, "#runs-summary") and "2 active, 1 queued" in text(app, "#runs-summary")
        # the watcher records the job's start: the row follows
        queued.write_status(state="starting", host="gpu019", slurm={"job_id": "42", "state": "RUNNING",
                                                                    "nodelist": "gpu019"})
        await until(pilot, lambda: {r[0]: r for r in cells(table)}[queued.id][2] == "slurm 42 RUNNING gpu019",
                    timeout=10, what="the job's start shown")


@pytest.mark.asyncio
async def test_enter_opens_the_run(runs_dir, tmp_path, monkeypatch):
    make_run(runs_dir, "done", "completed", step=4, max_steps=4, last_loss=0.5)
    app = TuneBench(runs_dir=runs_dir, workdir=tmp_path)
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: app.query_one("#runs-table").row_count == 1)
        app.query_one("#runs-table").focus()
        await pilot.press("enter")
        await pilot.pause()
        active = app.query_one("#panes").active
        pane = app.query_one(f"#pane-{active}")
        assert hasattr(pane, "open_run"), f"Enter should open a pane that shows runs, not {active}"


@pytest.mark.asyncio
async def test_without_a_run_pane_the_status_screen_shows_the_run(runs_dir, tmp_path, monkeypatch):
    from tui.screens.run_status import RunStatusScreen

    monkeypatch.setattr(appmod, "PANES", [p for p in appmod.PANES if p.key in ("runs", "dataset", "hyperparams")])
    make_run(runs_dir, "crashed", "running", pid=2 ** 22 + 7, step=3, max_steps=10)
    app = TuneBench(runs_dir=runs_dir, workdir=tmp_path)
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: app.query_one("#runs-table").row_count == 1)
        app.query_one("#runs-table").focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunStatusScreen) and text(app, "#run-status-text"),
                    what="the status screen filled")  # its first refresh runs on mount, after the push
        shown = text(app, "#run-status-text")
        assert "state: lost" in shown and "step: 3" in shown and "max_steps: 10" in shown and "where: local" in shown
        await pilot.press("escape")
        assert not isinstance(app.screen, RunStatusScreen)


def test_run_rows_read_only_what_changed(runs_dir, monkeypatch):
    """RunRows re-reads a finished run's status.json only when it changes, and keeps re-checking active runs
    (an engine can die without writing: the row turns to lost)."""
    import shutil

    from engine.rundir.runs import Run
    from tui.panes.runs import RunRows

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        done = [make_run(runs_dir, f"done{i}", "completed", step=10, max_steps=10) for i in range(20)]
        live = make_run(runs_dir, "live", "running", pid=proc.pid, step=1, max_steps=10)
        reads = []
        real_status = Run.status
        monkeypatch.setattr(Run, "status", lambda self: reads.append(self.id) or real_status(self))
        rows = RunRows()
        first = dict(rows.scan(runs_dir))
        assert len(first) == 21 and str(first[live.id][1]) == "running"
        reads.clear()
        second = dict(rows.scan(runs_dir))
        assert reads == [live.id]  # the finished runs were only stat'ed
        assert all(second[r.id] is first[r.id] for r in done)  # the same cells: the pane skips those rows
        done[0].write_status(last_loss=0.25)
        proc.kill()
        proc.wait()
        third = dict(rows.scan(runs_dir))
        assert third[done[0].id][4] == "0.2500" and str(third[live.id][1]) == "lost (crashed)"
        shutil.rmtree(done[1].path)
        assert done[1].id not in dict(rows.scan(runs_dir)) and done[1].id not in rows.cache
        assert [name for name, _ in rows.scan(runs_dir)][0] == live.id  # newest first
    finally:
        proc.kill()
        proc.wait()


def test_run_rows_say_never_started_and_keep_a_run_whose_status_is_gone(runs_dir):
    """A created run whose launcher died is `never started`, not pending; a run whose status.json was deleted
    stays listed (issue 14: items 2 and 17)."""
    from tui.panes.runs import RunRows

    orphan = make_run(runs_dir, "orphan", "created")
    gone = make_run(runs_dir, "gone", "completed", step=4, max_steps=4)
    rows = RunRows()
    assert str(dict(rows.scan(runs_dir))[orphan.id][1]) == "created"  # its launcher (this test) still holds it
    orphan.launching.release()  # the workbench killed right after Launch
    gone.status_path.unlink()
    now = dict(rows.scan(runs_dir))
    assert str(now[orphan.id][1]) == "never started"
    assert gone.id in now and str(now[gone.id][1]) == "lost (crashed)"


@pytest.mark.asyncio
async def test_queued_runs_show_their_place_move_and_cancel(runs_dir, tmp_path):
    from engine.rundir.queue import Queue, enqueue

    cfg = cfgmod.Config(name="waits").with_values({"model.name_or_path": "org/tiny-model", "data.train": "train.jsonl"})
    first, _ = enqueue(runs_dir, cfg)
    second, _ = enqueue(runs_dir, cfg)
    app = TuneBench(runs_dir=runs_dir, workdir=tmp_path)
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.query_one("#runs-table")
        state = lambda run: {r[0]: r for r in cells(table)}[run.id][1]  # noqa: E731
        await until(pilot, lambda: table.row_count == 2, what="two queued runs listed")
        assert (state(first), state(second)) == ("queued #1", "queued #2")
        assert "2 queued" in text(app, "#runs-summary")
        table.focus()
        table.move_cursor(row=table.get_row_index(second.id))
        await pilot.press("plus")  # second moves up: first in the queue
        await until(pilot, lambda: state(second) == "queued #1" and state(first) == "queued #2", timeout=10,
                    what="the queue reordered")
        assert list(Queue(runs_dir).positions()) == [second.id, first.id]
        await pilot.press("x")  # cancel it: it never started
        await until(pilot, lambda: state(second) == "stopped" and state(first) == "queued #1", timeout=10,
                    what="the cancelled run out of the queue")
        assert second.status()["cancelled"] is True and list(Queue(runs_dir).positions()) == [first.id]
