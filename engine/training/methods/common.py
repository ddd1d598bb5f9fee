"""What every trainer-based method shares: TrainingArguments fields from the config, and the dataset."""
from __future__ import annotations

import importlib.util

from engine.config import Config


def training_kwargs(cfg: Config, resolved: dict, trainer_dir: str, has_eval: bool) -> dict:
    """Keyword arguments common to TrainingArguments and TRL's *Config classes."""
    t = cfg.training
    precision = resolved["precision"]
    report = [r for r in t.report_to if r != "none" and importlib.util.find_spec(r)]
    return dict(
        output_dir=trainer_dir,
        max_steps=t.max_steps,
        num_train_epochs=t.epochs,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_steps,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        optim=resolved["optimizer"],
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        gradient_checkpointing=resolved["gradient_checkpointing"],
        seed=t.seed,
        logging_steps=t.logging_steps,
        eval_strategy="steps" if has_eval and t.eval_steps else "no",
        eval_steps=t.eval_steps or None,
        save_strategy="steps" if t.save_steps else "no",  # the callback also saves at the end and on request
        save_steps=t.save_steps or 500,
        report_to=report or "none",
        use_cpu=resolved["device"] == "cpu",
        use_liger_kernel=resolved.get("liger_kernel", False),
        disable_tqdm=True,  # progress is the events' job; tqdm to engine.log costs a write per step
        dataloader_num_workers=0,
        label_smoothing_factor=t.label_smoothing,  # validation allows it for sft and classification only
        neftune_noise_alpha=t.neftune_noise_alpha or None,  # None = off (transformers' own default); sft only
    )


def to_dataset(rows: list[dict]):
    from datasets import Dataset

    return Dataset.from_list(rows) if rows else None


def from_files(files: list[str], index: list[int] | None = None):
    """A dataset over prepared Arrow files (memory-mapped: nothing is loaded), rows in file order, or only
    `index` (an indices mapping over them, no copy)."""
    if not files:
        return None
    from datasets import Dataset, concatenate_datasets

    parts = [Dataset.from_file(f) for f in files]
    ds = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
    if index is not None:
        ds = ds.select(index) if len(index) else None
    return ds


def tokens_seen():
    """A callback for transformers' own Trainer (classification, seq2seq): it logs num_input_tokens_seen where TRL
    logs num_tokens; the run's callback (after this one, the same logs dict) counts tokens and tokens/s from
    num_tokens, so the summary has them."""
    from transformers import TrainerCallback

    class TokensSeen(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if logs is not None and "num_input_tokens_seen" in logs and "num_tokens" not in logs:
                logs["num_tokens"] = logs["num_input_tokens_seen"]

    return TokensSeen()
