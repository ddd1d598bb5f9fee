"""Data loading over the real files in ../shared/data and over broken files written here; rows name their place."""
from __future__ import annotations

import json
import os

import pytest

from engine import config as cfgmod
from engine.data.errors import DataError
from engine.data.prepare import InvalidRows, prepare
from engine.data.sources import load, read_rows

from .conftest import shared_file, tunebench

CHAT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def cfg_for(train, method="sft", **data) -> cfgmod.Config:
    train = str(train) if not isinstance(train, list) else [str(t) for t in train]
    return cfgmod.Config(method=method).replace(data={"train": train, **data})


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# --- the real files --------------------------------------------------------------------------------------------

def test_alpaca_demo_becomes_chat_rows():
    train, evals, info = prepare(cfg_for(shared_file("llamafactory/alpaca_en_demo.json")))
    assert info["format"] == "alpaca" and len(train) == 999 and evals == []
    first = train[0]["messages"]
    assert [m["role"] for m in first] == ["user", "assistant"]
    assert first[0]["content"].startswith("Describe a process of making crepes")


def test_sharegpt_preference_demo_for_dpo_kto_and_sft_chosen():
    f = shared_file("llamafactory/dpo_en_demo.json")
    dpo, _, info = prepare(cfg_for(f, "dpo"))
    assert info["format"] == "preference" and len(dpo) == 300
    row = dpo[0]
    assert row["prompt"][-1]["role"] == "user" and row["chosen"][0]["role"] == "assistant"
    assert row["chosen"] != row["rejected"]
    kto, _, _ = prepare(cfg_for(f, "kto"))
    assert len(kto) == 600 and [r["label"] for r in kto[:2]] == [True, False]
    with pytest.raises(DataError, match="train_on_chosen"):
        prepare(cfg_for(f, "sft"))
    sft, _, _ = prepare(cfg_for(f, "sft", train_on_chosen=True))
    assert sft[0]["messages"] == row["prompt"] + row["chosen"]


def test_plain_text_demo():
    train, _, info = prepare(cfg_for(shared_file("llamafactory/c4_demo.jsonl")))
    assert info["format"] == "text" and len(train) == 300 and all(r["text"].strip() for r in train)


def test_sst2_tsv_classification_with_stratified_split():
    cfg = cfg_for(shared_file("sst2/train.tsv"), "classification", eval_fraction=0.1)
    train, evals, info = prepare(cfg)
    assert info["format"] == "classification" and info["labels"] == ["0", "1"]
    assert len(train) + len(evals) == 6735
    share = lambda rows: sum(r["label"] for r in rows) / len(rows)  # noqa: E731
    assert abs(share(train) - share(evals)) < 0.01  # stratified: the positive share is kept in eval
    again = prepare(cfg)[1]
    assert again == evals  # seeded: the same split every time


# --- broken files ----------------------------------------------------------------------------------------------

def test_bad_json_line_in_the_middle_is_named_and_the_rest_kept(tmp_path):
    f = write_jsonl(tmp_path / "d.jsonl", [CHAT, CHAT, '{"messages": [oops', CHAT, CHAT])
    with pytest.raises(InvalidRows) as e:
        prepare(cfg_for(f))
    assert f"{f}:3" in str(e.value) and "invalid JSON" in str(e.value) and "1 invalid row(s) of 5" in str(e.value)
    train, _, info = prepare(cfg_for(f, skip_invalid=True))
    assert len(train) == 4 and info["dropped"]["count"] == 1
    assert info["dropped"]["first"][0]["location"] == f"{f}:3"


def test_wrong_types_and_conversation_problems_each_named(tmp_path):
    rows = [CHAT,
            {"messages": "not a list"},
            {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
            {"messages": [{"role": "user", "content": "only a question"}]},
            {"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "x"}]},
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}]},
            {"messages": [{"role": "robot", "content": "q"}]}]
    f = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(InvalidRows) as e:
        prepare(cfg_for(f))
    kinds = {p.location: p.kind for p in e.value.problems}
    assert kinds == {f"{f}:2": "wrong type", f"{f}:3": "roles do not alternate", f"{f}:4": "no assistant turn",
                     f"{f}:5": "wrong type", f"{f}:6": "empty field", f"{f}:7": "unknown role"}


def test_json_array_rows_are_named_by_index(tmp_path):
    f = tmp_path / "a.json"
    f.write_text(json.dumps([{"instruction": "q", "output": "a"}, {"instruction": "q", "output": 3}]))
    with pytest.raises(InvalidRows) as e:
        prepare(cfg_for(f))
    assert e.value.problems[0].location == f"{f}[1]" and "'output' should be a string" in str(e.value)


