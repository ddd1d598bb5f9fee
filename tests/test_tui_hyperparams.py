"""The Hyperparameters pane under Pilot: the form over the schema, inline validation, presets, YAML, Launch."""
from __future__ import annotations

import json
import time

import pytest
import yaml
from textual import events

from engine import config as cfgmod
from engine.rundir.queue import Queue
from engine.rundir.runs import Run, list_runs
from engine.scheduling.control import running_scheduler
from tests.conftest import wait_for
from tests.tui_support import cells, settled, text, until
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
    await until(pilot, lambda: pane._pending is None and settled(pane.app), what="the edit validated")


def row_of(pane, path):
    table = pane.query_one("#hp-table")
    return cells(table)[table.get_row_index(path)]


@pytest.mark.asyncio
async def test_form_covers_the_schema_and_validates_as_you_type(tmp_path, runs_dir):
    app = TuneBench(runs_dir=runs_dir, workdir=tmp_path, preset=str(PRESET))
    async with app.run_test(size=(130, 40)) as pilot:
        await pilot.press("3")
        pane = await app.ensure_pane("hyperparams")
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
        await until(pilot, lambda: settled(app), what="the refusal")
        assert not list_runs(runs_dir) and any("not launched" in str(n.title) for n in app._notifications)

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
        await until(pilot, lambda: pane.editing == "model.quantization" and settled(app), what="the choice editor")
        assert pane.query_one("#edit-select").display and not pane.query_one("#edit-input").display
        pane.query_one("#edit-select").value = "8bit"
        await until(pilot, lambda: pane.values["model.quantization"] == "8bit", what="8bit stored")
        table.move_cursor(row=table.get_row_index("hardware.device"))
        await until(pilot, lambda: pane.editing == "hardware.device" and settled(app), what="the device editor")
        pane.query_one("#edit-select").value = "cpu"
        await until(pilot, lambda: pane.values["hardware.device"] == "cpu" and pane._pending is None
                    and settled(app), what="cpu stored and validated")
        assert pane.values["model.quantization"] == "8bit" and pane.values["hardware.device"] == "cpu"
        assert row_of(pane, "model.quantization")[2] == "✗"
        assert "8bit needs a CUDA GPU" in text(app, "#problems")

        await pilot.press("ctrl+y")
        await until(pilot, lambda: app.screen.query("#yaml-text"), what="the YAML screen")
        shown = app.screen.query_one("#yaml-text").text
        assert yaml.safe_load(shown)["training"]["learning_rate"] == 0.0005
        assert "8bit needs a CUDA GPU" in text(app, "#yaml-problems")


@pytest.mark.asyncio
async def test_save_as_preset_and_pick_it_again(tmp_path, runs_dir):
    app = TuneBench(runs_dir=runs_dir, workdir=tmp_path, preset=str(PRESET))
    async with app.run_test(size=(130, 40)) as pilot:
        await pilot.press("3")
        pane = await app.ensure_pane("hyperparams")
        await edit(pilot, pane, "adapter.r", "64")
        await edit(pilot, pane, "data.max_length", "4096")
        await pilot.click("#preset-name")
        await pilot.press(*"my-long", "ctrl+s")
        saved = tmp_path / "presets" / "my-long.yaml"
        await until(pilot, lambda: saved.exists() and settled(app), what="the preset saved")
        body = saved.read_text()
        assert "# LoRA rank" in body  # each key carries its description
        cfg = cfgmod.load_config(saved)  # a valid partial config over the defaults
        assert cfg.adapter.r == 64 and cfg.data.max_length == 4096
        assert cfg.training.learning_rate == 2e-4 and cfg.model.name_or_path == "Qwen/Qwen2.5-0.5B-Instruct"
        sel = pane.query_one("#preset-select")
        assert sel.value == str(saved) and "same as my-long" in text(app, "#diff")
        # Choosing another preset replaces the form's values.
        sel.value = str(PROJECT_PRESETS / "full-ft-small.yaml")
        await until(pilot, lambda: pane.values["adapter.kind"] == "none" and settled(app), what="the other preset")
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
        pane = await app.ensure_pane("hyperparams")
        await edit(pilot, pane, "model.name_or_path", "remote-model")
        assert "set model.trust_remote_code: true" in text(app, "#model-check")
        await pilot.press("escape", "ctrl+l")
        await until(pilot, lambda: "not launched" in text(app, "#problems"), timeout=120, what="the refusal")
        assert "model.trust_remote_code" in text(app, "#problems") and not list_runs(runs_dir)
        await edit(pilot, pane, "model.name_or_path", "./nothing")
        assert "no such directory" in text(app, "#model-check")
        await edit(pilot, pane, "model.name_or_path", "remote-model")
        table = pane.query_one("#hp-table")
        table.move_cursor(row=table.get_row_index("model.trust_remote_code"))
        await pilot.press("escape", "enter", "space")  # focus the switch, flip it
        await until(pilot, lambda: pane.values["model.trust_remote_code"] is True and pane._pending is None
                    and settled(app), what="the switch flipped")
        assert pane.values["model.trust_remote_code"] is True
        assert "runs the model's own code" in text(app, "#model-check")


