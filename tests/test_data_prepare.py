"""The data pass at scale: streamed rows, the parallel check, sft rows tokenised as TRL does, the cache, truncation.

Files are cut into many shards here (stream.SPLIT_BYTES and SHARD_BYTES made small) and read by two forked
processes, so a few thousand rows take the path a multi-GB file takes.
"""
from __future__ import annotations

import json
import os

import pytest

from engine import config as cfgmod
from engine.data import cache, stream
from engine.data.check import cached_check, check
from engine.data.encode import IGNORE, split_lengths, truncate
from engine.data.errors import InvalidRows
from engine.data.inspect import load_tokenizer
from engine.data.pipeline import prepare_sft
from engine.data.prepare import prepare
from engine.data.sources import load

from .conftest import shared_file
from .test_data_load import CHAT, write_jsonl

U, A = "user", "assistant"


def chat(q: str, a: str) -> dict:
    return {"messages": [{"role": U, "content": q}, {"role": A, "content": a}]}


def cfg_for(train, method="sft", **data) -> cfgmod.Config:
    return cfgmod.Config(method=method).replace(data={"train": str(train), "num_proc": 2, **data})


@pytest.fixture
def sharded(monkeypatch):
    """Every file over 2 KB is cut into pieces of about 8 KB (the multi-shard, multi-process path), and a JSON
    array over 4 KB is decoded object by object."""
    monkeypatch.setattr(stream, "SPLIT_BYTES", 2048)
    monkeypatch.setattr(stream, "SHARD_BYTES", 8192)
    monkeypatch.setattr(stream, "WHOLE_JSON", 4096)


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("TUNEBENCH_CACHE_DIR", str(d))
    return d / "prepared"


@pytest.fixture(scope="module")
def tok(tiny_model):
    t = load_tokenizer(str(tiny_model))
    if t.pad_token is None:
        t.pad_token = t.eos_token
    return t


def big_chat(path, n, bad=()):
    """n chat rows; lines in `bad` (1-based) broken in turn: invalid JSON, no assistant turn, not an object."""
    breakers = ['{"messages": [', json.dumps({"messages": [{"role": U, "content": "q"}]}), "[1, 2]"]
    lines = []
    for i in range(1, n + 1):
        lines.append(breakers[bad.index(i) % 3] if i in bad else json.dumps(chat(f"question {i} " + "word " * (i % 7),
                                                                                 f"answer {i}")))
    path.write_text("\n".join(lines) + "\n")
    return path


# --- streaming -------------------------------------------------------------------------------------------------

def test_streamed_rows_are_the_rows_the_reader_gives(tmp_path, sharded):
    """Every shard of every format, read one row at a time, gives exactly load()'s rows and locations."""
    import datasets

    big = big_chat(tmp_path / "big.jsonl", 600, bad=(5, 250, 599))
    raw = big.read_bytes().replace(b'"answer 7"', b'"caf\xe9"')
    (tmp_path / "crlf.jsonl").write_bytes(b"\xef\xbb\xbf" + raw.replace(b"\n", b"\r\n") + b"\n\n")
    (tmp_path / "lines.json").write_bytes(raw)
    (tmp_path / "array.json").write_text(json.dumps([CHAT, 3, CHAT] * 200))
    (tmp_path / "t.csv").write_text("prompt,completion\n" + "a,b\n" * 300 + "x,y,z\n\"multi\nline\",c\n")
    (tmp_path / "t.tsv").write_text("text\tlabel\n" + "good\t1\n" * 300)
    (tmp_path / "t.txt").write_text("a line of text\n\n" * 400)
    ds = datasets.Dataset.from_list([{"text": f"row {i}"} for i in range(700)])
    ds.to_parquet(str(tmp_path / "t.parquet"))
    ds.save_to_disk(str(tmp_path / "saved"), max_shard_size="4KB")
    for name in ("big.jsonl", "crlf.jsonl", "lines.json", "array.json", "t.csv", "t.tsv", "t.txt", "t.parquet", "saved"):
        spec = str(tmp_path / name)
        shards = stream.plan(spec, procs=2)
        got = [(r.location, r.data, r.error) for s in shards for r in stream.rows(s)]
        want = [(r.location, r.data, r.error) for r in load(spec)]
        assert got == want, name
        if name.endswith(("jsonl", ".txt")):
            assert len(shards) >= 2 and sum(s.rows_hint for s in shards) >= len(want), name
        if name == "array.json":
            assert shards[0].kind == "json_array"
    assert stream.plan(str(tmp_path / "big.jsonl"), procs=2)[1].first_line > 1


