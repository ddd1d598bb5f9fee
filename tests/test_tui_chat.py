"""The Chat pane with Pilot: t on a Checkpoints row opens a chat on that model (in the real helper process), a message
streams an answer into the transcript, the chat is saved, ctrl+t opens it in the Dataset pane as SFT rows; and
snapshots of the empty pane at 80x24 and 120x36."""
from __future__ import annotations

import asyncio

import pytest

from engine.checkpoints import chats
from tests.compare_support import read_jsonl, trained_run
from tests.tui_support import settled, text, until
from tui import app as appmod


@pytest.fixture(scope="session")
def ab(tmp_path_factory, tiny_model, chat_jsonl):
    return trained_run(tmp_path_factory.getbasetemp() / "compare", tiny_model, chat_jsonl)


def test_chat_from_the_checkpoints_pane_to_the_dataset_pane(ab):
    from tui.app import TuneBench

    run = ab["run"]
    seen: dict = {}

    async def body():
        app = TuneBench(runs_dir=ab["runs_dir"])
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.press("5")
            await pilot.pause()
            ckpt = app.pane("checkpoints")
            chat = await app.ensure_pane("chat")
            chat.gpus = lambda: []  # as on a CPU-only machine: no device question
            chat.query_one("#chat-tokens").value = "8"
            table = ckpt.query_one("#models")
            table.move_cursor(row=list(ckpt.entries).index(str(run.path)))
            await pilot.press("t")
            await until(pilot, lambda: app.query_one("#panes").active == "chat", what="the Chat pane shown")
            assert chat.query_one("#chat-a-ref").value == str(run.path)
            await until(pilot, lambda: chat.session is not None, timeout=600, what="the chat loaded in the helper")
            assert "loaded in" in text(app, "#chat-status")
            chat.query_one("#chat-input").focus()
            await pilot.press(*"say apple", "enter")
            await until(pilot, lambda: chat.conv and len(chat.conv["turns"]) == 1 and chat.live is None, timeout=600,
                        what="the answer")
            seen["turn"] = chat.conv["turns"][0]
            seen["transcript"] = text(app, "#chat-a")
            seen["path"] = chat.conv["path"]
            await pilot.press("ctrl+t")
            await until(pilot, lambda: app.query_one("#panes").active == "dataset", what="the Dataset pane shown")
            seen["dataset"] = app.pane("dataset").query_one("#ds-path").value
            await chat.close_session()

    asyncio.run(body())
    turn = seen["turn"]
    assert turn["user"] == "say apple" and f"you: say apple\nmodel: {turn['a']}" in seen["transcript"]
    conv = chats.load(seen["path"])
    assert [t.a for t in conv.turns] == [turn["a"]]
    assert seen["dataset"].endswith(".sft.jsonl")
    (row,) = read_jsonl(seen["dataset"])
    assert row["messages"][-2:] == [{"role": "user", "content": "say apple"}, {"role": "assistant", "content": turn["a"]}]


@pytest.fixture
def steady(tmp_path, monkeypatch):
    monkeypatch.setattr(appmod, "HEADER", "tui.widgets.header:SystemHeader")
    monkeypatch.setattr("tui.widgets.header.socket.gethostname", lambda: "gpu-box")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TUNEBENCH_RUNS_DIR", "runs")
    return tmp_path


@pytest.mark.parametrize("size", [(80, 24), (120, 36)], ids=["80x24", "120x36"])
def test_chat_pane_snapshot(snap_compare, steady, size):
    app = appmod.TuneBench(runs_dir="runs", workdir=".")

    async def shown(pilot):  # under load the pane may still be mounting after the key: wait for it, not for time
        await pilot.press("7")
        pane = await app.ensure_pane("chat")
        await until(pilot, lambda: app.query_one("#panes").active == "chat" and pane.is_mounted and settled(app),
                    what="the chat pane shown")
        for field in app.query("Input, TextArea"):  # a blinking cursor would differ with the moment of capture
            field.cursor_blink = False
        await until(pilot, lambda: settled(app), what="redrawn")

    assert snap_compare(app, terminal_size=size, run_before=shown)
