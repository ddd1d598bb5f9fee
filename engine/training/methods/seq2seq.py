"""method: seq2seq: encoder-decoder models (T5, BART, ...) with transformers' Seq2SeqTrainer (full, LoRA, DoRA, IA3).

Rows are {"prompt", "completion"} strings (engine.data.convert): the source the encoder reads and the target the
decoder learns to write. Each side is tokenised as the model's tokenizer does it and bounded by data.max_length
on its own (engine.data.seq2seq); labels are the target's ids, padded with -100 by DataCollatorForSeq2Seq, which
also builds the decoder's inputs from them (shifted right). Rows are read and checked in memory by
engine.data.prepare with the tokenizer, so data.truncation's refusals name their rows as sft's do.

Evaluation computes the loss on every eval row; with eval.metrics it also generates an answer (greedy, at most
eval.max_new_tokens tokens) for the first eval.max_rows eval rows, the same rows every time, and scores them with
engine.training.textmetrics against the targets as written in the data. The scores reach the run's `eval` events
as rouge1, rougeL, ... beside loss, an `eval_samples` event (as sft's: rows, seconds, scores and the first three
source / target / answer triples) shows what they are made of, and the run's summary keeps the last scores.
"""
from __future__ import annotations

import time

from engine.config import Config
from engine.data import seq2seq as s2s
from engine.training import modeling
from engine.training.methods.common import tokens_seen, training_kwargs
from engine.training.methods.rows import install_sampler, take_rows
from engine.training.textmetrics import text_scores

SAMPLES, SAMPLE_CHARS = 3, 300  # eval_samples: triples written with each evaluation's scores, each text cut to this


def encode(tok, rows: list[dict], cfg: Config) -> tuple[object, int]:
    """A dataset of {input_ids, labels} from the rows (None without rows), and how many sources were cut."""
    if not rows:
        return None, 0
    from datasets import Dataset

    # The rows passed prepare()'s check with this tokenizer already; tokenising them again here (one batched pass,
    # fast tokenizers) is the price of one data path shared with inspect and the streaming check.
    enc = s2s.encode_rows(tok, rows, cfg.data.max_length, cfg.data.truncation)
    ds = Dataset.from_dict({"input_ids": [e.input_ids for e in enc], "labels": [e.labels for e in enc]})
    return ds, sum(1 for e in enc if e.source_cut)


