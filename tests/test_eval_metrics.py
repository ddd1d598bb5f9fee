"""eval.metrics for sft: the prompt generation answers is training's own rendering, and real tiny runs write the
scores into their eval events (scheduled, final and while paused), bounded by eval.max_rows."""
from __future__ import annotations

import json

import pytest

from engine.rundir.events import read_events
from tests.conftest import tunebench, wait_for, write_config
from tests.methods_support import config, train

METRICS = ["exact_match", "rouge1", "bleu"]


@pytest.fixture(scope="module")
def tok(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def encoded(tok, row):
    from engine.data.encode import SFTEncoder

    return SFTEncoder(tok).encode(row)


def test_the_prompt_is_trainings_rendering_of_everything_before_the_final_answer(tok):
    from engine.training.methods.answers import split_row

    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say apple"},
            {"role": "assistant", "content": "apple apple"}, {"role": "user", "content": "and river?"},
            {"role": "assistant", "content": "river river"}]
    enc = encoded(tok, {"messages": msgs})
    prompt, ref = split_row(enc["input_ids"], enc["labels"])
    # the chat template's rendering of the conversation up to the last answer, with the assistant header
    assert prompt == tok.apply_chat_template(msgs[:-1], add_generation_prompt=True, tokenize=True,
                                             return_dict=True)["input_ids"]
    assert prompt == enc["input_ids"][:len(prompt)]  # and the very tokens training put before the answer
    assert tok.decode(ref, skip_special_tokens=True) == "river river"

    enc = encoded(tok, {"prompt": "Q: 2+2? A:", "completion": " 4"})
    prompt, ref = split_row(enc["input_ids"], enc["labels"])
    assert prompt == tok(text="Q: 2+2? A:")["input_ids"]
    assert tok.decode(ref, skip_special_tokens=True) == " 4" and ref[-1] == tok.eos_token_id


def test_rows_without_an_answer_are_skipped_and_the_reason_named(tok):
    from engine.training.methods.answers import reference_rows, split_row, why_no_rows

    text = encoded(tok, {"text": "just some text"})
    assert split_row(text["input_ids"], text["labels"]) is None  # every token trains: no prompt/answer boundary
    chat = encoded(tok, {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})
    rows = reference_rows([text, chat, text, chat, chat], max_rows=2)
    assert len(rows) == 2 and all(p and r for p, r in rows)  # the first two rows that have one
    assert "plain text" in why_no_rows("text", "completion")
    assert "data.loss_on" in why_no_rows("messages", "all")


