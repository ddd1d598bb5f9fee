"""Formats: detection, column mapping, and the row shapes each method's trainer reads (TRL 1.16)."""
from __future__ import annotations

import json

import pytest

from engine.data.errors import DataError
from engine.data.prepare import InvalidRows, prepare

from .test_data_load import cfg_for, write_jsonl

U, A = "user", "assistant"


def conv(*turns):
    return [{"role": r, "content": c} for r, c in turns]


def run(tmp_path, rows, method="sft", **data):
    f = write_jsonl(tmp_path / "d.jsonl", rows)
    return prepare(cfg_for(f, method, **data))


def test_messages_with_system_tool_calls_and_content_parts(tmp_path):
    call = {"type": "function", "function": {"name": "add", "arguments": {"a": 1, "b": 2}}}
    msgs = [{"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "1+2"}, {"type": "text", "text": "?"}]},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "content": "3", "tool_call_id": "c1"},
            {"role": "assistant", "content": "3"}]
    train, _, info = run(tmp_path, [{"messages": msgs}])
    assert info["format"] == "messages"
    out = train[0]["messages"]
    assert out[1]["content"] == "1+2?" and out[2]["tool_calls"] == [call] and out[3]["role"] == "tool"


def test_image_parts_are_refused_by_name(tmp_path):
    msgs = [{"role": "user", "content": [{"type": "image", "url": "x.png"}]}, {"role": "assistant", "content": "a cat"}]
    with pytest.raises(InvalidRows, match="'image' content part"):
        run(tmp_path, [{"messages": msgs}])


def test_sharegpt_roles_and_function_calls(tmp_path):
    row = {"conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "weather?"},
                             {"from": "function_call", "value": json.dumps({"name": "w", "arguments": {"c": "Oslo"}})},
                             {"from": "observation", "value": "rain"}, {"from": "gpt", "value": "It rains."}]}
    train, _, info = run(tmp_path, [row])
    assert info["format"] == "sharegpt"
    roles = [m["role"] for m in train[0]["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
    assert train[0]["messages"][2]["tool_calls"][0]["function"]["name"] == "w"
    bad = {"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": "not json"}]}
    with pytest.raises(InvalidRows, match="function_call value must be JSON"):
        run(tmp_path, [bad])


def test_alpaca_with_system_and_history(tmp_path):
    row = {"instruction": "translate", "input": "hei", "output": "hi", "system": "sys", "history": [["a", "b"]]}
    train, _, _ = run(tmp_path, [row])
    assert train[0]["messages"] == conv(("system", "sys"), (U, "a"), (A, "b"), (U, "translate\n\nhei"), (A, "hi"))


def test_prompt_completion_including_legacy_openai_and_conversational(tmp_path):
    train, _, info = run(tmp_path, [{"prompt": "Q: 2+2\nA:", "completion": " 4"}])
    assert info["format"] == "prompt_completion" and train == [{"prompt": "Q: 2+2\nA:", "completion": " 4"}]
    train, _, _ = run(tmp_path, [{"prompt": conv((U, "2+2")), "completion": conv((A, "4"))}])
    assert train == [{"prompt": conv((U, "2+2")), "completion": conv((A, "4"))}]


def test_preference_strings_messages_and_implicit_prompt(tmp_path):
    train, _, info = run(tmp_path, [{"prompt": "p", "chosen": "good", "rejected": "bad"}], "dpo")
    assert info["format"] == "preference" and train == [{"prompt": "p", "chosen": "good", "rejected": "bad"}]
    rows = [{"chosen": conv((U, "q"), (A, "good")), "rejected": conv((U, "q"), (A, "bad"))}]
    train, _, _ = run(tmp_path, rows, "dpo")
    assert train == [{"prompt": conv((U, "q")), "chosen": conv((A, "good")), "rejected": conv((A, "bad"))}]
    reward, _, _ = run(tmp_path, [{"chosen": "a good answer", "rejected": "a bad answer"}], "reward")
    assert reward == [{"chosen": "a good answer", "rejected": "a bad answer"}]  # implicit prompt: RewardTrainer's
    with pytest.raises(InvalidRows, match="chosen equals rejected"):
        run(tmp_path, [{"prompt": "p", "chosen": "same", "rejected": "same"}], "dpo")


def test_kto_rows_and_labels(tmp_path):
    train, _, info = run(tmp_path, [{"prompt": "p", "completion": "c", "label": True}], "kto")
    assert info["format"] == "kto" and train == [{"prompt": "p", "completion": "c", "label": True}]
    train, _, _ = run(tmp_path, [{"messages": conv((U, "q"), (A, "bad")), "label": False}], "kto")
    assert train == [{"prompt": conv((U, "q")), "completion": conv((A, "bad")), "label": False}]
    with pytest.raises(InvalidRows, match="'label' should be true or false"):
        run(tmp_path, [{"prompt": "p", "completion": "c", "label": True},
                       {"prompt": "p", "completion": "c", "label": "maybe"}], "kto", format="kto")