def test_the_streaming_check_reaches_prepares_verdict(tmp_path, sharded):
    """check() (streamed, two processes, many shards) counts and names what prepare() (in memory) does."""
    pc = [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(300)]
    odd = {"prompt": [{"role": U, "content": "e"}], "completion": [{"role": A, "content": "f"}]}
    mixed = write_jsonl(tmp_path / "mixed.jsonl", pc[:100] + [odd] + pc[100:] + ["{oops", odd, {"prompt": "x"}])
    big = big_chat(tmp_path / "big.jsonl", 900, bad=(3, 400, 401, 777, 899))
    labels = tmp_path / "cls.jsonl"
    write_jsonl(labels, [{"text": f"t{i}", "label": ["pos", "neg", "meh"][i % 3]} for i in range(300)])
    cases = [cfg_for(mixed), cfg_for(big), cfg_for(big, eval_fraction=0.1),
             cfg_for(labels, "classification").replace(classification={"labels": ["pos", "neg"]})]
    for cfg in cases:
        with pytest.raises(InvalidRows) as want:
            prepare(cfg)
        with pytest.raises(InvalidRows) as got:
            check(cfg)
        w, g = want.value, got.value
        assert g.counts == w.counts and g.total == w.total, cfg.data.train
        for kind in w.counts:
            assert [p.location for p in g.problems if p.kind == kind] == \
                   [p.location for p in w.problems if p.kind == kind][:200], kind
        assert str(g) == str(w)
        _, _, info = prepare(cfg.replace(data={"skip_invalid": True}))
        got_info = check(cfg.replace(data={"skip_invalid": True})).info
        for key in ("format", "source_rows", "train_rows", "eval_rows", "dropped", "labels"):
            assert got_info.get(key) == info.get(key), key


def test_invalid_rows_in_a_large_file_are_named_by_line(tmp_path, sharded, tok, own_cache):
    """12,000 rows in about 60 shards: every bad line counted, the first of each reason named by its line."""
    bad = tuple(range(7, 12_000, 997))
    f = big_chat(tmp_path / "large.jsonl", 12_000, bad=bad)
    assert len(stream.plan(str(f), procs=2)) > 40
    kinds = {"invalid JSON": bad[0::3], "no assistant turn": bad[1::3], "not an object": bad[2::3]}
    for run in (lambda c: check(c), lambda c: prepare_sft(c, tok)):
        with pytest.raises(InvalidRows) as e:
            run(cfg_for(f, max_length=64))
        assert e.value.total == 12_000 and e.value.counts == {k: len(v) for k, v in kinds.items()}
        for kind, lines in kinds.items():
            assert [p.location for p in e.value.problems if p.kind == kind] == [f"{f}:{n}" for n in lines]
        text = str(e.value)
        assert f"{len(bad)} invalid row(s) of 12000" in text and f"{f}:{bad[0]}: " in text
    prep = prepare_sft(cfg_for(f, max_length=64, skip_invalid=True), tok)
    assert prep.info["train_rows"] == 12_000 - len(bad) and prep.info["dropped"]["count"] == len(bad)
    assert prep.info["dropped"]["first"][0]["location"] == f"{f}:{bad[0]}"