def test_csv_rows_are_named_by_row_and_line(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text('text,label\n"a, quoted",pos\nb,neg,extra\n"multi\nline",pos\n,neg\n')
    with pytest.raises(InvalidRows) as e:
        prepare(cfg_for(f, "classification"))
    where = {p.location: p.kind for p in e.value.problems}
    assert where == {f"{f} row 2 (line 3)": "wrong number of fields", f"{f} row 4 (line 6)": "empty field"}


def test_empty_file(tmp_path):
    f = tmp_path / "empty.jsonl"
    f.write_text("")
    with pytest.raises(DataError, match="empty.jsonl: the file is empty"):
        load(str(f))
    assert tunebench("inspect", f).returncode == 2


def test_bom_and_crlf_read_like_a_clean_file(tmp_path):
    clean = write_jsonl(tmp_path / "clean.jsonl", [CHAT, CHAT])
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + clean.read_bytes().replace(b"\n", b"\r\n"))
    assert [r.data for r in load(str(bom))] == [r.data for r in load(str(clean))]
    tsv = tmp_path / "bom.tsv"
    tsv.write_bytes(b"\xef\xbb\xbfsentence\tlabel\r\ngood film\t1\r\nbad film\t0\r\n")
    train, _, info = prepare(cfg_for(tsv, "classification"))
    assert train == [{"text": "good film", "label": 1}, {"text": "bad film", "label": 0}]


def test_binary_garbage_is_refused_with_a_reason(tmp_path):
    f = tmp_path / "garbage.jsonl"
    f.write_bytes(os.urandom(4096) + b"\x00" * 16)
    with pytest.raises(DataError, match="binary file"):
        load(str(f))
    g = tmp_path / "noise.jsonl"  # random bytes without NUL: every line is reported, none trains
    g.write_bytes(bytes(b for b in os.urandom(20000) if b not in (0,)))
    with pytest.raises(DataError) as e:
        prepare(cfg_for(g))
    assert "no readable row" in str(e.value)


def test_invalid_utf8_line_is_named(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_bytes(json.dumps(CHAT).encode() + b"\n" + b'{"text": "caf\xe9"}\n' + json.dumps(CHAT).encode() + b"\n")
    rows = load(str(f))
    assert rows[1].location == f"{f}:2" and rows[1].error.startswith("invalid UTF-8")
    assert rows[0].error is None and rows[2].error is None


# --- other sources ----------------------------------------------------------------------------------------------

def test_glob_several_files_and_directory(tmp_path):
    for i in range(3):
        write_jsonl(tmp_path / f"part{i}.jsonl", [{"text": f"row {i}"}])
    assert [r.data["text"] for r in load(str(tmp_path / "part*.jsonl"))] == ["row 0", "row 1", "row 2"]
    assert len(load([str(tmp_path / "part0.jsonl"), str(tmp_path / "part1.jsonl")])) == 2
    assert len(load(str(tmp_path))) == 3
    with pytest.raises(DataError, match="matches no file"):
        load(str(tmp_path / "nope*.jsonl"))


def test_parquet_and_save_to_disk(tmp_path):
    import datasets

    rows = [{"prompt": "2+2=", "completion": "4"}, {"prompt": "3+3=", "completion": "6"}]
    ds = datasets.Dataset.from_list(rows)
    ds.to_parquet(str(tmp_path / "d.parquet"))
    ds.save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(str(tmp_path / "dict"))
    for spec in ("d.parquet", "saved", "dict"):
        train, _, info = prepare(cfg_for(tmp_path / spec))
        assert info["format"] == "prompt_completion" and train == rows, spec
    assert len(prepare(cfg_for(tmp_path / "dict", split="test"))[0]) == 1
    datasets.Dataset.from_list([{"text": "ok"}, {"text": None}]).to_parquet(str(tmp_path / "t.parquet"))
    with pytest.raises(InvalidRows) as e:
        prepare(cfg_for(tmp_path / "t.parquet"))
    assert e.value.problems[0].location == f"{tmp_path / 't.parquet'}[1]" and e.value.problems[0].kind == "missing field"
    with pytest.raises(DataError, match="data.split"):
        prepare(cfg_for(tmp_path / "dict", split="validation"))


def test_hub_id_offline_fails_fast_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="HF_HUB_OFFLINE is set"):
        load("someone/some-dataset-that-is-not-cached")
    r = tunebench("inspect", "someone/some-dataset-that-is-not-cached", env={"HF_HUB_OFFLINE": "1"})
    assert r.returncode == 2 and "someone/some-dataset-that-is-not-cached" in r.stderr


