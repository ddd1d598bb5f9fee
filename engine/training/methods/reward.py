"""method: reward: a reward model (sequence classification head, one output) on preference pairs.

TRL's RewardTrainer trains r(chosen) > r(rejected) and reports pairwise accuracy and margin at eval
(events `eval` with accuracy, margin, mean_reward). The checkpoints load back as
AutoModelForSequenceClassification (or base + adapter) and serve as rl.reward_model for grpo/rloo.
"""
from __future__ import annotations

from engine.config import Config
from engine.training import modeling
from engine.training.methods.common import to_dataset, training_kwargs
from engine.training.methods.rows import install_sampler, take_rows


def pretokenize(rows: list[dict], tok, max_length: int) -> list[dict]:
    """Tokenise plain-text pairs ourselves, truncating to max_length.

    TRL would instead drop every pair longer than max_length, and it appends `eos_token` as text, which
    encoders such as BERT do not have. Chat-format rows are left to TRL (its chat template path).
    """
    if not rows or not isinstance(rows[0]["chosen"], str):
        return rows
    eos = tok.eos_token_id if tok.eos_token_id is not None and tok.eos_token_id != tok.sep_token_id else None

    def ids(text: str) -> list[int]:
        out = tok(text, truncation=True, max_length=max_length - (eos is not None))["input_ids"]
        return out + [eos] if eos is not None and (not out or out[-1] != eos) else out

    return [{"chosen_ids": ids(r.get("prompt", "") + r["chosen"]), "rejected_ids": ids(r.get("prompt", "") + r["rejected"])}
            for r in rows]


def load_reward_backbone(cfg: Config, resolved: dict):
    from transformers import AutoModelForSequenceClassification

    model = modeling.load_model(cfg, resolved, auto_class=AutoModelForSequenceClassification, num_labels=1,
                                ignore_mismatched_sizes=True)  # a classifier of another size gets a new head
    return model


def build(cfg: Config, resolved: dict, job: dict, callbacks: list):
    from transformers import set_seed
    from trl import RewardConfig, RewardTrainer

    train_rows, eval_rows, info = take_rows(cfg, job)
    tok = modeling.load_tokenizer(cfg, job)  # with data.chat_template: TRL renders conversational pairs with it
    if tok.pad_token is None:
        tok.pad_token = tok.unk_token
    set_seed(cfg.training.seed)  # the new head's initial weights: the same every run of this config
    model = load_reward_backbone(cfg, resolved)
    # tokens data.chat_template added: without the resize their ids index past the embedding table
    embeddings = modeling.fit_vocabulary(model, tok, job)
    model.config.pad_token_id = tok.pad_token_id  # the head reads the last non-pad token
    max_len = cfg.data.max_length
    args = RewardConfig(**training_kwargs(cfg, resolved, job["trainer_dir"], bool(eval_rows)), max_length=max_len)
    trainer = RewardTrainer(model=model, args=args, train_dataset=to_dataset(pretokenize(train_rows, tok, max_len)),
                            eval_dataset=to_dataset(pretokenize(eval_rows, tok, max_len)), processing_class=tok,
                            peft_config=modeling.peft_config(cfg, "SEQ_CLS", model, extra_modules=embeddings),
                            callbacks=callbacks)
    install_sampler(trainer, job)  # data mixing / data.order
    return trainer