def generate(model, tok, ds, rows: int, max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy answers for the first `rows` rows of `ds` (its input_ids), decoded without special tokens."""
    import torch

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: list[str] = []
    try:
        with torch.no_grad():
            for start in range(0, min(rows, len(ds)), batch_size):
                ids = ds[start:min(start + batch_size, rows)]["input_ids"]
                batch = tok.pad({"input_ids": ids}, return_tensors="pt").to(device)
                # num_beams=1, do_sample=False: the same answer for the same weights, evaluation after evaluation
                gen = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                     max_new_tokens=max_new_tokens, num_beams=1, do_sample=False)
                out += tok.batch_decode(gen, skip_special_tokens=True)
    finally:
        model.train(was_training)
    return out


def trainer_class():
    """Seq2SeqTrainer whose evaluation adds eval.metrics on generated answers to the loss."""
    from transformers import Seq2SeqTrainer

    class Trainer(Seq2SeqTrainer):
        metric_names: tuple = ()
        max_rows = max_new_tokens = 0
        references: list[str] = []
        on_scores = None

        def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                            metric_key_prefix="eval"):
            output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys,
                                             metric_key_prefix)
            if self.metric_names and metric_key_prefix == "eval" and self.eval_dataset is not None:
                n = min(self.max_rows, len(self.references))
                t0 = time.perf_counter()
                # Cost: up to max_new_tokens decoder steps for each batch of the first n eval rows, every evaluation
                # (on several ranks each one answers all n: no collective, the same answers everywhere).
                preds = generate(self.model, self.processing_class, self.eval_dataset, n, self.max_new_tokens,
                                 self.args.per_device_eval_batch_size)
                scores = text_scores(preds, self.references[:n], self.metric_names)
                output.metrics.update({f"eval_{k}": v for k, v in scores.items() if v is not None})
                if self.on_scores is not None:
                    self.on_scores(scores, preds, n, time.perf_counter() - t0)
            return output

    return Trainer


def build(cfg: Config, resolved: dict, job: dict, callbacks: list):
    from transformers import AutoModelForSeq2SeqLM, DataCollatorForSeq2Seq, Seq2SeqTrainingArguments, set_seed

    tok = modeling.load_tokenizer(cfg)
    # data.truncation's verdicts with this tokenizer: refuse names the rows whose source is too long, drop counts
    train_rows, eval_rows, info = take_rows(cfg, job, tok)
    set_seed(cfg.training.seed)
    model = modeling.load_model(cfg, resolved, auto_class=AutoModelForSeq2SeqLM)
    # The collator builds decoder_input_ids from the labels with the model's own shift (T5 starts the decoder
    # from pad, BART from </s>); it needs the transformers model, not the PEFT wrapper around it.
    collator = DataCollatorForSeq2Seq(tok, model=model, label_pad_token_id=-100)
    peft = modeling.peft_config(cfg, "SEQ_2_SEQ_LM")
    if peft is not None:  # transformers' Trainer takes no peft_config: the adapter is put on here
        from peft import get_peft_model

        model = get_peft_model(model, peft)
    train_ds, cut_train = encode(tok, train_rows, cfg)
    eval_ds, cut_eval = encode(tok, eval_rows, cfg)
    if cfg.data.truncation == "prompt_left" and cut_train + cut_eval:
        job.setdefault("notes", []).append(
            f"data.truncation prompt_left: {cut_train + cut_eval} source(s) longer than data.max_length "
            f"{cfg.data.max_length} lost their first tokens (the oldest text); a document to summarise usually "
            "wants data.truncation: right (keep its start)")
    metrics = tuple(cfg.eval.metrics) if eval_ds is not None else ()
    events = next((c.events for c in callbacks if hasattr(c, "events")), None)

    def on_scores(scores, preds, n, seconds):
        job["summary_extra"] = {k: round(v, 4) for k, v in scores.items() if v is not None}
        if events is not None:  # what the scores are made of, as sft's eval.metrics writes it (methods/answers.py)
            samples = [{"prompt": r["prompt"][-SAMPLE_CHARS:], "reference": r["completion"][:SAMPLE_CHARS],
                        "answer": a[:SAMPLE_CHARS]} for r, a in zip(eval_rows[:SAMPLES], preds)]
            events.write("eval_samples", step=trainer.state.global_step, rows=n, max_new_tokens=cfg.eval.max_new_tokens,
                         seconds=round(seconds, 3), scores=scores, samples=samples)

    args = Seq2SeqTrainingArguments(
        **training_kwargs(cfg, resolved, job["trainer_dir"], eval_ds is not None),
        predict_with_generate=False,  # generation is bounded by eval.max_rows in the Trainer above, not per eval row
        eval_on_start=bool(metrics),  # the metrics' starting point: the base model's answers, before any step
        include_num_input_tokens_seen="non_padding",  # source tokens: one .item() a step (a sync on a GPU)
    )
    cls = trainer_class()
    trainer = cls(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tok,
                  data_collator=collator, callbacks=[tokens_seen(), *callbacks])
    trainer.metric_names, trainer.max_rows, trainer.max_new_tokens = metrics, cfg.eval.max_rows, cfg.eval.max_new_tokens
    trainer.references = [r["completion"] for r in eval_rows]
    trainer.on_scores = on_scores
    install_sampler(trainer, job)  # data mixing / data.order length (source tokens) / column:NAME, as classification
    return trainer
