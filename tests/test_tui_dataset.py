"""The Dataset pane under Pilot: a file's rows page by page, invalid rows with jump, tokens, rendering, hand-over."""
from __future__ import annotations

import json

import pytest

from tests.tui_support import cells, text, until
from tui.app import TuneBench
from tui.launching import PROJECT_PRESETS


def write_data(path, n=120, bad=(77,), no_answer=(90,)):
    """n chat rows; line 77 is broken JSON, line 90 has no assistant turn."""
    words = ["apple", "river", "stone", "cloud"]
    with open(path, "w") as f:
        for i in range(1, n + 1):
            w = words[i % 4]
            if i in bad:
                f.write('{"messages": [{"role": "user", "content": "oops"\n')
            elif i in no_answer:
                f.write(json.dumps({"messages": [{"role": "user", "content": f"say {w}"}]}) + "\n")
            else:
                f.write(json.dumps({"messages": [{"role": "user", "content": f"say {w} {i}"},
                                                 {"role": "assistant", "content": f"{w} {w}"}]}) + "\n")
    return path


@pytest.mark.asyncio
async def test_rows_invalid_rows_tokens_and_rendering(tmp_path, runs_dir, tiny_model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = write_data(tmp_path / "chat.jsonl")
    app = TuneBench(runs_dir=runs_dir, workdir=tmp_path, preset=str(PROJECT_PRESETS / "sft-lora-small.yaml"))
    async with app.run_test(size=(150, 45)) as pilot:
        hp = await app.ensure_pane("hyperparams")
        hp.apply({"model.name_or_path": str(tiny_model), "data.max_length": 256})
        await pilot.press("2")
        pane = await app.ensure_pane("dataset")
        # The path input completes from the directory listing; Enter opens the file.
        await pilot.click("#ds-path")
        await pilot.press(*"ch")
        await until(pilot, lambda: pane.query_one("#ds-path")._suggestion == "chat.jsonl", what="path completion")
        await pilot.press("right", "enter")
        table = pane.query_one("#ds-rows")
        await until(pilot, lambda: table.row_count == 50, what="the first page")
        assert "format: messages" in text(app, "#ds-info") and "page 1/" in text(app, "#ds-info")
        assert cells(table)[0][0] == "chat.jsonl:1" and "say river 1" in cells(table)[0][2]
        assert pane.query_one("#ds-model").value == str(tiny_model)  # taken from the Hyperparameters form

        # The helper's inspection: invalid rows listed, the histogram with the cutoff, the first row rendered.
        await until(pilot, lambda: pane.report is not None, timeout=120, what="the inspection")
        invalid = pane.query_one("#ds-invalid")
        reasons = [str(invalid.get_option_at_index(i).prompt) for i in range(invalid.option_count)]
        assert any(r.startswith("chat.jsonl:77: invalid JSON") for r in reasons), reasons
        assert any(r.startswith("chat.jsonl:90") and "assistant" in r for r in reasons), reasons
        hist = text(app, "#ds-hist")
        assert "120 rows, " in hist and "max_length 256" in hist and "truncated at max_length:" in hist
        await until(pilot, lambda: "row 1 of" in text(app, "#ds-render"), timeout=60, what="a rendered row")
        assert "say river 1" in text(app, "#ds-render") and "train" in text(app, "#ds-render")

        # n steps to the next row; ] pages; selecting an invalid row jumps to it.
        table.focus()
        await pilot.press("n")
        await until(pilot, lambda: "row 2 of" in text(app, "#ds-render"), timeout=60, what="the next row")
        assert "say stone 2" in text(app, "#ds-render")
        await pilot.press("right_square_bracket")
        await until(pilot, lambda: cells(table)[0][0] == "chat.jsonl:51", what="page 2")
        invalid.focus()
        invalid.highlighted = next(i for i, r in enumerate(reasons) if r.startswith("chat.jsonl:77"))
        await pilot.press("enter")
        await until(pilot, lambda: table.has_focus and cells(table)[table.cursor_row][0] == "chat.jsonl:77",
                    what="the jump to line 77")
        assert cells(table)[table.cursor_row][1] == "✗"

        # Use in config hands the file to the Hyperparameters form.
        await pilot.press("ctrl+u")
        await pilot.pause()
        assert app.query_one("#panes").active == "hyperparams"
        assert hp.values["data.train"] == str(data)


@pytest.mark.asyncio
async def test_format_override_browse_and_a_broken_file(tmp_path, runs_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "alpaca.json").write_text(json.dumps([{"instruction": f"q{i}", "input": "", "output": f"a{i}"}
                                                      for i in range(10)]))
    (tmp_path / "garbage.jsonl").write_bytes(b"\x00\x01\x02binary" * 10)
    app = TuneBench(runs_dir=runs_dir, workdir=tmp_path)
    async with app.run_test(size=(150, 45)) as pilot:
        await pilot.press("2")
        pane = await app.ensure_pane("dataset")
        await pilot.press("ctrl+o")
        tree = pane.query_one("#ds-tree")
        assert tree.display and tree.has_focus
        await until(pilot, lambda: tree.root.children, what="the file tree")
        node = next(n for n in tree.root.children if str(n.data.path).endswith("alpaca.json"))
        tree.move_cursor(node)
        await pilot.press("enter")
        table = pane.query_one("#ds-rows")
        await until(pilot, lambda: table.row_count == 10, what="the rows")
        assert "format: alpaca" in text(app, "#ds-info") and not tree.display
        pane.query_one("#ds-format").value = "text"  # an override the rows do not fit
        await until(pilot, lambda: "format: text" in text(app, "#ds-info"), what="the override")
        await until(pilot, lambda: pane.report is not None and pane.report["invalid_count"] == 10, timeout=120,
                    what="every row invalid as text")
        invalid = pane.query_one("#ds-invalid")
        assert invalid.display and invalid.option_count == 10 and "10 invalid" in text(app, "#status")
        pane.query_one("#ds-path").value = "garbage.jsonl"
        await pilot.click("#ds-path")
        await pilot.press("enter")
        await until(pilot, lambda: "binary file" in text(app, "#ds-info"), what="the binary file refused")
        await until(pilot, lambda: "binary file" in text(app, "#ds-hist"), timeout=120, what="the inspection failed")
        # Nothing of the file inspected before is left beside the one that failed.
        assert pane.report is None and not invalid.display and invalid.option_count == 0
        assert "alpaca" not in text(app, "#status") and "10 invalid" not in text(app, "#status")
        assert "garbage.jsonl: not inspected" in text(app, "#status")
        assert text(app, "#ds-render") == ""


@pytest.mark.asyncio
async def test_alpaca_rows_read_instruction_input_output(tmp_path, runs_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "alpaca.jsonl").write_text("".join(json.dumps({"output": f"a{i}", "input": "", "instruction": f"q{i}"})
                                                   + "\n" for i in range(5)))
    app = TuneBench(runs_dir=runs_dir, workdir=tmp_path, dataset="alpaca.jsonl")
    async with app.run_test(size=(120, 36)) as pilot:
        pane = await app.ensure_pane("dataset")
        table = pane.query_one("#ds-rows")
        await until(pilot, lambda: table.row_count == 5, what="the rows")
        labels = [str(c.label) for c in table.columns.values()]
        assert labels[2:] == ["instruction", "input", "output"]
        assert cells(table)[0][2:] == ["q0", "", "a0"]


def write_mix_sources(d):
    """A chat task (12 rows) and plain general text (36 rows): a 3:1 mixture draws 36 and 12 of them an epoch."""
    (d / "task.jsonl").write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"say {i}"},
                                                                   {"role": "assistant", "content": f"{i} {i}"}]}) + "\n"
                                          for i in range(12)))
    (d / "general.jsonl").write_text("".join(json.dumps({"text": f"plain words {i}"}) + "\n" for i in range(36)))