def test_left_padding_ends_every_prompt_at_the_same_column():
    from engine.training.methods.answers import cut_at_stop, left_padded

    ids, mask = left_padded([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert cut_at_stop([4, 9, 2, 9], {2}) == [4, 9]


def check_eval_events(ev, max_rows: int, max_new_tokens: int):
    from engine.training.textmetrics import text_scores

    scored = [e for e in ev["eval"] if "rouge1" in e]
    for e in scored:
        assert 0 <= e["exact_match"] <= 1 and 0 <= e["rouge1"] <= 1 and 0 <= e["bleu"] <= 100, e
    for s in ev["eval_samples"]:
        assert s["rows"] == max_rows and s["max_new_tokens"] == max_new_tokens  # bounded by eval.max_rows
        assert len(s["samples"]) == min(3, max_rows)
        assert all(x["prompt"].endswith("<|assistant|>\n") and x["reference"] for x in s["samples"])
        if max_rows <= 3:  # every answered row is in the samples: the scores are exactly theirs
            again = text_scores([x["answer"] for x in s["samples"]], [x["reference"] for x in s["samples"]], METRICS)
            (same,) = [e for e in scored if e["step"] == s["step"]]
            assert again == s["scores"] == {k: same[k] for k in METRICS}
    return scored


def test_lora_run_scores_generated_answers_at_each_eval(tiny_model, chat_jsonl, runs_dir):
    cfg = config(tiny_model, chat_jsonl, data={"eval_fraction": 0.25},
                 eval={"metrics": METRICS, "max_rows": 3, "max_new_tokens": 6},
                 training={"max_steps": 4, "eval_steps": 2, "learning_rate": 3e-3})
    run, ev = train(runs_dir, cfg)
    scored = check_eval_events(ev, 3, 6)
    # step 0: the base model's answers (eval_on_start), the starting point the scores rise from
    assert [e["step"] for e in scored] == [0, 2, 4] and [s["step"] for s in ev["eval_samples"]] == [0, 2, 4]
    status = run.status()
    assert status["last_eval_metrics"]["step"] == 4 and set(METRICS) <= set(status["last_eval_metrics"])
    assert ev["summary"][0]["train_wall_s"] < ev["summary"][0]["wall_s"]  # eval (and its generation) excluded
    r = tunebench("status", run.id, runs_dir=runs_dir)
    assert "eval metrics" in r.stdout and "rouge1" in r.stdout and "(step 4)" in r.stdout, r.stdout


def test_full_finetune_text_rows_say_once_there_is_no_reference(tiny_model, runs_dir, tmp_path):
    data = tmp_path / "text.jsonl"
    data.write_text("".join(json.dumps({"text": f"the number {i} follows {i - 1}"}) + "\n" for i in range(40)))
    cfg = config(tiny_model, data, adapter={"kind": "none"}, data={"eval_fraction": 0.2},
                 eval={"metrics": ["rouge1"], "max_rows": 4}, training={"max_steps": 4, "eval_steps": 2})
    run, ev = train(runs_dir, cfg)
    told = [e["message"] for e in ev["log"] if e["message"].startswith("eval.metrics")]
    assert len(told) == 1 and "plain text" in told[0]  # once, not at every evaluation
    assert len(ev["eval"]) == 3 and not any("rouge1" in e for e in ev["eval"]) and "eval_samples" not in ev


def test_an_eval_asked_for_while_paused_scores_at_the_paused_step(tiny_model, chat_jsonl, runs_dir, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tiny_model, chat_jsonl, data={"eval_fraction": 0.25},
                       eval={"metrics": METRICS, "max_rows": 2, "max_new_tokens": 4},
                       training={"max_steps": 100000, "batch_size": 2})
    r = tunebench("train", cfg, "--detach", runs_dir=runs_dir)
    assert r.returncode == 0, r.stderr
    from engine.rundir.runs import resolve_run

    run = resolve_run(runs_dir, r.stdout.split()[-1])
    wait_for(lambda: run.status().get("step", 0) >= 2, what="2 steps")
    assert tunebench("pause", run.id, runs_dir=runs_dir).returncode == 0
    wait_for(lambda: run.status().get("state") == "paused", what="paused")
    step = run.status()["step"]
    assert tunebench("eval", run.id, runs_dir=runs_dir).returncode == 0
    ev = wait_for(lambda: [e for e in read_events(run.events_path, ("eval",)) if "rouge1" in e and e["step"]],
                  what="scored eval")  # step 0's is the start's (eval_on_start)
    assert ev[0]["step"] == step and run.status()["step"] == step and run.state() == "paused"
    samples = wait_for(lambda: [e for e in read_events(run.events_path, ("eval_samples",)) if e["step"]],
                       what="samples")
    assert samples[0]["step"] == step and samples[0]["rows"] == 2
    assert tunebench("stop", run.id, runs_dir=runs_dir).returncode == 0
    wait_for(lambda: run.status().get("state") == "stopped", what="stopped")
    by_kind = {"eval": read_events(run.events_path, ("eval",)), "eval_samples": read_events(run.events_path,
                                                                                              ("eval_samples",))}
    check_eval_events(by_kind, 2, 4)


def test_two_rank_ddp_shares_the_rows_and_gathers_every_answer(tiny_model, chat_jsonl, runs_dir, tmp_path):
    """Each rank answers its share (3 rows on 2 ranks: one rank pads its share), rank 0 writes every answer once."""
    cfg = write_config(tmp_path / "ddp.yaml", tiny_model, chat_jsonl, data={"eval_fraction": 0.25},
                       eval={"metrics": METRICS, "max_rows": 3, "max_new_tokens": 4},
                       training={"max_steps": 4, "eval_steps": 2, "batch_size": 2},
                       hardware={"num_processes": 2, "device": "cpu"})
    r = tunebench("train", cfg, runs_dir=runs_dir, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    from engine.rundir.runs import list_runs

    (run,) = list_runs(runs_dir)
    assert run.status()["state"] == "completed"
    by_kind = {k: read_events(run.events_path, (k,)) for k in ("eval", "eval_samples")}
    scored = check_eval_events(by_kind, 3, 4)
    assert [e["step"] for e in scored] == [0, 2, 4]  # one event per evaluation: rank 0 alone writes
