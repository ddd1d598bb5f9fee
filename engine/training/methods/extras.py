"""Options every method shares once its trainer is built: layer freezing and the forgetting watch."""
from __future__ import annotations

from engine.config import Config
from engine.training.methods import forgetting, freezing


def attach(trainer, cfg: Config, run_callback) -> None:
    freezing.apply(trainer, cfg, run_callback.events)
    forgetting.watch(trainer, cfg, run_callback)
