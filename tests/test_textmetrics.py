"""eval.metrics: the scores on generated answers, checked against values worked out by hand, and the config rules."""
from __future__ import annotations

import pytest

from engine.config import parse
from engine.training.textmetrics import text_scores


def test_exact_match_ignores_surrounding_and_doubled_whitespace_but_not_case():
    s = text_scores([" Paris\n", "the  cat", "Rome"], ["Paris", "the cat", "rome"], ["exact_match"])
    assert s == {"exact_match": pytest.approx(2 / 3)}


def test_rouge_is_the_mean_f_measure_over_rows():
    # row 1: 3 of 3 predicted unigrams in a 4-word reference: P 1, R 3/4, F 6/7; bigrams 2 of 2 in 3: F 4/5.
    # row 2: nothing shared: 0. The means halve them. Stemming makes "cats" match "cat".
    s = text_scores(["the cat sat", "dogs"], ["the cat sat down", "birds"], ["rouge1", "rouge2", "rougeL"])
    assert s["rouge1"] == pytest.approx((6 / 7) / 2)
    assert s["rouge2"] == pytest.approx((4 / 5) / 2)
    assert s["rougeL"] == pytest.approx((6 / 7) / 2)
    assert text_scores(["cats"], ["cat"], ["rouge1"])["rouge1"] == pytest.approx(1.0)


def test_bleu_and_chrf_are_sacrebleus_corpus_scores():
    same = text_scores(["a quick brown fox jumps"], ["a quick brown fox jumps"], ["bleu", "chrf"])
    assert same == {"bleu": pytest.approx(100.0), "chrf": pytest.approx(100.0)}
    other = text_scores(["zzz"], ["a quick brown fox jumps"], ["bleu", "chrf"])
    assert other["bleu"] == pytest.approx(0.0) and other["chrf"] < 5


def test_no_rows_scores_none_and_a_mismatch_is_refused():
    assert text_scores([], [], ["exact_match", "bleu"]) == {"exact_match": None, "bleu": None}
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        text_scores(["a", "b"], ["a"], ["exact_match"])


def _problems(**eval_and_more):
    base = {"method": "sft", "model": {"name_or_path": "m"}, "data": {"train": "t.jsonl", "eval": "e.jsonl"}}
    for k, v in eval_and_more.items():
        base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) else v
    try:
        parse(base)
    except Exception as e:  # ConfigError carries the problems
        return [(p.path, p.message, p.fix) for p in e.problems]
    return []


def test_config_rules_name_the_field_and_the_fix():
    assert _problems(eval={"metrics": ["rouge1", "bleu"]}) == []
    assert _problems(eval={"metrics": "chrf"}) == []  # a single name is a list of one
    [(path, msg, fix)] = _problems(eval={"metrics": ["rogue1"]})
    assert path == "eval.metrics" and "'rogue1' is not one of" in msg and "rouge1" in fix
    [(path, msg, fix)] = _problems(method="dpo", eval={"metrics": ["rouge1"]})
    assert path == "eval.metrics" and "not dpo" in msg and "empty" in fix
    [(path, msg, fix)] = _problems(data={"eval": None}, eval={"metrics": ["exact_match"]})
    assert path == "eval.metrics" and "eval data" in msg and "data.eval" in fix
