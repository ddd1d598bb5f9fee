"""The preview: the first rows of a 1 GB JSONL without reading the file, and every file type on the real data."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.data.errors import DataError
from engine.data.preview import preview

from .conftest import ROOT, shared_file

GIB = 1 << 30


def read_bytes_so_far() -> int:
    """Bytes this process has read through read() calls (Linux /proc/self/io `rchar`)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.fixture(scope="module")
def big_jsonl(tmp_path_factory):
    """A 1 GiB JSONL: one 1 MiB block of chat rows repeated, in RAM (/dev/shm) where there is one (~1 s to
    write there, ~10 s on a busy disk); removed afterwards."""
    import os
    import tempfile

    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() and os.access(shm, os.W_OK) else tmp_path_factory.mktemp("big")
    path = base / "big.jsonl"
    line = json.dumps({"messages": [{"role": "user", "content": "word " * 40},
                                    {"role": "assistant", "content": "answer " * 60}]}) + "\n"
    block = (line * ((1 << 20) // len(line) + 1)).encode()[: 1 << 20]
    block = block[: block.rindex(b"\n") + 1]
    try:
        with open(path, "wb") as f:
            for _ in range(GIB // len(block) + 1):
                f.write(block)
        yield path, (GIB // len(block) + 1) * block.count(b"\n")
    finally:
        path.unlink(missing_ok=True)
        if base.parent == shm:
            base.rmdir()


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io to count bytes read")
def test_preview_of_a_1gb_jsonl_reads_only_its_head(big_jsonl):
    path, lines = big_jsonl
    before = read_bytes_so_far()
    p = preview(str(path), n=20)
    read = read_bytes_so_far() - before
    assert len(p["rows"]) == 20 and p["format"] == "messages" and p["size_bytes"] >= GIB
    assert p["rows"][0]["location"] == f"{path}:1"
    assert read < 4 << 20, f"the preview read {read} bytes of a 1 GiB file"
    assert abs(p["estimated_rows"] - lines) / lines < 0.02 and p["exact"] is False


def test_preview_in_a_process_without_the_ml_stack(tmp_path):
    """The pane's helper calls preview(); it must not pull in datasets/torch/transformers."""
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"text": "hello"}) + "\n")
    code = ("import sys, json; from engine.data.preview import preview; p = preview(sys.argv[1]); "
            "heavy = [m for m in ('torch', 'transformers', 'datasets', 'trl', 'pyarrow') if m in sys.modules]; "
            "print(json.dumps({'format': p['format'], 'heavy': heavy}))")
    out = subprocess.run([sys.executable, "-c", code, str(f)], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(out.stdout) == {"format": "text", "heavy": []}


@pytest.mark.parametrize("rel,fmt,columns", [
    ("llamafactory/alpaca_en_demo.json", "alpaca", ["input", "instruction", "output"]),
    ("llamafactory/dpo_en_demo.json", "preference", ["chosen", "conversations", "rejected"]),
    ("llamafactory/c4_demo.jsonl", "text", ["text"]),
    ("sst2/train.tsv", "classification", ["label", "sentence"]),
])
def test_preview_real_files(rel, fmt, columns):
    p = preview(str(shared_file(rel)), n=5)
    assert p["format"] == fmt and p["columns"] == columns and len(p["rows"]) == 5 and not p["invalid"]


def test_preview_shows_bad_rows_and_refuses_binary(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"text": "a"}\n{broken\n{"text": "c"}\n')
    p = preview(str(f))
    assert p["exact"] and p["estimated_rows"] == 3 and p["invalid"][0]["location"] == f"{f}:2"
    g = tmp_path / "g.jsonl"
    g.write_bytes(b"\x00\x01\x02" * 100)
    with pytest.raises(DataError, match="binary"):
        preview(str(g))


def test_preview_clips_long_values(tmp_path):
    f = tmp_path / "long.json"
    f.write_text(json.dumps([{"text": "x" * 10_000}, {"text": "y"}]))
    p = preview(str(f))
    assert len(p["rows"]) == 2 and p["rows"][0]["data"]["text"].endswith("[8000 more chars]")


def test_preview_json_object_of_arrays_and_column_wise(tmp_path):
    f = tmp_path / "obj.json"
    f.write_text(json.dumps({"train": [{"text": "a"}, {"text": "b"}]}, indent=2))
    g = tmp_path / "cols.json"
    g.write_text(json.dumps({"sentence": ["good", "bad"], "label": [1, 0]}))
    assert [r["data"] for r in preview(str(f))["rows"]] == [{"text": "a"}, {"text": "b"}]
    p = preview(str(g), method="classification")
    assert p["format"] == "classification" and p["rows"][1] == {"location": f"{g}[1]", "data": {"sentence": "bad", "label": 0}}