def test_prompt_rows_for_grpo_keep_other_columns(tmp_path):
    train, _, info = run(tmp_path, [{"prompt": "2+2?", "solution": "4"}], "grpo")
    assert info["format"] == "prompt" and train == [{"prompt": "2+2?", "solution": "4"}]
    chat, _, _ = run(tmp_path, [{"messages": conv((U, "2+2?"), (A, "4")), "id": 7}], "rloo")
    assert chat == [{"id": 7, "prompt": conv((U, "2+2?")), "reference": "4"}]


def test_classification_named_labels_pairs_and_label_outside_the_set(tmp_path):
    tr = write_jsonl(tmp_path / "tr.jsonl", [{"premise": "a", "hypothesis": "b", "label": "entail"},
                                             {"premise": "c", "hypothesis": "d", "label": "contradict"}])
    ev = write_jsonl(tmp_path / "ev.jsonl", [{"premise": "e", "hypothesis": "f", "label": "neutral"}])
    with pytest.raises(InvalidRows) as e:
        prepare(cfg_for(tr, "classification", eval=str(ev)))
    assert e.value.problems[0].kind == "label not in label set" and e.value.problems[0].location == f"{ev}:1"
    train, evals, info = prepare(cfg_for(tr, "classification", eval=str(ev), skip_invalid=True))
    assert info["labels"] == ["contradict", "entail"] and evals == []
    assert train[0] == {"text": "a", "text_pair": "b", "label": 1}


def test_column_mapping(tmp_path):
    rows = [{"ask": "why?", "reply": "because"}]
    with pytest.raises(DataError, match="data.columns"):
        run(tmp_path, rows)
    train, _, info = run(tmp_path, rows, columns="instruction=ask,output=reply")
    assert info["format"] == "alpaca" and train[0]["messages"] == conv((U, "why?"), (A, "because"))
    cls, _, _ = run(tmp_path, [{"body": "fine", "stars": 5}], "classification", columns=["text=body", "label=stars"])
    assert cls == [{"text": "fine", "label": 5}]


def test_a_format_that_does_not_fit_the_method_is_refused_with_the_reason(tmp_path):
    with pytest.raises(DataError, match="text data does not fit method dpo: dpo learns from pairs"):
        run(tmp_path, [{"text": "just text"}], "dpo")
    with pytest.raises(DataError, match="Use method grpo or rloo"):
        run(tmp_path, [{"prompt": "only a prompt"}], "sft")


def test_eval_overlap_warning(tmp_path):
    tr = write_jsonl(tmp_path / "tr.jsonl", [{"text": f"row {i}"} for i in range(5)])
    ev = write_jsonl(tmp_path / "ev.jsonl", [{"text": "row 1"}, {"text": "new"}])
    _, evals, info = prepare(cfg_for(tr, eval=str(ev)))
    assert len(evals) == 2 and any("1 of 2 eval rows also appear in train" in w for w in info["warnings"])


def test_other_real_world_shapes(tmp_path):
    """HH-RLHF strings, UltraFeedback (prompt column + full conversations), Dolly, GSM8K-style Q&A for grpo."""
    hh = {"chosen": "\n\nHuman: hi there\n\nAssistant: hello, how can I help?",
          "rejected": "\n\nHuman: hi there\n\nAssistant: go away"}
    train, _, _ = run(tmp_path, [hh], "dpo")
    assert train == [{"prompt": conv((U, "hi there")), "chosen": conv((A, "hello, how can I help?")),
                      "rejected": conv((A, "go away"))}]
    uf = {"prompt": "2+2?", "chosen": conv((U, "2+2?"), (A, "4")), "rejected": conv((U, "2+2?"), (A, "5")),
          "score_chosen": 9.0}
    train, _, _ = run(tmp_path, [uf], "dpo")
    assert train == [{"prompt": conv((U, "2+2?")), "chosen": conv((A, "4")), "rejected": conv((A, "5"))}]
    dolly = {"instruction": "Summarise", "context": "A long text.", "response": "Short.", "category": "summarization"}
    train, _, info = run(tmp_path, [dolly])
    assert info["format"] == "alpaca" and train[0]["messages"] == conv((U, "Summarise\n\nA long text."), (A, "Short."))
    gsm = {"question": "What is 6*7?", "answer": "#### 42"}
    train, _, info = run(tmp_path, [gsm], "grpo")
    assert info["format"] == "prompt_completion"
    assert train == [{"answer": "#### 42", "prompt": "What is 6*7?", "reference": "#### 42"}]
    sft, _, _ = run(tmp_path, [gsm])
    assert sft == [{"prompt": "What is 6*7?", "completion": "#### 42"}]


def test_rows_of_a_different_shape_are_named(tmp_path):
    """One Arrow table cannot hold a string prompt among message-list prompts: the odd row is invalid."""
    rows = [{"prompt": "a", "completion": "b"}, {"prompt": "c", "completion": "d"},
            {"prompt": conv((U, "e")), "completion": conv((A, "f"))}]
    with pytest.raises(InvalidRows) as e:
        run(tmp_path, rows)
    p = e.value.problems[0]
    assert p.kind == "inconsistent shape" and p.location.endswith("d.jsonl:3") and "prompt as messages" in p.detail
