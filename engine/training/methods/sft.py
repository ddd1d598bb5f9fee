"""method: sft: supervised fine-tuning with TRL's SFTTrainer (full, LoRA, QLoRA).

The data reaches the trainer tokenised (engine.data.pipeline: one parallel pass, cached in the user's cache
directory), as {input_ids, labels} built the way SFTTrainer builds them, so TRL skips its own preparation
(`skip_prepare_dataset`); with packing it only packs. Progress of the pass goes to the run's events
(`data` events with phase "prepare") and status.json (`data`), so a run in preparation is never a silent start.
"""
from __future__ import annotations

import time

from engine.config import Config
from engine.data.formats import KIND
from engine.data.pipeline import prepare_sft
from engine.training import modeling
from engine.training.methods.common import from_files, training_kwargs

STATUS_EVERY = 2.0  # seconds between status.json writes of the preparation's progress (each one is fsynced)


def plan_notes(tok, fmt: str, loss_on: str) -> list[str]:
    """What the config's data.loss_on means for rows of this format, when it is not the obvious."""
    if loss_on != "all" and KIND[fmt] == "text":
        return ["data.loss_on: completion has no meaning for plain text; every token trains"]
    return []


def reporter(callbacks: list):
    """progress(**fields) -> a `data` event each time and status.json's `data` at most every STATUS_EVERY s."""
    cb = next((c for c in callbacks if hasattr(c, "events") and hasattr(c, "run")), None)
    if cb is None:
        return None, None
    last = [0.0]

    def progress(**fields):
        fields.pop("final", None)
        cb.events.write("data", **fields)
        now = time.monotonic()
        if now - last[0] >= STATUS_EVERY or fields.get("phase") not in ("prepare", "score"):
            last[0] = now
            cb.run.write_status(data=fields)

    return progress, cb.stop_flag.is_set


def build(cfg: Config, resolved: dict, job: dict, callbacks: list):
    from trl import SFTConfig, SFTTrainer

    tok = modeling.load_tokenizer(cfg, job)
    progress, should_stop = reporter(callbacks)
    prep = prepare_sft(cfg, tok, progress=progress, should_stop=should_stop)
    info = prep.info
    if progress:
        progress(phase="ready", cached=all(info["cache"].values()), rows=info["train_rows"] + info["eval_rows"],
                 seconds=info["prepare_s"])
    job.update({k: v for k, v in info.items() if k != "warnings"})
    train_ds = from_files(prep.train_files, prep.train_index)
    eval_ds = from_files(prep.eval_files, prep.eval_index)
    job["notes"] = info.get("warnings", []) + plan_notes(tok, info["format"], cfg.data.loss_on)
    model = modeling.load_model(cfg, resolved)
    embeddings = modeling.fit_vocabulary(model, tok, job)
    args = SFTConfig(
        **training_kwargs(cfg, resolved, job["trainer_dir"], eval_ds is not None),
        max_length=cfg.data.max_length,
        packing=cfg.data.packing,
        # The rows are tokenised, masked and cut already: TRL's preparation would only repeat the work (four
        # passes over the data); with packing, TRL still packs them (and does nothing else to them).
        dataset_kwargs={"skip_prepare_dataset": not cfg.data.packing},
        assistant_only_loss=False,
        completion_only_loss=False,
        # eval.metrics' starting point: the base model's answers before any step (as seq2seq and classification);
        # costs one evaluation more, at the start.
        eval_on_start=bool(cfg.eval.metrics) and eval_ds is not None,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tok,
                         peft_config=modeling.peft_config(cfg, extra_modules=embeddings), callbacks=callbacks)
    if prep.sampling:
        from engine.training.sampling import install

        plan = prep.sampling
        keys = plan["keys"]
        if plan["order"] == "length":  # token lengths: the Arrow list offsets, no row is read
            import pyarrow.compute as pc

            keys = pc.list_value_length(train_ds.data.column("input_ids")).to_numpy()
            if prep.train_index is not None:
                keys = keys[prep.train_index]
        elif plan["order"] == "easy_first":  # one no-grad pass of the base model, or its cached scores
            from engine.training import scoring

            every, job["scoring"] = scoring.scores(trainer, lambda: from_files(prep.train_files), prep.train_keys, cfg,
                                                   resolved, progress, should_stop)
            keys = every[prep.train_index] if prep.train_index is not None else every
            if progress:
                progress(phase="scored", **job["scoring"])
        install(trainer, plan, keys)
    from engine.training.methods.answers import watch

    # eval_ds, not trainer.eval_dataset: with packing TRL packs the latter, and a packed row has no one prompt
    watch(trainer, cfg, callbacks, eval_ds, info.get("format"))  # eval.metrics: answers scored at each evaluation
    return trainer