def test_preflight_verdict_is_remembered(tmp_path, own_cache, sharded):
    f = big_chat(tmp_path / "d.jsonl", 500, bad=(10,))
    with pytest.raises(InvalidRows) as first:
        cached_check(cfg_for(f))
    with pytest.raises(InvalidRows) as again:
        cached_check(cfg_for(f))
    assert str(again.value) == str(first.value)
    info = cached_check(cfg_for(f, skip_invalid=True))
    assert info["train_rows"] == 499 and info.get("checked_from_cache")
    f.write_text(f.read_text().replace('{"messages": [\n', json.dumps(CHAT) + "\n"))
    assert cached_check(cfg_for(f))["train_rows"] == 500  # the file changed: checked again


# --- sft rows as TRL builds them -------------------------------------------------------------------------------

def trl_rows(tok, model_dir, rows, max_length, **kw):
    """What TRL's SFTTrainer itself makes of these rows (its own preparation)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(output_dir=str(model_dir.parent / "trl-out"), max_length=max_length, report_to="none",
                     use_cpu=True, **kw)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), args=args,
                         train_dataset=Dataset.from_list(rows), processing_class=tok)
    return [(r["input_ids"], r["labels"]) for r in trainer.train_dataset]


@pytest.mark.parametrize("kind,loss_on,trl_kw", [
    ("messages", "completion", {"assistant_only_loss": True}),
    ("messages", "all", {"assistant_only_loss": False, "completion_only_loss": False}),
    ("prompt_completion", "completion", {"completion_only_loss": True}),
    ("conversational_pc", "completion", {"completion_only_loss": True}),
    ("text", "completion", {}),
])
def test_prepared_rows_are_the_rows_trl_builds(tmp_path, tok, tiny_model, own_cache, sharded, kind, loss_on, trl_kw):
    """Rows (some longer than max_length) through prepare_sft under data.truncation right: the very input_ids
    and labels TRL's own preparation gives, in the same order, the same rows dropped."""
    import random

    rng = random.Random(0)
    words = "the quick brown fox jumps over a lazy dog and learns to fine tune".split()

    def s(n):
        return " ".join(rng.choice(words) for _ in range(n))

    rows = []
    for _ in range(120):
        q, a = s(rng.randint(1, 40)), s(rng.randint(1, 40))
        rows.append({"messages": [{"role": U, "content": q}, {"role": A, "content": a}, {"role": U, "content": s(3)},
                                  {"role": A, "content": s(rng.randint(1, 9))}]} if kind == "messages" else
                    {"prompt": q, "completion": " " + a} if kind == "prompt_completion" else
                    {"prompt": [{"role": U, "content": q}], "completion": [{"role": A, "content": a}]}
                    if kind == "conversational_pc" else {"text": q + " " + a})
    f = write_jsonl(tmp_path / "d.jsonl", rows)
    prep = prepare_sft(cfg_for(f, max_length=48, truncation="right", loss_on=loss_on, cache=False), tok)
    from engine.training.methods.common import from_files

    ours = [(r["input_ids"], r["labels"]) for r in from_files(prep.train_files, prep.train_index)]
    assert len(prep.train_files) > 1 and prep.info["truncation"]["rows_cut"] > 0
    assert ours == trl_rows(tok, tiny_model, rows, 48, **trl_kw)


# --- the cache -------------------------------------------------------------------------------------------------

