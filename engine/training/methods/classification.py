"""method: classification: AutoModelForSequenceClassification with transformers' Trainer.

Binary or multi-class, named labels (`classification.labels` or from the data). Evaluation reports accuracy,
macro precision, recall and F1 (engine.training.metrics, shared with compare) as `eval` events, a `confusion` event
with the matrix, and the last evaluation in the run's summary. The model is evaluated once before the
first step too (eval_on_start), so the run shows where it started.
"""
from __future__ import annotations

from engine.config import Config
from engine.training import modeling
from engine.training.methods.common import to_dataset, tokens_seen, training_kwargs
from engine.training.methods.rows import install_sampler, take_rows
from engine.training.metrics import classification_scores


def build(cfg: Config, resolved: dict, job: dict, callbacks: list):
    import numpy as np
    from transformers import (
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        set_seed,
    )

    train_rows, eval_rows, info = take_rows(cfg, job)
    labels = list(info.get("labels") or sorted({r["label"] for r in train_rows}))
    labels = [str(x) for x in labels]
    job["labels"] = labels
    tok = modeling.load_tokenizer(cfg)
    if tok.pad_token is None:
        tok.pad_token = tok.unk_token
    set_seed(cfg.training.seed)  # the new head's initial weights: the same every run of this config
    model = modeling.load_model(cfg, resolved, auto_class=AutoModelForSequenceClassification, num_labels=len(labels),
                                id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)},
                                ignore_mismatched_sizes=True)  # a pretrained head of another size is replaced
    model.config.pad_token_id = tok.pad_token_id
    peft = modeling.peft_config(cfg, "SEQ_CLS", model)
    if peft is not None:  # plain Trainer takes no peft_config; the head (modules_to_save) trains in full
        from peft import get_peft_model

        model = get_peft_model(model, peft)
    max_len = cfg.data.max_length

    def encode(rows):
        if not rows:
            return None
        ds = to_dataset(rows)
        pair = "text_pair" in rows[0]

        def tok_batch(b):
            return tok(b["text"], b["text_pair"] if pair else None, truncation=True, max_length=max_len)

        return ds.map(tok_batch, batched=True, remove_columns=[c for c in ds.column_names if c != "label"])

    last: dict = {}
    events = next((c.events for c in callbacks if hasattr(c, "events")), None)

    def compute_metrics(p):
        logits = p.predictions[0] if isinstance(p.predictions, tuple) else p.predictions
        out = classification_scores(np.argmax(logits, -1), p.label_ids, labels=range(len(labels)))
        last.clear()
        last.update(out)
        job["summary_extra"] = {**{k: round(v, 4) for k, v in out.items() if k != "confusion_matrix"},
                                "confusion_matrix": out["confusion_matrix"], "labels": labels}
        return {k: v for k, v in out.items() if k != "confusion_matrix"}

    class Confusion(TrainerCallback):
        def on_evaluate(self, args, state, control, metrics=None, **kw):
            if events is not None and last:
                events.write("confusion", step=state.global_step, labels=labels, matrix=last["confusion_matrix"])

    kw = training_kwargs(cfg, resolved, job["trainer_dir"], bool(eval_rows))
    if cfg.training.group_by_length:  # padding to each batch's longest row costs less when rows match
        kw["train_sampling_strategy"] = "group_by_length"
    # non-padding tokens from the attention mask: one .item() a step, a CPU-GPU sync on a GPU (as TRL's count)
    args = TrainingArguments(**kw, eval_on_start=bool(eval_rows), include_num_input_tokens_seen="non_padding")
    trainer = Trainer(model=model, args=args, train_dataset=encode(train_rows), eval_dataset=encode(eval_rows),
                      processing_class=tok, data_collator=DataCollatorWithPadding(tok),
                      compute_metrics=compute_metrics, callbacks=[tokens_seen(), Confusion(), *callbacks])
    install_sampler(trainer, job)  # data mixing / data.order (validation refuses them with group_by_length)
    return trainer
