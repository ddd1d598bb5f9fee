"""Lists that refresh keep the highlight on the item it was on: Runs, Checkpoints and Overlay under Pilot."""
from __future__ import annotations

import json
import os
import time

import pytest

from engine import config as cfgmod
from engine.rundir.runs import META, create_run
from tests.tui_support import cells, until
from tui.app import TuneBench
from tui.panes.overlay import short_id


def make_run(runs_dir, name, state="completed", **status):
    run = create_run(runs_dir, cfgmod.Config(name=name).with_values({"model.name_or_path": "org/tiny-model", "data.train": "train.jsonl"}))
    run.write_status(state=state, started=time.time() - 60, **status)
    created = time.time() - 100 + len(list(runs_dir.iterdir()))  # distinct creation times, in the order made
    os.utime(run.config_path, (created, created))  # (the lists order runs by config.yaml's mtime)
    return run


def add_checkpoint(run, step: int) -> None:
    """A complete checkpoint as the engine leaves it (its meta file is what makes it complete)."""
    d = run.checkpoints_dir / f"checkpoint-{step}"
    d.mkdir(parents=True)
    (d / "config.json").write_text("{}")
    (d / META).write_text(json.dumps({"step": step, "time": 1740824100 + step, "base_model": "org/tiny-model"}))


@pytest.mark.asyncio
async def test_checkpoints_highlight_follows_the_model_when_checkpoints_arrive(runs_dir, tmp_path):
    run = make_run(runs_dir, "ckpts", "running", pid=None)
    for step in (10, 20, 30):
        add_checkpoint(run, step)
    app = TuneBench(runs_dir=runs_dir, workdir=tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("5")
        pane = await app.ensure_pane("checkpoints")
        table = pane.query_one("#models")
        await until(pilot, lambda: any("checkpoint-20" in r[0] for r in cells(table)), what="the checkpoints")
        table.focus()
        table.move_cursor(row=next(i for i, r in enumerate(cells(table)) if r[0].endswith("checkpoint-20")))
        await until(pilot, lambda: pane.selected().label.endswith("checkpoint-20"))
        rows_before = table.row_count
        add_checkpoint(run, 40)  # newest first: lands above the highlighted row
        add_checkpoint(run, 50)
        await until(pilot, lambda: table.row_count == rows_before + 2, what="the new checkpoints listed")
        assert pane.selected().label.endswith("checkpoint-20")
        await pilot.press("a")
        assert pane.picked["a"].label.endswith("checkpoint-20")


@pytest.mark.asyncio
async def test_runs_highlight_follows_the_run_when_a_new_one_appears(runs_dir, tmp_path):
    old = make_run(runs_dir, "old")
    make_run(runs_dir, "newer")
    app = TuneBench(runs_dir=runs_dir, workdir=tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        pane = await app.ensure_pane("runs")
        table = pane.query_one("#runs-table")
        await until(pilot, lambda: table.row_count == 2, what="two runs")
        table.focus()
        table.move_cursor(row=1)
        assert pane.selected_run().name == old.id
        make_run(runs_dir, "newest")  # listed on top: the old run moves down a row
        await until(pilot, lambda: table.row_count == 3, what="the new run listed")
        assert pane.selected_run().name == old.id
        await pilot.press("enter")
        mon = await app.ensure_pane("monitor")
        await until(pilot, lambda: mon.run is not None, what="the run opened")
        assert mon.run.id == old.id


@pytest.mark.asyncio
async def test_overlay_run_list_refreshes_states_and_keeps_the_highlight(runs_dir, tmp_path):
    first = make_run(runs_dir, "first", "completed")
    second = make_run(runs_dir, "second", "running", pid=2 ** 22 + 7)  # no such process: lost
    app = TuneBench(runs_dir=runs_dir, workdir=tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("6")
        pane = await app.ensure_pane("overlay")
        sel = pane.query_one("#ov-runs")
        await until(pilot, lambda: sel.option_count == 2, what="two runs")
        prompts = lambda: [str(sel.get_option_at_index(i).prompt) for i in range(sel.option_count)]  # noqa: E731
        assert prompts()[0] == f"completed {short_id(first.id)}" and short_id(first.id).endswith(first.id[-4:])
        assert prompts()[1] == f"lost      {short_id(second.id)}"  # the whole state, not a letter
        sel.highlighted = 1
        second.write_status(state="failed")
        first.path.rename(first.path.with_name(".gone"))  # a run removed: the list shrinks above the highlight
        await until(pilot, lambda: sel.option_count == 1 and prompts()[0].startswith("failed "),
                    what="the state refreshed")
        assert sel.get_option_at_index(sel.highlighted).id == second.id