@pytest.mark.asyncio
async def test_the_configured_mixture_source_by_source(tmp_path, runs_dir, monkeypatch):
    """data.train with weights in Hyperparameters: the pane lists each source's rows, weight, rows an epoch, share
    and format, read by the helper process; a plain data.train hides the section again."""
    monkeypatch.chdir(tmp_path)
    write_mix_sources(tmp_path)
    app = TuneBench(runs_dir=runs_dir, workdir=tmp_path, preset=str(PROJECT_PRESETS / "sft-lora-small.yaml"))
    async with app.run_test(size=(150, 45)) as pilot:
        hp = await app.ensure_pane("hyperparams")
        hp.apply({"data.train": ["task.jsonl:3", "general.jsonl:1"], "data.order": "length",
                  "data.curriculum_epochs": 1, "data.eval_fraction": 0.0})
        await pilot.press("2")
        pane = await app.ensure_pane("dataset")
        await until(pilot, lambda: pane.mixture is not None, timeout=120, what="the mixture read by the helper")
        assert [(s["rows"], s["drawn"], s["weight"]) for s in pane.mixture["sources"]] == [(12, 36, 3.0), (36, 12, 1.0)]
        shown = text(app, "#ds-mix")
        assert pane.query_one("#ds-mix").display and "48 rows an epoch, order length (1 epoch, then shuffled)" in shown
        assert "task.jsonl messages" in shown and "w 3  12 rows → 36 (75%)" in shown
        assert "general.jsonl text" in shown and "w 1  36 rows → 12 (25%)" in shown
        hp.apply({"data.train": "task.jsonl", "data.order": "shuffle"})
        await pilot.press("3", "2")  # shown again: the pane reads the Hyperparameters anew
        await until(pilot, lambda: not pane.query_one("#ds-mix").display, what="the section hidden")
        assert pane.mixture is None
