"""engine.training.metrics against scikit-learn: the one definition of the classification scores."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from engine.training.metrics import classification_scores


def reference(pred, gold, labels):
    gold_labels = sorted(set(gold))
    p, r, f, _ = precision_recall_fscore_support(gold, pred, average="macro", labels=gold_labels, zero_division=0)
    return {"accuracy": accuracy_score(gold, pred), "precision": p, "recall": r, "f1_macro": f,
            "confusion_matrix": confusion_matrix(gold, pred, labels=labels).tolist()}


@pytest.mark.parametrize("seed", range(40))
def test_scores_match_scikit_learn_with_labels_only_predicted_and_only_gold(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 7))
    rows = int(rng.integers(1, 60))
    # label n-1 is never gold (only ever predicted), label n-2 is never predicted (only ever gold)
    gold = rng.integers(0, n - 1, rows)
    gold[0] = n - 2
    pred = np.where(rng.random(rows) < 0.5, gold, rng.integers(0, n, rows))
    pred[pred == n - 2] = n - 1
    pred[0] = n - 1
    assert n - 1 in set(pred) - set(gold) and n - 2 in set(gold) - set(pred)
    want = reference(pred, gold, list(range(n)))
    for labels in (range(n), None):  # the trainer's fixed label range, and compare's labels-seen default
        got = classification_scores(pred, gold, labels=labels)
        for key in ("accuracy", "precision", "recall", "f1_macro"):
            assert got[key] == pytest.approx(want[key], abs=1e-12), key
        if labels is not None:
            assert got["confusion_matrix"] == want["confusion_matrix"]
        else:
            seen = sorted(set(gold) | set(pred))
            assert got["confusion_matrix"] == confusion_matrix(gold, pred, labels=seen).tolist()


def test_non_contiguous_labels_and_empty_and_unknown():
    got = classification_scores([7, 3, 3], [3, 3, 9])
    want = reference([7, 3, 3], [3, 3, 9], [3, 7, 9])
    assert got == pytest.approx(want)
    assert classification_scores([], [])["accuracy"] is None and classification_scores([], [])["f1_macro"] is None
    with pytest.raises(ValueError, match=r"\[5\]"):
        classification_scores([5], [0], labels=range(2))
    with pytest.raises(ValueError):
        classification_scores([0, 1], [0])
