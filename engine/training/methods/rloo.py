"""method: rloo: REINFORCE leave-one-out (TRL's RLOOTrainer): each completion's baseline is the mean reward of
the other completions for its prompt. Same rewards, samples and config (`rl` section) as grpo."""
from __future__ import annotations

from engine.config import Config
from engine.training.methods.grpo import build_online


def build(cfg: Config, resolved: dict, job: dict, callbacks: list):
    from trl import RLOOConfig, RLOOTrainer

    return build_online(cfg, resolved, job, callbacks, RLOOTrainer, RLOOConfig, {})
