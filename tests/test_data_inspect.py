"""Inspection with a real tokenizer and chat templates, `tunebench inspect`, and the train preflight on bad data."""
from __future__ import annotations

import json

import pytest

from engine.data import inspect as insp
from engine.data.prepare import InvalidRows, prepare
from engine.rundir.events import read_events
from engine.rundir.runs import list_runs

from .conftest import shared_file, tunebench, write_config
from .test_data_load import cfg_for, write_jsonl

TWO_TURNS = {"messages": [{"role": "user", "content": "first question"}, {"role": "assistant", "content": "first answer"},
                          {"role": "user", "content": "second question"}, {"role": "assistant", "content": "second answer"}]}
# The tiny model's template without its {% generation %} markers: a template TRL does not know how to patch.
NO_MARKERS = ("{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
              "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}")
# Markers around the content only: the end-of-turn token stays outside the trained span.
EOS_OUTSIDE = ("{% for message in messages %}{{ '<|' + message['role'] + '|>\n' }}{% if message['role'] == 'assistant' %}"
               "{% generation %}{{ message['content'] }}{% endgeneration %}{{ eos_token + '\n' }}{% else %}"
               "{{ message['content'] + eos_token + '\n' }}{% endif %}{% endfor %}"
               "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}")


@pytest.fixture(scope="module")
def tok(tiny_model):
    return insp.load_tokenizer(str(tiny_model))


def with_template(tok, template):
    import copy

    t = copy.deepcopy(tok)
    t.chat_template = template
    return t


def trained_text(rep) -> str:
    return "".join(s["text"] for s in rep["example"]["segments"] if s["trained"] and not s["truncated"])


def test_report_marks_the_assistant_turns_and_the_end_of_turn_token(tmp_path, tok):
    f = write_jsonl(tmp_path / "d.jsonl", [TWO_TURNS])
    rep = insp.report(str(f), tokenizer=tok, max_length=512)
    assert rep["template"]["mode"] == "markers" and rep["template"]["stop_token_trained"] is True
    assert trained_text(rep).replace(" ", "") == "firstanswer</s>secondanswer</s>"
    assert rep["ends_with_eot_fraction"] == 1.0 and 0 < rep["trained_token_fraction"] < 1
    assert rep["token_lengths"]["min"] == rep["token_lengths"]["max"] == len(tok.apply_chat_template(
        TWO_TURNS["messages"], tokenize=True, return_dict=True)["input_ids"])


def test_template_without_markers_trains_every_assistant_turn(tmp_path, tok):
    f = write_jsonl(tmp_path / "d.jsonl", [TWO_TURNS])
    rep = insp.report(str(f), tokenizer=with_template(tok, NO_MARKERS), max_length=512)
    assert rep["template"]["mode"] == "prefix" and rep["template"]["stop_token_trained"] is True
    assert trained_text(rep).replace(" ", "") == "firstanswer</s>secondanswer</s>"
    marked = insp.report(str(f), tokenizer=tok, max_length=512)  # the same tokens as the {% generation %} markers
    assert rep["trained_token_fraction"] == marked["trained_token_fraction"]


def test_end_of_turn_token_outside_the_trained_span_is_reported(tmp_path, tok):
    f = write_jsonl(tmp_path / "d.jsonl", [TWO_TURNS])
    rep = insp.report(str(f), tokenizer=with_template(tok, EOS_OUTSIDE), max_length=512)
    assert rep["template"]["stop_token_trained"] is False
    assert rep["ends_with_eot_fraction"] == 0.0
    assert any("learn to stop" in w for w in rep["warnings"])


def test_rows_whose_prompt_fills_max_length_are_invalid(tmp_path, tok):
    long_q = {"messages": [{"role": "user", "content": "word " * 300}, {"role": "assistant", "content": "ok"}]}
    short = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}
    f = write_jsonl(tmp_path / "d.jsonl", [short, long_q, {"text": "plain text is never cut away entirely"}])
    with pytest.raises(InvalidRows) as e:
        prepare(cfg_for(f, max_length=64, format="messages", truncation="refuse"), tok)
    kinds = {p.location: p.kind for p in e.value.problems}
    assert kinds[f"{f}:2"] == "too long" and kinds[f"{f}:3"] == "missing field"
    train, _, info = prepare(cfg_for(f, max_length=64, format="messages", skip_invalid=True, truncation="refuse"), tok)
    assert len(train) == 1 and info["dropped"]["by_reason"] == {"too long": 1, "missing field": 1}


def test_inspect_json_over_the_real_alpaca_file(tiny_model):
    r = tunebench("inspect", shared_file("llamafactory/alpaca_en_demo.json"), "--model", tiny_model,
                  "--max-length", "256", "--json", "--truncation", "refuse")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["format"] == "alpaca" and rep["rows"] == 999
    t = rep["token_lengths"]
    assert 0 < t["min"] <= t["median"] <= t["p95"] <= t["max"] and sum(t["histogram"]["counts"]) == rep["valid_rows"]
    assert 0 < rep["truncated_fraction"] < 1
    assert rep["invalid"] and all({"location", "reason"} <= set(p) for p in rep["invalid"])
    assert all(p["reason"].startswith("too long") and "alpaca_en_demo.json[" in p["location"] for p in rep["invalid"])
    assert rep["valid_rows"] + rep["invalid_count"] == 999


