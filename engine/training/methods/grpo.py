"""method: grpo: group relative policy optimisation (TRL's GRPOTrainer) against reward functions and/or a model.

Each prompt gets rl.num_generations sampled completions; their rewards, normalised within the group, are
the advantages. Metrics (reward, reward_std, rewards/<name>/mean, completions/mean_length, kl) arrive as
`metrics` events; sample completions with their rewards as `sample` events. TRL 1.x has no PPOTrainer:
GRPO and RLOO are its online RL methods.
"""
from __future__ import annotations

from engine.config import Config
from engine.training import modeling
from engine.training.methods.common import to_dataset, training_kwargs
from engine.training.methods.rewards import reward_sources, sample_callback
from engine.training.methods.rows import install_sampler, take_rows


def rl_kwargs(cfg: Config) -> dict:
    rl = cfg.rl
    return dict(num_generations=rl.num_generations, max_completion_length=rl.max_completion_length,
                temperature=rl.temperature, beta=rl.beta, log_completions=False)


def build_online(cfg: Config, resolved: dict, job: dict, callbacks: list, trainer_cls, config_cls, extra: dict):
    train_rows, eval_rows, info = take_rows(cfg, job)
    tok = modeling.load_tokenizer(cfg, job)
    tok.padding_side = "left"  # generation appends to the prompt's end
    model = modeling.load_model(cfg, resolved)
    embeddings = modeling.fit_vocabulary(model, tok, job)  # tokens data.chat_template added
    funcs, classes = reward_sources(cfg)
    events = next((c.events for c in callbacks if hasattr(c, "events")), None)
    samples = sample_callback(events, cfg.rl.samples_per_log) if events is not None else None
    kw = training_kwargs(cfg, resolved, job["trainer_dir"], bool(eval_rows))
    args = config_cls(**kw, **rl_kwargs(cfg), **extra)
    trainer = trainer_cls(model=model, reward_funcs=funcs, args=args, train_dataset=to_dataset(train_rows),
                          eval_dataset=to_dataset(eval_rows), processing_class=tok, reward_processing_classes=classes,
                          peft_config=modeling.peft_config(cfg, extra_modules=embeddings), callbacks=([samples] if samples else []) + callbacks)
    if samples is not None:
        samples.trainer = trainer
    if job.get("sampling"):  # data mixing / data.order: the prompt sequence, under TRL's repeat structure
        from engine.training.sampling import grpo_repeat

        install_sampler(trainer, job, grpo_repeat(trainer))
    return trainer


def build(cfg: Config, resolved: dict, job: dict, callbacks: list):
    from trl import GRPOConfig, GRPOTrainer

    return build_online(cfg, resolved, job, callbacks, GRPOTrainer, GRPOConfig, {})
