"""Shared set-up of the compare tests: one real tiny training run with several checkpoints, made once per session.

The run goes through the real `tunebench train` (a subprocess, as a user runs it): 6 steps saving every 2,
an eval split of 8 rows, a learning rate high enough that the final model answers differently from the base.
Several test modules use it; the module-level cache makes it once however many modules ask.
"""
from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import tunebench, write_config

_CACHE: dict = {}


def trained_run(base: Path, tiny_model: Path, chat_jsonl: Path) -> dict:
    """{"runs_dir", "run" (engine.runs.Run), "model"}: a completed LoRA run with checkpoints at steps 2, 4, 6."""
    if "run" in _CACHE:
        return _CACHE
    from engine.rundir.runs import list_runs

    base.mkdir(parents=True, exist_ok=True)
    runs_dir = base / "runs"
    cfg = write_config(base / "cfg.yaml", tiny_model, chat_jsonl, name="ab",
                       data={"eval_fraction": 0.125},
                       training={"max_steps": 6, "save_steps": 2, "learning_rate": 5e-3, "batch_size": 8},
                       hardware={"device": "cpu"})
    res = tunebench("train", cfg, runs_dir=runs_dir)
    assert res.returncode == 0, res.stderr[-2000:]
    (run,) = list_runs(runs_dir)
    assert [c.step for c in run.checkpoints()] == [2, 4, 6]
    _CACHE.update(runs_dir=runs_dir, run=run, model=tiny_model)
    return _CACHE


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
