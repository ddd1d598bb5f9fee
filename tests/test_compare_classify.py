"""Comparing two checkpoints of a classification run: accuracy and macro F1 instead of text, equal to the trainer's."""
from __future__ import annotations

import pytest


def test_classification_checkpoints_are_scored_as_the_trainer_scored_them(tmp_path):
    from engine.checkpoints.compare import run_comparison
    from engine.checkpoints.refs import resolve_ref
    from engine.checkpoints.settings import Decoding
    from tests.methods_support import build_assets, config, train

    assets = build_assets(tmp_path / "assets")
    cfg = config(assets["bert"], assets["cls"], method="classification", data={"eval_fraction": 0.25},
                 training={"max_steps": 8, "save_steps": 4, "learning_rate": 1e-2, "eval_steps": 4})
    run, events = train(tmp_path / "runs", cfg)
    a, b = resolve_ref(f"{run.id}@4", tmp_path / "runs"), resolve_ref(run.id, tmp_path / "runs")
    result = run_comparison(a, b, None, Decoding())
    assert result["prompts"] == []  # nothing to generate: a classifier is compared by its scores
    m = result["metrics"]
    by_step = {e["step"]: e for e in events["eval"]}
    for side, step in (("a", 4), ("b", 8)):
        assert m[side]["eval_rows"] == 20
        assert m[side]["accuracy"] == pytest.approx(by_step[step]["accuracy"], abs=1e-6)
        assert m[side]["macro_f1"] == pytest.approx(by_step[step]["f1_macro"], abs=1e-4)
