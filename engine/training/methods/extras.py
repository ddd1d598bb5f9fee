"""Options every method shares once its trainer is built: layer freezing, the forgetting watch, layer-wise
learning rates, and an eval loss that label smoothing leaves comparable."""
from __future__ import annotations

from engine.config import Config
from engine.training import layerwise
from engine.training.methods import forgetting, freezing


def attach(trainer, cfg: Config, run_callback) -> None:
    freezing.apply(trainer, cfg, run_callback.events)
    forgetting.watch(trainer, cfg, run_callback)
    layerwise.attach(trainer, cfg.training.layer_lr_decay, run_callback.events)
    plain_eval_loss(trainer)


def plain_eval_loss(trainer) -> None:
    """With label smoothing, train on the smoothed loss but evaluate the plain one.

    Trainer (and TRL's SFTTrainer) apply `label_smoother` in evaluation too, so eval_loss would be the
    smoothed cross-entropy: higher than the same model's plain loss, and not comparable with a run without
    smoothing, with its base model, or with `tunebench compare`. Evaluation passes run with no smoother.
    """
    smoother = getattr(trainer, "label_smoother", None)
    if smoother is None:
        return
    compute_loss = trainer.compute_loss

    def loss_by_mode(model, inputs, *args, **kwargs):
        trainer.label_smoother = smoother if model.training else None
        try:
            return compute_loss(model, inputs, *args, **kwargs)
        finally:
            trainer.label_smoother = smoother

    trainer.compute_loss = loss_by_mode
