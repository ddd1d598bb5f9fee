"""Checkpoint A/B comparison: load both models, stream their answers to the same prompts, score both, unload.

Heavy when run: engine.checkpoints.generate imports torch, transformers and peft inside its functions. When A
and B share a base (two checkpoints of a run, or a checkpoint and its base) the base is loaded once.
"""
from __future__ import annotations

import time

from engine.checkpoints import answer_scores, generate
from engine.checkpoints.prompts import default_prompts, run_split, sft_view
from engine.checkpoints.refs import ModelRef


def run_comparison(a: ModelRef, b: ModelRef, prompts: list[dict] | None, dec, *, device: str = "cpu",
                   eval_rows: list[dict] | None = None, eval_source: str = "", max_eval: int = 200,
                   metrics: bool = True, on_token=None, on_phase=None, should_stop=None, on_row=None) -> dict:
    """Load A and B, generate for every prompt (streaming through on_token), score both, unload.

    Returns {"prompts": [{prompt, a, b, ...}], "metrics": {...}, "models": {...}}. `eval_rows` default to
    the eval split of A's (else B's) run; classification runs get accuracy and macro F1 instead of text.
    Prompts with a `reference` answer get both answers scored (metrics["answers"], each row's "scores"), and
    each model carries its run's eval metrics at its step (models[side]["run_eval"]; engine.checkpoints.answer_scores).
    """
    phase = on_phase or (lambda text: None)
    classify = a.method in ("classification", "reward") or b.method in ("classification", "reward")
    if not classify and prompts is None:
        prompts, source = default_prompts(a, b)
        phase(f"prompts: {source}")
    out_metrics: dict = {"decoding": dec.as_dict(), "device": device}
    if metrics and eval_rows is None:
        for ref in (a, b):
            eval_rows, eval_source = run_split(ref)
            if eval_rows:
                break
    phase(f"loading {a.label} and {b.label} on {device}")
    t0 = time.perf_counter()
    side_a, side_b = generate.load_pair(a, b, device)
    out_metrics["load_s"] = round(time.perf_counter() - t0, 3)
    out_metrics["shared_base"] = side_a.shared or side_a.model is side_b.model
    try:
        results = []
        if not classify:
            phase(f"generating for {len(prompts)} prompts")
            results = generate.generate_pair(side_a, side_b, prompts, dec, on_token, should_stop, on_row)
            for name in ("a", "b"):
                toks = sum(r[f"{name}_tokens"] for r in results)
                secs = sum(r[f"{name}_seconds"] for r in results)
                out_metrics[name] = {"gen_tokens": toks, "gen_tokens_per_s": round(toks / secs, 2) if secs else None}
            names, whose = answer_scores.metric_names(a, b)
            scored = answer_scores.score_answers(results, prompts, names)
            if scored:
                out_metrics["answers"] = {**scored, "chosen_by": whose}
        if metrics and eval_rows:
            rows = eval_rows[:max_eval]
            phase(f"scoring both on {len(rows)} eval rows")
            for side in (side_a, side_b):
                if classify:
                    score = generate.classification_scores(side, rows)
                else:
                    score = generate.eval_loss(side, [v for v in map(sft_view, rows) if v])
                out_metrics.setdefault(side.name, {}).update(score)
            out_metrics["eval"] = f"{eval_source or 'eval rows'} ({len(rows)} rows)"
        elif metrics:
            out_metrics["eval"] = eval_source or "no eval split: pass --eval FILE for eval loss and perplexity"
    finally:
        generate.unload(side_a, side_b)
    models = {side: {**ref.describe(), "run_eval": answer_scores.run_eval_at(ref)}  # the run's own eval at that step
              for side, ref in (("a", a), ("b", b))}
    return {"prompts": results, "metrics": out_metrics, "models": models}
