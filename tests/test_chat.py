"""Chat: a three-turn chat streams and keeps its history, A and B side by side share one loaded base, blind picks
become DPO rows, the CLI reads turns from a file, chats are saved 0600 and reopen, and become SFT rows."""
from __future__ import annotations

import json
import stat

import pytest

from engine.checkpoints import chats
from engine.checkpoints.refs import resolve_ref
from engine.checkpoints.settings import Decoding
from tests.compare_support import read_jsonl, trained_run
from tests.conftest import tunebench

TURNS = ["say apple", "say stone", "say river"]


@pytest.fixture(scope="session")
def ab(tmp_path_factory, tiny_model, chat_jsonl):
    return trained_run(tmp_path_factory.getbasetemp() / "compare", tiny_model, chat_jsonl)


def test_three_turns_stream_and_keep_the_history(ab, tmp_path):
    from engine.checkpoints import generate
    from engine.checkpoints.chat import ChatSession

    run = ab["run"]
    ref = resolve_ref(run.id, ab["runs_dir"])
    conv = chats.Conversation(models={"a": run.id, "b": None}, labels={"a": ref.label, "b": None},
                              system="Answer with the word twice.", decoding=Decoding(max_new_tokens=10).as_dict())
    session = ChatSession(conv, ref)
    pieces: list[list[str]] = []
    try:
        for text in TURNS:
            pieces.append([])
            turn = session.send(text, on_token=lambda side, t, full: pieces[-1].append(t))
            assert "".join(pieces[-1]) == turn.a  # the streamed pieces are the answer
        assert any(len(p) >= 2 for p in pieces)  # token by token, not one block
        msgs = conv.messages("a")
        assert [m["role"] for m in msgs] == ["system", "user", "assistant"] * 1 + ["user", "assistant"] * 2
        assert [m["content"] for m in msgs if m["role"] == "user"] == TURNS
        # The third answer is what the model gives the whole history (system, two turns, the message): rebuilt
        # here through the same template and decoded alone, it matches.
        prompt = {"messages": conv.messages("a", 2) + [{"role": "user", "content": TURNS[2]}]}
        ids = generate.encode_prompt(session.side_a.tok, prompt)
        alone = generate.Stream(session.side_a, ids, Decoding(max_new_tokens=10, seed=2), 2, session.stops["a"])
        while not alone.done:
            alone.step()
        assert alone.text == conv.turns[2].a
        without = generate.encode_prompt(session.side_a.tok, {"messages": [{"role": "user", "content": TURNS[2]}]})
        assert len(ids) > len(without) + 10  # the history really is in the prompt
    finally:
        session.close()
    path = chats.save(conv, tmp_path / "runs")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again = chats.load(path)
    assert [t.a for t in again.turns] == [t.a for t in conv.turns] and again.system == conv.system
    assert [c["path"] for c in chats.list_chats(tmp_path / "runs")] == [str(path)]
    rows = read_jsonl(chats.write_sft(again))
    assert rows == [{"messages": conv.messages("a")}]


def test_side_by_side_from_one_base_loads_it_once(ab, monkeypatch):
    """Two checkpoints of a run: one base in memory, adapters switched per token; answers as if loaded alone."""
    from engine.checkpoints.chat import ChatSession
    from engine.training import modeling

    loads = []
    real = modeling.load_model
    monkeypatch.setattr(modeling, "load_model", lambda *a, **k: loads.append(a[0].model.name_or_path) or real(*a, **k))
    run, runs_dir = ab["run"], ab["runs_dir"]
    a, b = resolve_ref(f"{run.id}@2", runs_dir), resolve_ref(run.id, runs_dir)
    dec = Decoding(max_new_tokens=6).as_dict()
    conv = chats.Conversation(models={"a": f"{run.id}@2", "b": run.id}, labels={"a": a.label, "b": b.label},
                              mode="side", decoding=dec)
    session = ChatSession(conv, a, b)
    try:
        assert loads == [str(ab["model"])] and session.shared_base and session.side_a.model is session.side_b.model
        for text in TURNS[:2]:
            session.send(text)
    finally:
        session.close()
    for name, ref in (("a", a), ("b", b)):
        alone = chats.Conversation(models={"a": "x", "b": None}, labels={"a": "x", "b": None}, decoding=dec)
        s = ChatSession(alone, ref)
        try:
            for text in TURNS[:2]:
                s.send(text)
        finally:
            s.close()
        assert [t.a for t in alone.turns] == [getattr(t, name) for t in conv.turns]  # each side kept its own history


