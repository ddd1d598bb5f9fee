"""Blind mode: votes cast with keys in the Checkpoints pane become a preference JSONL that a DPO run trains on."""
from __future__ import annotations

import asyncio
import json

import pytest

from engine.checkpoints.votes import BlindOrder, VoteBook, preference_row
from tests.compare_support import read_jsonl, trained_run

GIB = 2**30


@pytest.fixture(scope="session")
def ab(tmp_path_factory, tiny_model, chat_jsonl):
    return trained_run(tmp_path_factory.getbasetemp() / "compare", tiny_model, chat_jsonl)


def test_blind_order_is_seeded_and_mixed():
    order = BlindOrder(7)
    sides = [order.swapped(i) for i in range(200)]
    assert sides == [BlindOrder(7).swapped(i) for i in range(200)]  # the same on every replay
    assert 60 < sum(sides) < 140  # both orders happen, about half each
    for i in range(10):
        assert {order.model_for(i, "left"), order.model_for(i, "right")} == {"a", "b"}


def test_vote_book_rows_ties_and_summary(tmp_path):
    book = VoteBook(tmp_path / "v" / "votes.jsonl", {"a": "run/ckpt-6", "b": "base"})
    chat = {"messages": [{"role": "user", "content": "say apple"}]}
    row = book.cast(0, chat, {"a": "apple apple", "b": "pear"}, "a")
    assert row == {"prompt": [{"role": "user", "content": "say apple"}],
                   "chosen": [{"role": "assistant", "content": "apple apple"}],
                   "rejected": [{"role": "assistant", "content": "pear"}]}
    assert book.cast(1, {"text": "2+2="}, {"a": "5", "b": "4"}, "b") == preference_row({"text": "2+2="}, "4", "5")
    assert book.cast(2, chat, {"a": "x", "b": "y"}, "tie") is None
    assert book.cast(3, chat, {"a": "same", "b": "same"}, "a") is None  # identical answers: nothing to prefer
    with pytest.raises(ValueError, match="already has a vote"):
        book.cast(0, chat, {"a": "x", "b": "y"}, "b")
    assert len(read_jsonl(book.path)) == 2
    summary = json.loads(book.summary_path.read_text())
    assert summary["tally"] == {"a": 1, "b": 1, "tie": 2} and summary["rows"] == 2
    assert summary["models"]["a"] == "run/ckpt-6"


