"""method: dpo: direct preference optimisation with TRL's DPOTrainer on {"prompt", "chosen", "rejected"} rows.

Under an adapter the reference model is implicit: TRL computes reference log-probs with the adapter
disabled, so no second copy of the model sits in memory. Full fine-tuning loads a frozen reference copy.
"""
from __future__ import annotations

from engine.config import Config
from engine.training import modeling
from engine.training.methods.common import to_dataset, training_kwargs
from engine.training.methods.rows import install_sampler, take_rows


def build(cfg: Config, resolved: dict, job: dict, callbacks: list):
    from trl import DPOConfig, DPOTrainer

    tok = modeling.load_tokenizer(cfg, job)
    # with the tokenizer, rows whose prompt alone fills max_length are reported, not silently left untrained
    train_rows, eval_rows, info = take_rows(cfg, job, tok)
    model = modeling.load_model(cfg, resolved)
    embeddings = modeling.fit_vocabulary(model, tok, job)  # tokens data.chat_template added
    p = cfg.preference
    args = DPOConfig(**training_kwargs(cfg, resolved, job["trainer_dir"], bool(eval_rows)),
                     max_length=cfg.data.max_length, beta=p.beta, loss_type=list(p.loss_type))
    trainer = DPOTrainer(model=model, args=args, train_dataset=to_dataset(train_rows), eval_dataset=to_dataset(eval_rows),
                         processing_class=tok, peft_config=modeling.peft_config(cfg, extra_modules=embeddings),
                         callbacks=callbacks)
    install_sampler(trainer, job, cfg=cfg, resolved=resolved, callbacks=callbacks)  # data mixing / data.order
    return trainer