def test_blind_chat_picks_are_preference_rows(ab, tmp_path):
    run, runs_dir = ab["run"], ab["runs_dir"]
    (tmp_path / "turns.txt").write_text("say apple\n/pick 1\nsay stone\n/pick 2\n/quit\n")
    res = tunebench("chat", run.id, ab["model"], "--blind", "--max-new-tokens", "6", "--json", "--input",
                    tmp_path / "turns.txt", runs_dir=runs_dir)
    assert res.returncode == 0, res.stderr[-2000:]
    out = [json.loads(line) for line in res.stdout.splitlines()]
    turns = [o for o in out if "turn" in o]
    saved = next(o["saved"] for o in out if "saved" in o)
    conv = chats.load(saved)
    assert conv.mode == "blind" and [t.pick for t in conv.turns] == [
        conv_side(conv, 0, "left"), conv_side(conv, 1, "right")]
    assert [t["a"] for t in turns] == [t.a for t in conv.turns]
    rows = read_jsonl(conv.votes_path)
    decisive = [i for i, t in enumerate(conv.turns) if t.a != t.b]
    assert len(rows) == len(decisive) and rows  # identical answers cannot be preferred
    for row, i in zip(rows, decisive):
        t = conv.turns[i]
        assert row["chosen"][0]["content"] == getattr(t, t.pick)
        assert row["prompt"][-1] == {"role": "user", "content": t.user}
    if len(rows) == 2:  # the second prompt carries the first turn's picked answer as the shared history
        assert rows[1]["prompt"][1]["content"] == getattr(conv.turns[0], conv.turns[0].pick)


def conv_side(conv, i, position):
    from engine.checkpoints.votes import BlindOrder

    return BlindOrder(conv.blind_seed).model_for(i, position)


def test_cli_chat_reads_turns_from_a_file_and_writes_sft_rows(ab, tmp_path):
    run, runs_dir = ab["run"], ab["runs_dir"]
    (tmp_path / "turns.txt").write_text("say apple\n\nsay stone\nsay river\n/sft\n")
    res = tunebench("chat", run.id, "--system", "be brief", "--max-new-tokens", "6", "--input", tmp_path / "turns.txt",
                    runs_dir=runs_dir)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.count("model> ") == 3 and "SFT rows:" in res.stderr
    sft = res.stderr.split("SFT rows: ")[1].split()[0]
    (row,) = read_jsonl(sft)
    assert [m["role"] for m in row["messages"]] == ["system"] + ["user", "assistant"] * 3
    assert row["messages"][0]["content"] == "be brief"
    # Reopened: the saved chat goes on with its model, system prompt and history.
    saved = res.stderr.split("· saved ")[1].split()[0]
    (tmp_path / "more.txt").write_text("say cloud\n")
    more = tunebench("chat", "--load", saved, "--input", tmp_path / "more.txt", "--json", runs_dir=runs_dir)
    assert more.returncode == 0, more.stderr[-2000:]
    conv = chats.load(saved)
    assert [t.user for t in conv.turns] == ["say apple", "say stone", "say river", "say cloud"]
    assert conv.system == "be brief" and json.loads(more.stdout.splitlines()[0])["turn"] == 3
    bad = tunebench("chat", "nosuchrun", runs_dir=runs_dir)
    assert bad.returncode == 2 and "nosuchrun" in bad.stderr and "Traceback" not in bad.stderr
    blind = tunebench("chat", run.id, "--blind", runs_dir=runs_dir)
    assert blind.returncode == 2 and "two models" in blind.stderr


def test_conversation_rules():
    with pytest.raises(ValueError, match="needs a model B"):
        chats.Conversation(models={"a": "x", "b": None}, labels={"a": "x", "b": None}, mode="side")
    conv = chats.Conversation(models={"a": "x", "b": "y"}, labels={"a": "X", "b": "Y"}, mode="blind", blind_seed=5)
    conv.turns.append(chats.Turn(user="hi", a="A1", b="B1"))
    assert conv.pending_pick() == 0
    left = conv_side(conv, 0, "left")
    conv.turns[0].pick = "tie"
    assert conv.messages("b")[-1]["content"] == (conv.turns[0].a if left == "a" else conv.turns[0].b)  # a tie: the left
    assert conv.pending_pick() is None


def test_a_chatml_turn_ends_at_its_end_of_turn_token(tmp_path):
    """<|im_end|> is not the tokenizer's eos: chat stops there all the same (the template's assistant suffix)."""
    from engine.checkpoints.export import chat_shape, stop_ids
    from engine.demo.tinymodel import build_tokenizer

    tok = build_tokenizer(tmp_path / "tok")
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
                         "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    shape = chat_shape(tok)
    assert shape.suffix["assistant"] == "<|im_end|>\n" and shape.gen == "<|im_start|>assistant\n"
    assert stop_ids(tok, shape) == {tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")}
