"""Classification scores from predicted and gold labels: one definition for the trainer and for compare.

Light: numpy only, imported when called (no torch, no scikit-learn at runtime), so the helper's compare
and a trainer's compute_metrics report the same numbers for the same predictions.
"""
from __future__ import annotations

from collections.abc import Sequence


def classification_scores(pred, gold, labels: Sequence[int] | None = None) -> dict:
    """Accuracy, macro precision/recall/F1 and the confusion matrix (rows = gold label, columns = predicted).

    `labels` orders the matrix (the trainer passes range(num_labels)); by default the sorted labels seen in
    either list. The macro means run over the labels present in the gold data, as scikit-learn's
    `precision_recall_fscore_support(average="macro", labels=<gold labels>)`: a label only ever predicted
    lowers the precision of the gold labels it was confused with, but is not averaged as a class of its
    own. A label with no predictions scores precision 0 (scikit-learn's zero_division default). With no
    rows the means are None.
    """
    import numpy as np  # here, not at the top: importing engine.checkpoints.generate stays cheap, as it says

    pred, gold = np.asarray(pred).ravel(), np.asarray(gold).ravel()
    if pred.shape != gold.shape:
        raise ValueError(f"{len(pred)} predictions for {len(gold)} gold labels")
    names = np.unique(np.concatenate([gold, pred])) if labels is None else np.asarray(list(labels))
    index = {v: i for i, v in enumerate(names.tolist())}
    unknown = sorted({v for v in gold.tolist() + pred.tolist() if v not in index})
    if unknown:
        raise ValueError(f"labels {unknown} are not in {names.tolist()}")
    cm = np.zeros((len(names), len(names)), dtype=np.int64)
    rows = np.array([index[v] for v in gold.tolist()], dtype=np.intp)
    cols = np.array([index[v] for v in pred.tolist()], dtype=np.intp)
    np.add.at(cm, (rows, cols), 1)
    tp = np.diag(cm).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(cm.sum(0) > 0, tp / cm.sum(0), 0.0)
        recall = np.where(cm.sum(1) > 0, tp / cm.sum(1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = cm.sum(1) > 0
    mean = (lambda v: float(v[present].mean())) if present.any() else (lambda v: None)
    return {"accuracy": float(tp.sum() / cm.sum()) if cm.sum() else None, "precision": mean(precision),
            "recall": mean(recall), "f1_macro": mean(f1), "confusion_matrix": cm.tolist()}
