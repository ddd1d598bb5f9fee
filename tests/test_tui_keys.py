"""Keys go where the user expects: escape leaves a field, a pane never swallows the pane keys by itself,
`?` shows the keys of the pane in front first, and the compact field with focus is plain to see."""
from __future__ import annotations

import pytest

from tests.tui_support import settled, text, until
from tui.app import TuneBench
from tui.launching import PROJECT_PRESETS


@pytest.mark.asyncio
async def test_escape_leaves_the_checkpoints_prompt_and_the_pane_keys_act_again(tmp_path, runs_dir):
    app = TuneBench(runs_dir=runs_dir, workdir=tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("5")
        pane = await app.ensure_pane("checkpoints")
        prompt = pane.query_one("#prompt")
        prompt.focus()
        await pilot.press("h", "i")
        await pilot.press("escape")
        await until(pilot, lambda: pane.query_one("#models").has_focus, what="the list focused")
        await pilot.press("c")  # compare: a pane key again, not a letter in the prompt
        await until(pilot, lambda: settled(app))
        assert prompt.value == "hi" and "pick A and B first" in str(pane.query_one("#ckpt-status").render())


@pytest.mark.asyncio
async def test_the_dataset_pane_without_a_file_does_not_swallow_pane_keys(tmp_path, runs_dir):
    app = TuneBench(runs_dir=runs_dir, workdir=tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("2")
        pane = await app.ensure_pane("dataset")
        await until(pilot, lambda: app.query_one("#panes").active == "dataset" and settled(app))
        await pilot.press("3")
        await until(pilot, lambda: app.query_one("#panes").active == "hyperparams", what="the pane key obeyed")
        assert pane.query_one("#ds-path").value == ""
        await pilot.press("2", "slash")  # / types a path
        await until(pilot, lambda: pane.query_one("#ds-path").has_focus, what="the path field focused")


@pytest.mark.asyncio
async def test_help_shows_the_keys_of_the_pane_in_front_first(tmp_path, runs_dir):
    app = TuneBench(runs_dir=runs_dir, workdir=tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        for key, title, first_key in (("5", "Checkpoints [5]", "Set A"), ("4", "Monitor [4]", "Pause/resume")):
            await pilot.press(key)
            await app.ensure_pane({"5": "checkpoints", "4": "monitor"}[key])
            await pilot.press("question_mark")
            await until(pilot, lambda: app.screen.query("Markdown"), what="the help screen")
            markdown = app.screen.query_one("Markdown")._markdown
            assert markdown.startswith(f"## {title}") and markdown.index(first_key) < markdown.index("# tunebench")
            await pilot.press("escape")
            await until(pilot, lambda: not app.screen.query("Markdown"), what="help closed")


@pytest.mark.asyncio
async def test_the_compact_field_with_focus_stands_out(tmp_path, runs_dir):
    app = TuneBench(runs_dir=runs_dir, workdir=tmp_path, preset=str(PROJECT_PRESETS / "sft-lora-small.yaml"))
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("3")
        pane = await app.ensure_pane("hyperparams")
        name = pane.query_one("#preset-name")
        await until(pilot, lambda: settled(app))
        blurred = name.styles.background
        name.focus()
        await until(pilot, lambda: name.has_focus and settled(app))
        focused = name.styles.background
        assert focused != blurred and focused.get_contrast_text() and abs(focused.brightness - blurred.brightness) > 0.05


@pytest.mark.asyncio
@pytest.mark.parametrize("size", [(80, 24), (100, 30), (120, 36)])
async def test_every_tab_is_on_screen_at_every_common_width(tmp_path, runs_dir, size):
    """Eight panes: at 80 columns the full titles would push Chat and Sweeps off screen, so the short titles
    ("3 Params") are used there; wide terminals keep the full ones."""
    from textual.widgets import Tab

    from tui.registry import PANES

    app = TuneBench(runs_dir=runs_dir, workdir=tmp_path)
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: settled(app))
        tabs = {t.id.removeprefix("--content-tab-"): t for t in app.query(Tab)}
        assert set(tabs) >= {p.key for p in PANES}
        for spec in PANES:
            region = tabs[spec.key].region
            assert region.width > 0 and region.right <= size[0], (spec.key, region)
            assert tabs[spec.key].label_text.startswith(spec.binding)
        assert (tabs["hyperparams"].label_text == "3 Hyperparameters") == (size[0] >= 100)


@pytest.mark.asyncio
async def test_the_key_hints_in_brackets_are_shown_not_read_as_markup(tmp_path, runs_dir):
    """"Yes [y]", "Wait [w]" and "smoothing 0.6 [m]" name the key to press; as Textual markup "[y]" is a style tag
    and the hint vanished ("Yes", "smoothing 0.6"): the stop question at 80x24 did not say which key answers it."""
    from tui.screens.compare import DeviceChoice
    from tui.screens.confirm import ConfirmScreen

    app = TuneBench(runs_dir=runs_dir, workdir=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(ConfirmScreen("Stop the run?"))
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen) and settled(app), what="the question")
        assert [app.screen.query_one(f"#{b}").render().plain.strip() for b in ("yes", "no")] == ["Yes [y]", "No [n]"]
        await pilot.press("n")
        app.push_screen(DeviceChoice("a run holds the GPU"))
        await until(pilot, lambda: isinstance(app.screen, DeviceChoice) and settled(app), what="the device question")
        assert [app.screen.query_one(f"#{b}").render().plain.strip() for b in ("wait", "cpu", "go")] == [
            "Wait [w]", "Use the CPU [c]", "Go ahead [g]"]
        await pilot.press("escape")
        monitor = await app.ensure_pane("monitor")
        monitor._numbers({"loss": 1.5}, None)
        await until(pilot, lambda: settled(app))
        assert text(app, "#mon-numbers").endswith("smoothing 0.6 [m]")


@pytest.mark.asyncio
async def test_the_export_dialog_stays_on_an_80x24_screen_after_its_report(tmp_path, runs_dir):
    """The export's report (where it wrote, the check, how to load it) made the dialog taller than 24 rows: its
    bottom border and the lower half of its buttons were cut off. The box scrolls instead, Close reachable by Tab."""
    from tui.screens.export import ExportScreen

    app = TuneBench(runs_dir=runs_dir, workdir=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(ExportScreen(str(tmp_path / "run" / "checkpoints" / "checkpoint-20"), "run/checkpoint-20",
                                     str(tmp_path / "exports")))
        await until(pilot, lambda: isinstance(app.screen, ExportScreen) and settled(app), what="the dialog")
        long_out = tmp_path / ("a-long-folder-name-" * 3) / "exports" / "numbers-merged"
        app.screen.log_line(f"exported run/checkpoint-20 as a full model to {long_out} (3.1 MiB, 1.0 s)\n"
                            f"  checked: read back with transformers\n"
                            f"  load it with AutoModelForCausalLM.from_pretrained('{long_out}')")
        await until(pilot, lambda: settled(app))
        box = app.screen.query_one("#export-box")
        assert box.region.y >= 0 and box.region.bottom <= 24, box.region
        close = app.screen.query_one("#export-close")
        close.focus()
        await until(pilot, lambda: settled(app) and box.region.contains_region(close.region), what="Close in view")