def test_inspect_text_report_without_a_model(tmp_path):
    f = write_jsonl(tmp_path / "d.jsonl", [TWO_TURNS, '{"messages": oops}', TWO_TURNS])
    r = tunebench("inspect", f)
    assert r.returncode == 0 and "format messages" in r.stdout and f"{f}:2: invalid JSON" in r.stdout
    assert "estimated: characters / 4" in r.stdout
    r = tunebench("inspect", f, "--json", "--strict")
    rep = json.loads(r.stdout)
    assert r.returncode == 1 and rep["invalid"][0]["location"] == f"{f}:2" and rep["token_lengths_estimated"]
    sst = tunebench("inspect", shared_file("sst2/train.tsv"), "--method", "classification", "--json")
    assert json.loads(sst.stdout)["label_counts"] == {"0": 2994, "1": 3741}


def test_inspect_without_a_method_reports_preference_data_and_the_methods_it_fits(tmp_path):
    """No --method: the detected format decides (it used to refuse preference data as not fitting sft);
    an explicit --method the data does not fit is still refused, naming the fix."""
    pair = {"prompt": "2+2?", "chosen": "4", "rejected": "5"}
    f = write_jsonl(tmp_path / "pairs.jsonl", [pair, pair, pair])
    r = tunebench("inspect", f, "--json")
    rep = json.loads(r.stdout)
    assert r.returncode == 0 and rep["format"] == "preference" and rep["method"] == "dpo"
    assert rep["fits_methods"] == ["dpo", "kto", "reward", "grpo", "rloo"] and rep["valid_rows"] == 3
    text = tunebench("inspect", f)
    assert text.returncode == 0 and "fits method(s) dpo, kto, reward, grpo, rloo" in text.stdout
    refused = tunebench("inspect", f, "--method", "sft")
    assert refused.returncode == 2 and "data.train_on_chosen" in refused.stderr


def test_inspect_shows_a_mixture_source_by_source(tmp_path):
    """Weighted sources (issue 18): each source's rows, the rows an epoch draws from it and its share."""
    a = write_jsonl(tmp_path / "a.jsonl", [TWO_TURNS] * 40)
    b = write_jsonl(tmp_path / "b.jsonl", [TWO_TURNS] * 200)
    rep = json.loads(tunebench("inspect", f"{a}:3", f"{b}:1", "--json").stdout)
    mix = rep["mixture"]
    assert [(s["rows"], s["drawn"], s["share"]) for s in mix["sources"]] == [(40, 180, 0.75), (200, 60, 0.25)]
    assert mix["epoch_rows"] == 240 and mix["formats"] == ["messages", "messages"]
    text = tunebench("inspect", f"{a}:3", f"{b}:1").stdout
    assert "mixture: 240 rows an epoch" in text and "180 drawn an epoch (75%)" in text


def test_train_refuses_invalid_data_before_creating_a_run(tmp_path, tiny_model, runs_dir):
    f = write_jsonl(tmp_path / "d.jsonl", [TWO_TURNS, '{"messages": [', {"messages": "x"}, TWO_TURNS])
    cfg = write_config(tmp_path / "c.yaml", tiny_model, f)
    r = tunebench("train", cfg, runs_dir=runs_dir)
    assert r.returncode == 2 and "2 invalid row(s) of 4" in r.stderr and f"{f}:2" in r.stderr
    assert "data.skip_invalid" in r.stderr and not list_runs(runs_dir)


def test_skip_invalid_run_records_the_dropped_rows(tmp_path, tiny_model, chat_jsonl, runs_dir):
    f = tmp_path / "d.jsonl"
    f.write_text(chat_jsonl.read_text() + '{"messages": [\n' + json.dumps({"messages": [{"role": "user", "content": "q"}]}) + "\n")
    cfg = write_config(tmp_path / "c.yaml", tiny_model, f, data={"skip_invalid": True, "train": str(f), "max_length": 64},
                       training={"max_steps": 2, "batch_size": 4})
    r = tunebench("train", cfg, runs_dir=runs_dir)
    assert r.returncode == 0, r.stdout + r.stderr
    run = list_runs(runs_dir)[0]
    data = [e for e in read_events(run.events_path, ["data"]) if "train_rows" in e][0]  # the report, after progress
    assert data["train_rows"] == 64 and data["dropped"]["count"] == 2
    assert data["dropped"]["by_reason"] == {"invalid JSON": 1, "no assistant turn": 1}
    assert data["dropped"]["first"][0]["location"] == f"{f}:65"