@pytest.mark.asyncio
async def test_launch_starts_a_detached_run_and_opens_it(tmp_path, runs_dir, tiny_model, chat_jsonl, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "chat.jsonl").write_bytes(chat_jsonl.read_bytes())
    app = TuneBench(runs_dir=runs_dir, workdir=tmp_path, preset=str(PRESET))
    async with app.run_test(size=(130, 40)) as pilot:
        await pilot.press("3")
        pane = await app.ensure_pane("hyperparams")
        pane.apply({"model.name_or_path": str(tiny_model), "data.train": "chat.jsonl", "data.max_length": 64,
                    "training.max_steps": 2, "training.batch_size": 4, "training.eval_steps": 0,
                    "training.save_steps": 0, "data.eval_fraction": 0.0, "training.warmup_steps": 0})
        await until(pilot, lambda: settled(app), what="the form validated")
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
    # its own efficiency store: the suite's other runs of this tiny model would give the CPU a time figure
    monkeypatch.setenv("TUNEBENCH_CACHE_DIR", str(tmp_path / "cache"))
    app = TuneBench(runs_dir=runs_dir, workdir=tmp_path, preset=str(PRESET))
    async with app.run_test(size=(130, 40)) as pilot:
        await pilot.press("3")
        pane = await app.ensure_pane("hyperparams")
        await edit(pilot, pane, "model.name_or_path", str(tiny_model))
        await edit(pilot, pane, "hardware.gpu", "T4")
        # the verdict for the CPU may show first: wait for the one against the GPU just named
        await until(pilot, lambda: "fits:" in text(app, "#memory") and "T4" in text(app, "#memory"),
                    what="the verdict against the T4")
        assert "of 15.0 GiB free" in text(app, "#memory")
        # the time beside the memory: a typical MFU on a named GPU no run was measured on
        assert "time: ~" in text(app, "#memory") and "a typical MFU" in text(app, "#memory")
        await edit(pilot, pane, "training.batch_size", "4096")
        await edit(pilot, pane, "data.max_length", "4096")
        await until(pilot, lambda: "does not fit" in text(app, "#memory"))
        assert "training.batch_size=1" in text(app, "#memory")
        table = pane.query_one("#hp-table")
        table.focus()
        table.move_cursor(row=table.get_row_index("hardware.device"))
        await until(pilot, lambda: pane.editing == "hardware.device" and settled(app), what="the device editor")
        pane.query_one("#edit-select").value = "cpu"
        await until(pilot, lambda: "time: unknown until a run of this model" in text(app, "#memory"),
                    what="no CPU figure without a run of this model")


@pytest.mark.asyncio
async def test_holding_down_across_every_key_changes_nothing(tmp_path, runs_dir):
    """Arrow keys held down (auto-repeat: bursts of keys faster than the pane handles them) only move the
    cursor: no key takes the value of the key before it, and no value changes its type (32 -> "32")."""
    app = TuneBench(runs_dir=runs_dir, workdir=tmp_path, preset=str(PRESET))
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("3")
        pane = await app.ensure_pane("hyperparams")
        table = pane.query_one("#hp-table")
        table.focus()
        table.move_cursor(row=0)
        await until(pilot, lambda: table.has_focus and settled(app), what="the form ready")
        before = dict(pane.values)
        last = table.row_count - 1
        for i in range(last):
            for _ in range(1 + i % 3):  # bursts of 1-3 keys, as a held key sends them
                app._driver.send_message(events.Key("down", None))
            await pilot.pause(0)
        await until(pilot, lambda: table.cursor_row == last and settled(app) and pane._pending is None,
                    what="the cursor on the last key and every message handled")
        changed = {k: (before[k], pane.values[k]) for k in before if pane.values[k] != before[k]
                   or type(pane.values[k]) is not type(before[k])}
        assert not changed
        for i in range(last):  # and back up, one key at a time
            app._driver.send_message(events.Key("up", None))
        await until(pilot, lambda: table.cursor_row == 0 and settled(app) and pane._pending is None,
                    what="the cursor back on the first row")
        assert pane.values == before
        assert "same as sft-lora-small" in text(app, "#diff")


@pytest.mark.asyncio
async def test_changed_from_the_preset_lists_only_what_changed(tmp_path, runs_dir):
    """No preset loaded, and an invalid value elsewhere: the diff holds the keys the user changed, no others."""
    app = TuneBench(runs_dir=runs_dir, workdir=tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("3")
        pane = await app.ensure_pane("hyperparams")
        await until(pilot, lambda: "same as defaults" in text(app, "#diff"), what="the diff of the defaults")
        await edit(pilot, pane, "training.learning_rate", "abc")
        assert "training.learning_rate" in text(app, "#problems")
        assert yaml.safe_load(text(app, "#diff").split("\n", 1)[1]) == {"training": {"learning_rate": "abc"}}
        await edit(pilot, pane, "adapter.r", str(cfgmod.Config().adapter.r))  # typed, but the same value
        await edit(pilot, pane, "training.report_to", "none")  # "none" is the default ["none"]
        assert yaml.safe_load(text(app, "#diff").split("\n", 1)[1]) == {"training": {"learning_rate": "abc"}}