def test_the_cache_is_reused_and_invalidated(tmp_path, tok, tiny_model, own_cache, sharded):
    from engine.training.methods.common import from_files

    f = big_chat(tmp_path / "d.jsonl", 400)

    def rows(prep):
        return [r["input_ids"] for r in from_files(prep.train_files, prep.train_index)]

    first = prepare_sft(cfg_for(f, max_length=64), tok)
    again = prepare_sft(cfg_for(f, max_length=64), tok)
    assert first.info["cache"] == {"train": False} and again.info["cache"] == {"train": True}
    assert rows(again) == rows(first) and again.info["truncation"] == first.info["truncation"]
    assert prepare_sft(cfg_for(f, max_length=32), tok).info["cache"] == {"train": False}  # max_length is in the key
    other = load_tokenizer(str(tiny_model))
    other.chat_template = other.chat_template.replace("'<|' + message['role'] + '|>\n'", "'[' + message['role'] + ']'")
    changed = prepare_sft(cfg_for(f, max_length=64), other)
    assert changed.info["cache"] == {"train": False} and rows(changed) != rows(first)  # so is the tokenizer
    f.write_text(f.read_text() + json.dumps(chat("one more", "row")) + "\n")
    grown = prepare_sft(cfg_for(f, max_length=64), tok)
    assert grown.info["cache"] == {"train": False} and grown.info["train_rows"] == 401  # and the file
    # A damaged entry (an Arrow file cut short, as a full disk or a kill leaves it) is rebuilt, not read.
    entry = next(p for p in own_cache.iterdir() if (p / "meta.json").exists()
                 and json.loads((p / "meta.json").read_text()).get("files") and
                 json.loads((p / "meta.json").read_text())["source_rows"] == 401)
    arrow = next(entry.glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])
    rebuilt = prepare_sft(cfg_for(f, max_length=64), tok)
    assert rebuilt.info["cache"] == {"train": False} and rows(rebuilt) == rows(grown)
    assert prepare_sft(cfg_for(f, max_length=64), tok).info["cache"] == {"train": True}
    (entry / "meta.json").write_text("{not json")
    assert prepare_sft(cfg_for(f, max_length=64), tok).info["cache"] == {"train": False}


def test_the_cache_keeps_to_its_size_by_evicting_the_least_recently_used(tmp_path, tok, own_cache, monkeypatch):
    files = [big_chat(tmp_path / f"d{i}.jsonl", 200 + i) for i in range(3)]
    for f in files:
        prepare_sft(cfg_for(f, max_length=64), tok)
    entries = {json.loads((p / "meta.json").read_text())["spec"]: p for p in own_cache.iterdir()
               if (p / "meta.json").exists() and "spec" in json.loads((p / "meta.json").read_text())}
    assert len(entries) == 3
    os.utime(entries[str(files[0])] / "meta.json", (1, 1))  # d0 used long ago, d1 and d2 lately
    one = sum(x.stat().st_size for x in entries[str(files[2])].iterdir())
    monkeypatch.setenv("TUNEBENCH_DATA_CACHE_GB", str(2.2 * one / 2**30))
    prepare_sft(cfg_for(files[1], max_length=32), tok)  # a new entry: the cache is over its limit now
    left = {json.loads((p / "meta.json").read_text()).get("spec") for p in own_cache.iterdir() if p.is_dir()}
    assert str(files[0]) not in left and str(files[2]) in left and str(files[1]) in left


def test_an_uncached_build_leaves_nothing_behind(tmp_path, tok, own_cache):
    f = big_chat(tmp_path / "d.jsonl", 50)
    prep = prepare_sft(cfg_for(f, max_length=64, cache=False), tok)
    assert prep.info["cache"] == {"train": False} and all(os.path.exists(p) for p in prep.train_files)
    assert not [p for p in own_cache.iterdir() if not p.name.startswith(".tmp-")]  # not published
    assert cache.evict() == []  # this process is alive: its staging directory stays while it reads it


# --- truncation ------------------------------------------------------------------------------------------------

def test_split_lengths_and_truncate():
    assert split_lengths(2000, 100, 1024, 16) == (924, 100)  # a short answer stays whole, the prompt is cut
    assert split_lengths(100, 2000, 1024, 16) == (100, 924)  # a short prompt stays whole
    assert split_lengths(1500, 1500, 1024, 16) == (512, 512)  # both long: in proportion
    assert split_lengths(3000, 600, 512, 400) == (112, 400)  # the answer keeps min_completion_tokens
    ids = list(range(12))  # 8 prompt tokens (the first a BOS), 4 answer tokens
    labels = [IGNORE] * 8 + ids[8:]
    cut = truncate(ids, labels, 9, "prompt_left", 1, bos=0)
    assert cut.verdict == "cut" and cut.tokens_cut == 3
    assert cut.input_ids == [0, 4, 5, 6, 7, 8, 9, 10, 11] and cut.labels == [IGNORE] * 5 + [8, 9, 10, 11]
    assert truncate(ids, labels, 9, "right").input_ids == ids[:9]  # TRL's keep_start
    assert truncate(ids, labels, 8, "right").verdict == "dropped"  # nothing left to train: TRL drops it too
    assert truncate(ids, labels, 8, "refuse").verdict == "refused"
    assert truncate(ids, labels, 11, "drop").verdict == "dropped" and truncate(ids, labels, 12, "drop").verdict == "kept"