def test_missing_file_and_strict_reader(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load(str(tmp_path / "missing.jsonl"))
    f = write_jsonl(tmp_path / "d.jsonl", [CHAT, "[1, 2]"])
    with pytest.raises(DataError, match=r"d.jsonl:2: not an object"):
        read_rows(str(f))


def test_hub_id_without_a_network_fails_at_once(monkeypatch):
    """Not offline by setting, but the hub unreachable (a closed local port): a clear message, no retries."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(DataError, match="the hub cannot be reached from here"):
        load("someone/some-dataset")


# --- bad inputs that crashed, hung or read another file (issue 14) -----------------------------------------------

def test_deeply_nested_json_is_a_named_row_not_a_traceback(tmp_path):
    deep = '{"messages": ' + "[" * 5000 + "]" * 5000 + "}"
    f = write_jsonl(tmp_path / "deep.jsonl", [CHAT, deep, CHAT])
    rows = load(str(f))
    assert [r.error is None for r in rows] == [True, False, True]
    assert rows[1].location == f"{f}:2" and "nested too deeply" in rows[1].error
    whole = tmp_path / "deep.json"
    whole.write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(DataError, match="nested too deeply"):
        load(str(whole))
    from engine.data.preview import preview

    arr = tmp_path / "arr.json"
    arr.write_text("[" + json.dumps(CHAT) + ", " + "[" * 5000 + "]" * 5000 + "]")
    out = preview(str(arr))
    assert len(out["rows"]) == 1 and "nested too deeply" in out["invalid"][0]["reason"]


def test_a_fifo_is_refused_at_once_instead_of_hanging(tmp_path):
    fifo = tmp_path / "data.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="FIFO"):
        load(str(fifo))
    from engine.data.preview import preview

    with pytest.raises(DataError, match="FIFO"):
        preview(str(fifo))
    r = tunebench("inspect", fifo, timeout=60)  # hung forever before: a FIFO open() waits for a writer
    assert r.returncode == 2 and "FIFO" in r.stderr and "Traceback" not in r.stderr


def test_a_lone_surrogate_escape_is_a_named_invalid_row(tmp_path):
    bad = '{"messages": [{"role": "user", "content": "hi \\ud800"}, {"role": "assistant", "content": "yo"}]}'
    f = write_jsonl(tmp_path / "s.jsonl", [CHAT, bad])
    rows = load(str(f))
    assert rows[1].error.startswith("invalid character") and "\\ud800" in rows[1].error
    with pytest.raises(InvalidRows) as e:
        prepare(cfg_for(f))
    assert f"{f}:2" in str(e.value)
    r = tunebench("inspect", f, "--json", timeout=120)  # was a UnicodeEncodeError traceback
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["invalid_by_reason"] == {"invalid character": 1}


def test_a_file_name_with_brackets_is_read_literally_not_as_a_glob(tmp_path):
    other = write_jsonl(tmp_path / "data1.jsonl", [{"text": "the other file"}])
    literal = write_jsonl(tmp_path / "data[1].jsonl", [{"text": "the named file"}])
    rows = load(str(literal))
    assert [r.data["text"] for r in rows] == ["the named file"]
    assert [r.data["text"] for r in load(str(tmp_path / "data[0-9].jsonl"))] == ["the other file"]  # a real glob
    assert other.exists()


def test_a_symlink_loop_and_a_dangling_link_say_what_they_are(tmp_path):
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(loop)
    with pytest.raises(DataError, match="symlink loop"):
        load(str(loop))
    dangling = tmp_path / "gone.jsonl"
    dangling.symlink_to(tmp_path / "nowhere.jsonl")
    with pytest.raises(DataError, match="which does not exist"):
        load(str(dangling))


def test_an_unreadable_file_is_quoted_only_as_a_short_escaped_excerpt(tmp_path):
    """A data file that is a link to a secret (/etc/shadow) must not print its first line whole."""
    secret = "root:$6$SECRETHASHSECRETHASHSECRETHASHSECRETHASH0123456789abcdef:19000:0:99999:7:::"
    shadow = tmp_path / "shadow"
    shadow.write_text(secret + "\ndaemon:*:19000:0:99999:7:::\n")
    link = tmp_path / "users.csv"
    link.symlink_to(shadow)
    r = tunebench("inspect", link, timeout=120)
    assert r.returncode == 2 and "SECRETHASH0123456789" not in r.stdout + r.stderr, r.stderr
    terminal = tmp_path / "\x1b[31mred.jsonl"
    r = tunebench("inspect", terminal, timeout=60)
    assert r.returncode == 2 and "\x1b" not in r.stderr and "\\x1b[31mred.jsonl" in r.stderr
