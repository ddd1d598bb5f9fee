"""Task metrics in a comparison: each checkpoint's own eval metrics at its step, and both answers scored against
the prompts' reference answers.

Light (engine.rundir and textmetrics, whose scorers import neither torch nor transformers). The run's eval events
say what the trainer measured at the checkpoint's step (loss, rouge1, bleu, accuracy...: engine.rundir.evalkeys);
a base model has none. Prompts that carry a `reference` (the final assistant turn or completion of an eval row, a
prompts file's answer column) have both sides' answers scored with the run's eval.metrics, the same definition
the trainer used, so a checkpoint's compare score and its training-time score agree for the same answers.
"""
from __future__ import annotations

from engine.checkpoints.refs import ModelRef
from engine.rundir.evalkeys import metric_values
from engine.rundir.events import read_events
from engine.training.textmetrics import text_scores

# Used when neither run chose eval.metrics (or A and B are base models): cheap, and meaningful on a few prompts
# (BLEU is a corpus score that says little over eight short answers).
DEFAULT_METRICS = ("exact_match", "rougeL")


def run_eval_at(ref: ModelRef) -> dict | None:
    """{"step", "loss", metric: value...} of the run's evaluation at the checkpoint's step (the last one before
    it when none ran at that step), or None for a model without a run or a run that never evaluated."""
    step = ref.meta.get("step")
    if ref.run is None or not isinstance(step, int):
        return None
    try:
        evals = [e for e in read_events(ref.run.events_path, ("eval",)) if isinstance(e.get("step"), int)]
    except OSError:
        return None
    at = [e for e in evals if e["step"] == step] or [e for e in evals if e["step"] <= step][-1:]
    if not at:
        return None
    merged: dict = {}
    for e in evals:  # every eval event of that step (the forgetting watch's step-0 event is one of its own)
        if e["step"] == at[-1]["step"]:
            merged.update(e)
    loss = merged.get("loss")
    return {"step": at[-1]["step"], **({"loss": loss} if isinstance(loss, (int, float)) else {}),
            **metric_values(merged)}


def metric_names(a: ModelRef, b: ModelRef) -> tuple[list[str], str]:
    """The metrics to score answers with: A's run's eval.metrics, else B's, else DEFAULT_METRICS; and whose."""
    for ref in (a, b):
        if ref.run is not None:
            try:
                names = list(ref.run.settings().eval.metrics)
            except Exception:  # noqa: BLE001 - an unreadable config.yaml: fall through to the defaults
                continue
            if names:
                return names, f"eval.metrics of {ref.run.id}"
    return list(DEFAULT_METRICS), "default (no run chose eval.metrics)"


def score_answers(rows: list[dict], prompts: list[dict], names: list[str]) -> dict | None:
    """Score both sides' answers of the prompts that have a reference. Adds `reference` and `scores` ({"a": {...},
    "b": {...}}) to those rows; returns {"metrics", "rows", "a", "b"} over them, or None when no prompt has one."""
    picked = [(row, p["reference"]) for row, p in zip(rows, prompts)
              if isinstance(p.get("reference"), str) and p["reference"].strip()]
    if not picked:
        return None
    out: dict = {"metrics": list(names), "rows": len(picked)}
    for side in ("a", "b"):
        out[side] = text_scores([r[side] for r, _ in picked], [ref for _, ref in picked], names)
    for row, ref in picked:
        row["reference"] = ref
        row["scores"] = {side: text_scores([row[side]], [ref], names) for side in ("a", "b")}
    return out
