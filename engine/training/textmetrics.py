"""Metrics on generated answers against reference answers: one definition for evaluation and for compare.

Light: rouge-score and sacrebleu are imported when a metric needs them (no torch), so the trainer's eval and
the helper's compare report the same numbers for the same strings. Nothing is downloaded: rouge-score's
Porter stemmer is code, and sacrebleu's tokenizers ship with it.

Scales are the ones papers quote: exact_match and ROUGE are fractions in [0, 1] (ROUGE as the mean F-measure
over rows, as rouge-score and HF `evaluate` report it); BLEU and chrF are corpus scores in [0, 100] (sacrebleu's).
"""
from __future__ import annotations

from collections.abc import Sequence

from engine.config.schema import TEXT_METRICS

ROUGE = ("rouge1", "rouge2", "rougeL")


def normalise(text: str) -> str:
    """Whitespace collapsed and the ends stripped: a trailing newline or a doubled space is not a wrong answer.
    Case and punctuation still count (an exact match means the answer a user would copy)."""
    return " ".join(text.split())


def text_scores(predictions: Sequence[str], references: Sequence[str], names: Sequence[str] = TEXT_METRICS) -> dict:
    """{name: score} for each of `names` over the rows; an empty list of rows scores None for each."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    unknown = [n for n in names if n not in TEXT_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}: known are {', '.join(TEXT_METRICS)}")
    if not predictions:
        return {n: None for n in names}
    preds = [normalise(p) for p in predictions]
    refs = [normalise(r) for r in references]
    out: dict[str, float | None] = {}
    if "exact_match" in names:
        out["exact_match"] = sum(p == r for p, r in zip(preds, refs)) / len(preds)
    wanted = [n for n in ROUGE if n in names]
    if wanted:
        from rouge_score import rouge_scorer

        # use_stemmer: "cats" matches "cat", as the ROUGE papers and HF evaluate's default do. Its tokenizer keeps
        # [a-z0-9] only, so ROUGE of text without Latin letters or digits is 0: use chrf there.
        scorer = rouge_scorer.RougeScorer(wanted, use_stemmer=True)
        totals = dict.fromkeys(wanted, 0.0)
        for p, r in zip(preds, refs):
            for n, s in scorer.score(r, p).items():  # score(target, prediction)
                totals[n] += s.fmeasure
        out.update({n: totals[n] / len(preds) for n in wanted})
    if "bleu" in names or "chrf" in names:
        import sacrebleu

        if "bleu" in names:
            out["bleu"] = float(sacrebleu.corpus_bleu(preds, [refs]).score)
        if "chrf" in names:
            out["chrf"] = float(sacrebleu.corpus_chrf(preds, [refs]).score)
    return {n: out[n] for n in names}
