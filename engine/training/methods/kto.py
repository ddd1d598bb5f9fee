"""method: kto: Kahneman-Tversky optimisation with TRL's KTOTrainer on {"prompt", "completion", "label"} rows.

KTO learns from unpaired thumbs-up/thumbs-down data (label true = desirable). The reference model is
implicit under an adapter, as in DPO.
"""
from __future__ import annotations

from engine.config import Config
from engine.training import modeling
from engine.training.methods.common import to_dataset, training_kwargs
from engine.training.methods.rows import install_sampler, take_rows


def build(cfg: Config, resolved: dict, job: dict, callbacks: list):
    from trl import KTOConfig, KTOTrainer

    tok = modeling.load_tokenizer(cfg, job)
    # with the tokenizer, rows whose prompt alone fills max_length are reported, not silently left untrained
    train_rows, eval_rows, info = take_rows(cfg, job, tok)
    for r in train_rows + eval_rows:
        r["label"] = bool(r["label"])
    model = modeling.load_model(cfg, resolved)
    embeddings = modeling.fit_vocabulary(model, tok, job)  # tokens data.chat_template added
    p = cfg.preference
    loss = p.loss_type[0] if p.loss_type else "kto"
    loss = "kto" if loss == "sigmoid" else loss  # sigmoid is the DPO default of the shared key
    args = KTOConfig(**training_kwargs(cfg, resolved, job["trainer_dir"], bool(eval_rows)),
                     max_length=cfg.data.max_length, beta=p.beta, loss_type=loss,
                     desirable_weight=p.desirable_weight, undesirable_weight=p.undesirable_weight)
    trainer = KTOTrainer(model=model, args=args, train_dataset=to_dataset(train_rows), eval_dataset=to_dataset(eval_rows),
                         processing_class=tok, peft_config=modeling.peft_config(cfg, extra_modules=embeddings),
                         callbacks=callbacks)
    install_sampler(trainer, job, cfg=cfg, resolved=resolved, callbacks=callbacks)  # data mixing / data.order
    return trainer
