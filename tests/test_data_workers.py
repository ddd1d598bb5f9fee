"""How the data pass starts its workers: spawned light (no torch) from a parent holding the ML stack, forked from
a light one, the same rows and problems either way, and a worker that dies or cannot read its job fails the pass
by name instead of leaving it waiting."""
from __future__ import annotations

import os

import pyarrow as pa
import pytest

from engine.data import scan
from engine.data.errors import DataError
from engine.data.pipeline import prepare_sft
from engine.data.scan import Job, one_pass

from .data_probe import KillSink, ProbeSink, Unreadable
from .test_data_prepare import big_chat, cfg_for, own_cache, sharded, tok  # noqa: F401 - fixtures

BAD = (3, 400, 401, 777)


def test_the_start_method_follows_what_the_parent_has_imported(monkeypatch):
    import torch  # noqa: F401 - this process holds the ML stack, as the engine does

    assert scan.start_method(2, 5) == "spawn"
    assert scan.start_method(1, 5) is None and scan.start_method(4, 1) is None  # no workers at all
    monkeypatch.setattr(scan, "HEAVY", ("a_module_nobody_imported",))  # a light parent: the CLI's check
    assert scan.start_method(2, 5) == "fork"
    monkeypatch.setattr(scan, "START", "spawn")
    assert scan.start_method(2, 5) == "spawn"


def test_spawned_workers_hold_no_ml_stack_and_count_what_forked_ones_do(tmp_path, sharded, monkeypatch):
    """The parent has torch; its workers do not, nor the parent's main module. Rows, shapes and problems are the
    ones forked workers report."""
    import torch  # noqa: F401

    f = big_chat(tmp_path / "d.jsonl", 900, bad=BAD)
    got = {}
    for start in ("spawn", "fork"):
        monkeypatch.setattr(scan, "START", start)
        got[start] = one_pass("train", str(f), {}, "sft", 2, sink=ProbeSink)
    spawned, forked = got["spawn"], got["fork"]
    assert len(spawned.parts) > 2
    for part in spawned.parts:
        assert part["pid"] != os.getpid() and part["heavy"] == [] and part["main_file"] is None
    assert all(part["heavy"] for part in forked.parts)  # forked: the parent's torch is there (the RSS it counts)
    assert spawned.source_rows == forked.source_rows == 900 and spawned.rows == forked.rows == 900 - len(BAD)
    assert spawned.log.as_json() == forked.log.as_json() and spawned.shapes == forked.shapes
    assert [p["first"] for p in spawned.parts] == [p["first"] for p in forked.parts]


def test_the_prepared_data_is_the_same_from_spawned_and_forked_workers(tmp_path, tok, sharded, own_cache, monkeypatch):
    """Tokens, labels, counts and the named bad rows: a pickled tokenizer in a fresh process encodes as the
    engine's own does (the chat template and every special token travel with it)."""
    f = big_chat(tmp_path / "d.jsonl", 900, bad=BAD)
    out = {}
    for start in ("spawn", "fork"):
        monkeypatch.setattr(scan, "START", start)
        prep = prepare_sft(cfg_for(f, max_length=24, skip_invalid=True, cache=False, truncation="prompt_left"), tok)
        tables = [pa.ipc.open_stream(pa.memory_map(name)).read_all() for name in prep.train_files]
        info = {k: v for k, v in prep.info.items() if k != "prepare_s"}
        out[start] = (len(prep.train_files), [t.to_pydict() for t in tables], info)
    assert out["spawn"] == out["fork"]
    files, tables, info = out["spawn"]
    assert files > 2 and info["train_rows"] == 900 - len(BAD) and info["truncation"]["rows_cut"] > 0
    assert [d["location"] for d in info["dropped"]["first"]] == [f"{f}:{n}" for n in BAD]


@pytest.mark.parametrize("start", ["spawn", "fork"])
def test_a_worker_that_dies_fails_the_pass_by_name(tmp_path, sharded, monkeypatch, start):
    monkeypatch.setattr(scan, "START", start)
    f = big_chat(tmp_path / "d.jsonl", 300)
    with pytest.raises(DataError, match=r"a data worker of the train pass was killed \(SIGKILL.*data\.num_proc"):
        one_pass("train", str(f), {}, "sft", 2, sink=KillSink)


def test_a_spawned_worker_that_cannot_read_its_job_fails_the_pass(tmp_path, sharded, monkeypatch):
    monkeypatch.setattr(scan, "START", "spawn")
    f = big_chat(tmp_path / "d.jsonl", 300)
    shards = scan.stream.plan(str(f), procs=2)
    job = Job("train", shards, "messages", "sft", {}, extra={"tokenizer": Unreadable()})
    with pytest.raises(RuntimeError, match="a data worker could not read its job: ImportError: this job cannot"):
        scan.run(job, 2)