def test_blind_votes_from_the_pane_train_a_dpo_run(ab, tmp_path):
    """Pick the final model (B becomes its base), answer the GPU question with CPU, vote on every prompt with
    keys, then train method dpo on the votes file as it is."""
    from tests.methods_support import config, train
    from tui.app import TuneBench
    from tui.screens.compare import CompareScreen, DeviceChoice

    run = ab["run"]
    seen: dict = {"votes": []}

    async def body():
        app = TuneBench(runs_dir=ab["runs_dir"])
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("5")
            await pilot.pause()
            pane = app.pane("checkpoints")
            table = pane.query_one("#models")
            assert str(run.path) in pane.entries and str(ab["model"]) in pane.entries
            assert len([e for e in pane.entries.values() if e.kind == "checkpoint"]) == 3
            table.move_cursor(row=list(pane.entries).index(str(run.path)))
            await pilot.press("a")
            assert pane.picked["a"].kind == "final" and pane.picked["b"].kind == "base"  # B defaults to the base
            pane.query_one("#max-tokens").value = "8"
            # A GPU with 100 MiB free while nothing trains: the pane asks before loading anything.
            pane.gpus = lambda: [{"index": 0, "mem_total": 8 * GIB, "mem_used": 8 * GIB - 100 * 2**20}]
            await pilot.press("v")
            for _ in range(100):
                await pilot.pause(0.05)
                if isinstance(app.screen, DeviceChoice):
                    break
            assert isinstance(app.screen, DeviceChoice) and "100 MiB" not in app.screen.message
            assert "0.1 GiB free" in app.screen.message
            await pilot.press("c")  # use the CPU
            for _ in range(2400):  # the helper imports the ML stack and loads the models: minutes when loaded
                await pilot.pause(0.25)
                scr = app.screen
                if isinstance(scr, CompareScreen) and (scr.result is not None or scr.error):
                    break
            assert isinstance(scr, CompareScreen) and scr.error is None, getattr(scr, "error", None)
            assert scr.result["metrics"]["device"] == "cpu" and len(scr.rows) == 8
            assert scr.query_one("#left-box").border_title == "1"  # blind: no model names on the answers
            keys = ["a", "b", "t", "a", "b", "a", "b", "a"]
            for n, key in enumerate(keys):
                i = scr.index
                position = {"a": "left", "b": "right", "t": "tie"}[key]
                seen["votes"].append((position, dict(scr.texts[i]), scr.order.model_for(i, "left")))
                await pilot.press(key)
                await pilot.pause()
                assert len(scr.book.votes) == n + 1
            assert "revealed" in str(scr.query_one("#compare-metrics").render())
            seen["path"] = scr.book.path
            await pilot.press("escape")
            await pilot.pause()

    asyncio.run(body())
    path = seen.pop("path")
    rows = read_jsonl(path)
    expected = []
    for position, texts, left in seen["votes"]:  # rows are appended in the order the votes were cast
        if position == "tie" or texts["a"] == texts["b"]:
            continue
        chosen = left if position == "left" else ("b" if left == "a" else "a")
        expected.append((texts[chosen], texts["b" if chosen == "a" else "a"]))
    assert [(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows] == expected
    assert len(rows) >= 2, "the fine-tuned model and its base answered alike on almost every prompt"
    assert all(r["prompt"][-1]["role"] == "user" for r in rows)
    # The votes file as it is, as DPO training data.
    cfg = config(ab["model"], path, method="dpo", training={"max_steps": 2, "batch_size": 2})
    dpo_run, events = train(tmp_path / "dpo-runs", cfg)
    assert events["data"][0]["format"] == "preference" and events["data"][0]["train_rows"] == len(rows)
    assert any("rewards/margins" in e for e in events["metrics"])
    assert dpo_run.last_checkpoint() is not None


def test_export_from_the_pane_and_waiting_for_the_gpu(ab, tmp_path):
    """e exports the selected checkpoint through the helper; 'wait' re-checks the GPU and starts once it is free."""
    from tui.app import TuneBench
    from tui.screens.compare import CompareScreen, DeviceChoice
    from tui.screens.export import ExportScreen

    run = ab["run"]
    out = tmp_path / "exported"

    async def body():
        app = TuneBench(runs_dir=ab["runs_dir"])
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("5")
            await pilot.pause()
            pane = app.pane("checkpoints")
            table = pane.query_one("#models")
            table.move_cursor(row=list(pane.entries).index(str(run.checkpoints_dir / "checkpoint-4")))
            await pilot.press("e")
            await pilot.pause()
            scr = app.screen
            assert isinstance(scr, ExportScreen)
            scr.query_one("#export-out").value = str(out)
            await pilot.click("#export-go")
            for _ in range(2400):
                await pilot.pause(0.25)
                if scr.result is not None or "failed" in str(scr.query_one("#export-log").render()):
                    break
            assert scr.result and scr.result["kind"] == "merged" and scr.result["step"] == 4, \
                str(scr.query_one("#export-log").render())
            await pilot.press("escape")
            await pilot.pause()
            # The GPU is short of memory, then frees up: "wait" starts the comparison on it by itself.
            free = {"bytes": 100 * 2**20}
            pane.gpus = lambda: [{"index": 0, "mem_total": 8 * GIB, "mem_used": 8 * GIB - free["bytes"]}]
            await pilot.press("a")
            await pilot.press("c")
            for _ in range(100):
                await pilot.pause(0.05)
                if isinstance(app.screen, DeviceChoice):
                    break
            await pilot.press("w")
            await pilot.pause(0.5)
            assert "waiting" in str(pane.query_one("#ckpt-status").render())
            assert not isinstance(app.screen, CompareScreen)
            free["bytes"] = 6 * GIB
            for _ in range(120):
                await pilot.pause(0.1)
                if isinstance(app.screen, CompareScreen):
                    break
            assert isinstance(app.screen, CompareScreen) and app.screen.args["device"] == "cuda"
            await pilot.press("escape")  # closing cancels the helper's work before it loads anything
            await pilot.pause()

    asyncio.run(body())
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "tunebench_export.json"} <= names


def test_votes_are_private_as_runs_are(tmp_path):
    """Votes hold prompts and answers: 0600 files in a 0700 folder, like run directories."""
    import os

    from engine.checkpoints.votes import VoteBook, default_path

    old = os.umask(0o022)  # the usual umask, which left them 0644 in 0755
    try:
        book = VoteBook(default_path(tmp_path / "runs", "run-a", "base"), {"a": "run-a", "b": "base"})
        book.cast(0, {"messages": [{"role": "user", "content": "hi"}]}, {"a": "hello", "b": "yo"}, "a")
    finally:
        os.umask(old)
    assert oct(book.path.parent.stat().st_mode & 0o777) == "0o700"
    assert oct(book.path.stat().st_mode & 0o777) == "0o600"
    assert oct(book.summary_path.stat().st_mode & 0o777) == "0o600"
