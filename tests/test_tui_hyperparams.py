"""The Hyperparameters pane under Pilot: the form over the schema, inline validation, presets, YAML, Launch."""
from __future__ import annotations

import json
import time

import pytest
import yaml

from engine import config as cfgmod
from engine.rundir.queue import Queue
from engine.rundir.runs import Run, list_runs
from engine.scheduling.control import running_scheduler
from tests.conftest import wait_for
from tests.tui_support import cells, text, until
from tui.app import TuneBench
from tui.launching import PROJECT_PRESETS

PRESET = PROJECT_PRESETS / "sft-lora-small.yaml"


async def edit(pilot, pane, path: str, typed: str):
    """What a user does: move to the key's row, Enter, replace the text, Enter."""
    table = pane.query_one("#hp-table")
    table.focus()
    table.move_cursor(row=table.get_row_index(path))
    await pilot.press("enter")
    await pilot.press("home", "shift+end")
    if typed:
        await pilot.press(*list(typed))
    else:
        await pilot.press("backspace")
    await pilot.pause(0.3)  # validation runs 0.15 s after the last key


def row_of(pane, path):
    table = pane.query_one("#hp-table")
    return cells(table)[table.get_row_index(path)]


@pytest.mark.asyncio
async def test_form_covers_the_schema_and_validates_as_you_type(tmp_path, runs_dir):
    app = TuneBench(runs_dir=runs_dir, workdir=tmp_path, preset=str(PRESET))
    async with app.run_test(size=(130, 40)) as pilot:
        await pilot.press("3")
        pane = app.query_one("#pane-hyperparams")
        table = pane.query_one("#hp-table")
        keys = {str(k.value) for k in table.rows}
        assert set(cfgmod.all_keys()) <= keys  # every schema key is in the form, with its help
        assert row_of(pane, "training.learning_rate")[1] == "0.0002"
        assert row_of(pane, "training.learning_rate")[3] == cfgmod.field_for("training.learning_rate").help
        assert "same as sft-lora-small" in text(app, "#diff")

        await edit(pilot, pane, "training.learning_rate", "abc")
        assert pane.query_one("#edit-input").has_focus
        assert "expected a number" in text(app, "#edit-error")
        assert row_of(pane, "training.learning_rate")[2] == "✗"
        assert "training.learning_rate" in text(app, "#problems")
        await pilot.press("ctrl+l")  # refused: nothing is created
        await pilot.pause()
        assert not list_runs(runs_dir)

        await edit(pilot, pane, "training.learning_rate", "5e-4")
        assert row_of(pane, "training.learning_rate")[1:3] == ["5e-4", ""]
        assert text(app, "#edit-error") == ""
        await pilot.press("enter")  # back to the list, one row down
        assert table.has_focus and table.cursor_row == table.get_row_index("training.lr_scheduler")
        diff = yaml.safe_load(text(app, "#diff").split("\n", 1)[1])
        assert diff == {"training": {"learning_rate": 0.0005}}
        assert "model.name_or_path" not in text(app, "#problems") and "ready to launch" in text(app, "#problems")

        # A choice field edits through a Select; a cross-field rule shows on its field.
        table.focus()
        table.move_cursor(row=table.get_row_index("model.quantization"))
        await pilot.pause()
        assert pane.query_one("#edit-select").display and not pane.query_one("#edit-input").display
        pane.query_one("#edit-select").value = "8bit"
        await pilot.pause()
        table.move_cursor(row=table.get_row_index("hardware.device"))
        await pilot.pause()
        pane.query_one("#edit-select").value = "cpu"
        await pilot.pause(0.3)
        assert pane.values["model.quantization"] == "8bit" and pane.values["hardware.device"] == "cpu"
        assert row_of(pane, "model.quantization")[2] == "✗"
        assert "8bit needs a CUDA GPU" in text(app, "#problems")

        await pilot.press("ctrl+y")
        await pilot.pause()
        shown = app.screen.query_one("#yaml-text").text
        assert yaml.safe_load(shown)["training"]["learning_rate"] == 0.0005
        assert "8bit needs a CUDA GPU" in text(app, "#yaml-problems")


@pytest.mark.asyncio
async def test_save_as_preset_and_pick_it_again(tmp_path, runs_dir):
    app = TuneBench(runs_dir=runs_dir, workdir=tmp_path, preset=str(PRESET))
    async with app.run_test(size=(130, 40)) as pilot:
        await pilot.press("3")
        pane = app.query_one("#pane-hyperparams")
        await edit(pilot, pane, "adapter.r", "64")
        await edit(pilot, pane, "data.max_length", "4096")
        await pilot.click("#preset-name")
        await pilot.press(*"my-long", "ctrl+s")
        await pilot.pause()
        saved = tmp_path / "presets" / "my-long.yaml"
        assert saved.exists()
        body = saved.read_text()
        assert "# LoRA rank" in body  # each key carries its description
        cfg = cfgmod.load_config(saved)  # a valid partial config over the defaults
        assert cfg.adapter.r == 64 and cfg.data.max_length == 4096
        assert cfg.training.learning_rate == 2e-4 and cfg.model.name_or_path == "Qwen/Qwen2.5-0.5B-Instruct"
        sel = pane.query_one("#preset-select")
        assert sel.value == str(saved) and "same as my-long" in text(app, "#diff")
        # Choosing another preset replaces the form's values.
        sel.value = str(PROJECT_PRESETS / "full-ft-small.yaml")
        await pilot.pause()
        assert pane.values["adapter.kind"] == "none" and pane.values["training.learning_rate"] == 1e-5
        assert "same as full-ft-small" in text(app, "#diff")


