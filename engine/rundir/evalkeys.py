"""Which keys of an `eval` event are the run's eval metrics: one rule for the Monitor, compare and `tunebench status`.

Light module. An eval event carries the loss (drawn on the loss chart), the trainer's bookkeeping (runtime,
throughput, epoch, tokens) and the metrics proper: those on generated answers (eval.metrics: exact_match, rouge1,
bleu, ...), classification's accuracy and F1, preference accuracies, the forgetting watch's general_loss, and any
numeric key a method adds. Every numeric key that is not bookkeeping counts, so a new method's metrics show
without a change here. The order: eval.metrics' names first (the ones the user asked for), then the rest by name.
"""
from __future__ import annotations

from engine.config.schema import TEXT_METRICS

BOOKKEEPING = frozenset({"seq", "time", "kind", "step", "loss", "runtime", "samples_per_second", "steps_per_second",
                         "epoch", "num_tokens", "model_preparation_time", "nonfinite",
                         "num_input_tokens_seen"})  # transformers' own Trainer (classification, seq2seq) logs it


def metric_values(event: dict) -> dict[str, float]:
    """{name: value} of an eval event's metrics (numbers only, bools excluded), in display order."""
    found = {k: v for k, v in event.items()
             if k not in BOOKKEEPING and isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {k: found[k] for k in sorted(found, key=order_key)}


def order_key(name: str) -> tuple:
    return (0, TEXT_METRICS.index(name), "") if name in TEXT_METRICS else (1, 0, name)


def fmt_metric(name: str, value: float | None) -> str:
    """A metric as a person reads it: fractions (EM, ROUGE, accuracy) with 3 decimals, 0-100 scores with 1."""
    if value is None:
        return "N/A"
    if name in ("bleu", "chrf") or abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.2f}"
