"""Bad input, fuzzed: configs and data files end in a clear error naming the field or line, never a traceback."""
from __future__ import annotations

import json

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import config as C
from engine.config.files import name as key_name
from engine.data.errors import DataError
from engine.data.sources import read_rows
from engine.rundir.runs import list_runs
from tests.conftest import tunebench

KEYS = C.all_keys()
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-10**12, max_value=10**12),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
                    st.lists(st.text(max_size=5), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))
names = st.one_of(st.sampled_from([k.split(".")[-1] for k in KEYS]), st.text(min_size=1, max_size=12))


@st.composite
def configs(draw):
    cfg = {}
    for section in draw(st.lists(st.one_of(st.sampled_from(C.SECTIONS), st.text(min_size=1, max_size=10)), max_size=4)):
        cfg[section] = draw(st.one_of(st.dictionaries(names, scalars, max_size=5), scalars))
    if draw(st.booleans()):
        cfg["method"] = draw(scalars)
    return cfg


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_any_config_is_accepted_or_rejected_with_named_fields(cfg):
    problems: list = []
    merged = C.merge(C.defaults(), cfg, problems)
    try:
        C.load_config(None, [], base=merged)
    except C.ConfigError as e:
        problems += e.problems
    named = set(KEYS) | set(C.SECTIONS) | {key_name(k) for k in cfg}
    named |= {f"{s}.{key_name(k)}" for s, v in cfg.items() if s in C.SECTIONS and isinstance(v, dict) for k in v}
    for p in problems:
        assert p.path in named, p  # every problem names the field it is about
        assert str(p).startswith(p.path + ":"), p


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(KEYS), min_size=1, max_size=4), st.lists(scalars, min_size=4, max_size=4))
def test_any_override_is_typed_or_rejected(keys, values):
    overrides = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in zip(keys, values)]
    try:
        C.load_config(None, ["model.name_or_path=m", *overrides])
    except C.ConfigError as e:
        assert all(p.path and p.message and ":" in str(p) for p in e.problems)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400), st.sampled_from([".jsonl", ".json", ".csv", ".tsv", ".txt"]))
def test_garbage_data_files_raise_data_errors_naming_the_file(tmp_path, blob, suffix):
    p = tmp_path / f"data{suffix}"
    p.write_bytes(blob)
    try:
        read_rows(str(p))
    except DataError as e:
        assert str(p) in str(e)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(min_value=1, max_value=400))
def test_truncated_jsonl_names_the_torn_line(tmp_path, cut):
    rows = [json.dumps({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]})
            for i in range(10)]
    text = "\n".join(rows)
    p = tmp_path / "t.jsonl"
    p.write_text(text[: min(cut, len(text))])
    try:
        out = read_rows(str(p))
        assert all(isinstance(r.data, dict) for r in out)
    except DataError as e:
        assert f"{p}:" in str(e)


def test_mixed_encodings_and_huge_lines(tmp_path):
    p = tmp_path / "mixed.jsonl"
    good = json.dumps({"text": "fine"}).encode()
    p.write_bytes(good + b"\n" + '{"text": "caf\u00e9"}'.encode("latin-1") + b"\n")
    try:
        read_rows(str(p))
        raise AssertionError("latin-1 bytes inside a UTF-8 file must be reported")
    except DataError as e:
        assert f"{p}:2" in str(e) and "UTF-8" in str(e)
    huge = tmp_path / "huge.jsonl"
    huge.write_text(json.dumps({"text": "x" * 5_000_000}) + "\n")
    assert len(read_rows(str(huge))[0].data["text"]) == 5_000_000


def test_bad_configs_through_the_real_cli_leave_no_run(tmp_path, runs_dir):
    cases = {
        "list.yaml": "- a\n- b\n",
        "types.yaml": yaml.safe_dump({"model": {"name_or_path": 3, "trust_remote_code": "maybe"},
                                      "training": {"epochs": "lots", "max_steps": 1e30}}),
        "extreme.yaml": yaml.safe_dump({"model": {"name_or_path": "m"}, "data": {"train": "nope.jsonl",
                                        "max_length": -5}, "training": {"learning_rate": 1e9}}),
        "missing-data.yaml": yaml.safe_dump({"model": {"name_or_path": "m"}, "data": {"train": "nope.jsonl"}}),
    }
    for name, text in cases.items():
        p = tmp_path / name
        p.write_text(text)
        r = tunebench("train", p, runs_dir=runs_dir, timeout=60)
        assert r.returncode == 2, (name, r.stderr)
        assert "Traceback" not in r.stderr and r.stderr.strip(), (name, r.stderr)
    assert list_runs(runs_dir) == []