@pytest.mark.asyncio
async def test_model_check_blocks_remote_code_until_trusted(tmp_path, runs_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)  # short relative paths: fewer keys to type
    model = tmp_path / "remote-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"architectures": ["Weird"], "auto_map": {"AutoModel": "m.W"}}))
    app = TuneBench(runs_dir=runs_dir, workdir=tmp_path, preset=str(PRESET))
    async with app.run_test(size=(130, 40)) as pilot:
        await pilot.press("3")
        pane = app.query_one("#pane-hyperparams")
        await edit(pilot, pane, "model.name_or_path", "remote-model")
        assert "set model.trust_remote_code: true" in text(app, "#model-check")
        await pilot.press("escape", "ctrl+l")
        await pilot.pause()
        assert not list_runs(runs_dir)
        await edit(pilot, pane, "model.name_or_path", "./nothing")
        assert "no such directory" in text(app, "#model-check")
        await edit(pilot, pane, "model.name_or_path", "remote-model")
        table = pane.query_one("#hp-table")
        table.move_cursor(row=table.get_row_index("model.trust_remote_code"))
        await pilot.press("escape", "enter", "space")  # focus the switch, flip it
        await pilot.pause(0.3)
        assert pane.values["model.trust_remote_code"] is True
        assert "runs the model's own code" in text(app, "#model-check")


@pytest.mark.asyncio
async def test_launch_starts_a_detached_run_and_opens_it(tmp_path, runs_dir, tiny_model, chat_jsonl, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "chat.jsonl").write_bytes(chat_jsonl.read_bytes())
    app = TuneBench(runs_dir=runs_dir, workdir=tmp_path, preset=str(PRESET))
    async with app.run_test(size=(130, 40)) as pilot:
        await pilot.press("3")
        pane = app.query_one("#pane-hyperparams")
        pane.apply({"model.name_or_path": str(tiny_model), "data.train": "chat.jsonl", "data.max_length": 64,
                    "training.max_steps": 2, "training.batch_size": 4, "training.eval_steps": 0,
                    "training.save_steps": 0, "data.eval_fraction": 0.0, "training.warmup_steps": 0})
        await pilot.pause()
        assert "ready to launch" in text(app, "#problems"), text(app, "#problems")
        await pilot.press("escape", "ctrl+l")
        await until(pilot, lambda: list_runs(runs_dir) and list_runs(runs_dir)[0].status()["state"] != "created",
                    timeout=60, what="the engine took the run")
        run = list_runs(runs_dir)[0]
        await until(pilot, lambda: app.query_one("#panes").active != "hyperparams" or app.screen.id != "_default",
                    timeout=20, what="the run opened")
        assert "launched" in text(app, "#status")
        # A second Launch while the first run is active queues it and starts a scheduler; cancelled, it never runs.
        await pilot.press("3")
        await pilot.press("escape", "ctrl+l")
        await until(pilot, lambda: "queued" in text(app, "#status"), timeout=60, what="the second run queued")
        second = next(r for r in list_runs(runs_dir) if r.id != run.id)
        assert second.status()["state"] == "queued" and Queue(runs_dir).positions() == {second.id: 1}
        await until(pilot, lambda: running_scheduler(runs_dir), timeout=60, what="the scheduler holding its lock")
        with Queue(runs_dir).locked() as q:
            q.cancel(second.id)
    wait_for(lambda: running_scheduler(runs_dir) is None, timeout=60, what="the idle scheduler gone")
    assert Run(second.path).status()["state"] == "stopped" and not Run(second.path).status().get("started")
    cfg = yaml.safe_load(run.config_path.read_text())
    assert cfg["data"]["train"] == str(tmp_path / "chat.jsonl")  # made absolute: the run does not depend on cwd
    assert cfg["training"]["max_steps"] == 2
    # The app is gone; the engine is not (its own session): it finishes the run.
    deadline = time.monotonic() + 240
    while Run(run.path).state() not in ("completed", "failed", "lost") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert Run(run.path).state() == "completed", run.log_path.read_text()[-2000:]
    assert Run(run.path).checkpoints()


@pytest.mark.asyncio
async def test_memory_verdict_follows_the_config(tmp_path, runs_dir, tiny_model, monkeypatch):
    """The estimate's verdict against a named GPU: fits, then does not fit with the one change that fits."""
    monkeypatch.chdir(tmp_path)
    app = TuneBench(runs_dir=runs_dir, workdir=tmp_path, preset=str(PRESET))
    async with app.run_test(size=(130, 40)) as pilot:
        await pilot.press("3")
        pane = app.query_one("#pane-hyperparams")
        await edit(pilot, pane, "model.name_or_path", str(tiny_model))
        await edit(pilot, pane, "hardware.gpu", "T4")
        await until(pilot, lambda: "fits:" in text(app, "#memory"))
        assert "of 15.0 GiB free" in text(app, "#memory") and "T4" in text(app, "#memory")
        await edit(pilot, pane, "training.batch_size", "4096")
        await edit(pilot, pane, "data.max_length", "4096")
        await until(pilot, lambda: "does not fit" in text(app, "#memory"))
        assert "training.batch_size=1" in text(app, "#memory")