def test_truncation_policies_in_the_prepared_data(tmp_path, tok, own_cache):
    long_q = chat("word " * 300, "the answer")
    f = write_jsonl(tmp_path / "d.jsonl", [chat("hi", "ok"), long_q, chat("short", "word " * 200)])
    got = {}
    for policy in ("prompt_left", "right", "drop"):
        prep = prepare_sft(cfg_for(f, max_length=64, truncation=policy), tok)
        got[policy] = (prep.info["train_rows"], prep.info["truncation"])
    assert got["prompt_left"][0] == 3 and got["prompt_left"][1]["rows_cut"] == 2
    assert got["right"][0] == 2 and got["right"][1]["rows_dropped"] == 1 and got["right"][1]["rows_cut"] == 1
    assert got["drop"][0] == 1 and got["drop"][1]["rows_dropped"] == 2
    assert all(t["tokens_cut"] > 0 for _, t in got.values())
    with pytest.raises(InvalidRows) as e:
        prepare_sft(cfg_for(f, max_length=64, truncation="refuse"), tok)
    assert e.value.counts == {"too long": 1} and e.value.problems[0].location == f"{f}:2"
    from engine.training.methods.common import from_files

    prep = prepare_sft(cfg_for(f, max_length=64), tok)
    second = list(from_files(prep.train_files))[1]
    answer = tok.decode([t for t, v in zip(second["input_ids"], second["labels"]) if v != IGNORE])
    assert len(second["input_ids"]) == 64 and "the answer" in answer  # the prompt gave way, the answer trains


def test_dpo_demo_trains_every_row_at_max_length_128(tok):
    """LLaMA-Factory's dpo_en_demo at 128 tokens: refuse leaves most rows invalid; prompt_left trains all 300."""
    f = shared_file("llamafactory/dpo_en_demo.json")
    with pytest.raises(InvalidRows) as e:
        prepare(cfg_for(f, "dpo", max_length=128, truncation="refuse"), tok)
    assert e.value.counts["too long"] > 150
    train, _, info = prepare(cfg_for(f, "dpo", max_length=128), tok)
    assert len(train) == 300 and "dropped" not in info and info["truncation"]["rows_cut"] > 150
    from engine.data.tokens import Measurer

    m = Measurer(tok, "dpo", 128, truncation="right")
    assert all(m.measure(row)["trained"] > 0 for row in train)  # TRL's cut at the right leaves answers to learn


def test_inspect_validates_every_row_and_measures_a_sample(tmp_path, tok, sharded):
    from engine.data import inspect as insp

    bad = tuple(range(11, 3000, 500))
    f = big_chat(tmp_path / "d.jsonl", 3000, bad=bad)
    rep = insp.report(str(f), tokenizer=tok, sample=300, max_length=32)
    assert rep["rows"] == 3000 and rep["invalid_count"] == len(bad) and rep["sampled_rows"] == 300
    assert [p["location"] for p in rep["invalid"]][:1] == [f"{f}:{bad[0]}"]
    assert sum(rep["token_lengths"]["histogram"]["counts"]) == 300
    t = rep["truncation"]
    assert t["policy"] == "prompt_left" and t["measured_rows"] == 300 and t["rows_cut"] > 0 and t["tokens_cut"] > 0
    again = insp.report(str(f), tokenizer=tok, sample=300, max_length=32)
    assert again["token_lengths"] == rep["token_lengths"]  # a seeded sample: the same rows each time
