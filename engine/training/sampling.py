"""The mixture / curriculum sampler: each epoch's rows and their order (engine.data.mixture), in the trainer.

Installed in place of the trainer's own sampler (`_get_train_sampler`) when the data is a mixture or
data.order is not shuffle. The trainer (through accelerate) calls set_epoch(epoch) before each epoch, a resumed
one included, and skips the batches already trained: the rows are a pure function of (seed, epoch), so a
resumed run trains on the rows it would have.

grpo/rloo: TRL's RepeatSampler hands each prompt num_generations times in a row (one group), in chunks of
generation_batch_size / num_generations prompts, each chunk repeated num_iterations x steps_per_generation times
(the generations are reused), dropping an incomplete last chunk. The mixture decides the prompt sequence; the
same repeat structure is laid over it (`repeat`), so the groups and the reuse of generations are TRL's.
"""
from __future__ import annotations

from torch.utils.data import Sampler

from engine.data import mixture


class MixtureSampler(Sampler):
    def __init__(self, plan: dict, keys=None, repeat: dict | None = None):
        self.groups, self.per_source = plan["groups"], plan["per_source"]
        self.seed, self.order, self.curriculum = plan["seed"], plan["order"], plan["curriculum_epochs"]
        self.keys = keys
        self.repeat = repeat
        self.epoch = 0
        self.size = sum(len(g) for g in self.groups)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def indices(self, epoch: int):
        """The rows epoch `epoch` draws, in order (each once: the repeat structure comes in __iter__)."""
        keys = self.keys if self.order != "shuffle" else None
        return mixture.epoch_indices(self.groups, self.per_source, self.seed, epoch, keys, self.curriculum)

    def __iter__(self):
        idx = self.indices(self.epoch).tolist()
        if not self.repeat:
            return iter(idx)
        return iter(repeated(idx, **self.repeat))

    def __len__(self) -> int:
        n = sum(self.per_source)
        if not self.repeat:
            return n
        r = self.repeat
        return (n // r["batch_size"]) * r["batch_size"] * r["mini_repeat_count"] * r["repeat_count"]


def repeated(idx: list[int], mini_repeat_count: int, batch_size: int, repeat_count: int) -> list[int]:
    """TRL's RepeatSampler structure over a given index sequence (its __iter__ without the shuffle)."""
    out = []
    for start in range(0, len(idx) - batch_size + 1, batch_size):  # an incomplete last chunk is dropped, as TRL does
        chunk = idx[start:start + batch_size]
        for _ in range(repeat_count):
            for i in chunk:
                out += [i] * mini_repeat_count
    return out


def grpo_repeat(trainer) -> dict:
    """The RepeatSampler arguments TRL's GRPOTrainer / RLOOTrainer use for training (its _get_train_sampler)."""
    args = trainer.args
    return {"mini_repeat_count": trainer.num_generations,
            "batch_size": args.generation_batch_size // trainer.num_generations,
            "repeat_count": trainer.num_iterations * args.steps_per_generation}


def token_lengths(ds, tok=None):
    """Each row's tokens as the trainer will see them: the prompt and the longer answer of a pair (dpo, reward),
    prompt and completion (kto), input_ids (classification; sft's own rows); rows the trainer has not tokenised
    (grpo/rloo prompts) are tokenised here with `tok` (a chat prompt through its template)."""
    import numpy as np
    import pyarrow.compute as pc

    names = set(ds.column_names)
    ids = [c for c in ("input_ids", "prompt_ids", "completion_ids", "prompt_input_ids", "completion_input_ids")
           if c in names]
    pair = [c for c in ("chosen_ids", "rejected_ids", "chosen_input_ids", "rejected_input_ids") if c in names]
    if ids or pair:
        table = ds.select_columns(ids + pair).with_format("arrow")[:]  # rows in the dataset's order (its indices)
        total = np.zeros(len(ds), np.int64)
        for c in ids:
            total += pc.list_value_length(table.column(c)).to_numpy(zero_copy_only=False)
        if pair:
            total += np.max([pc.list_value_length(table.column(c)).to_numpy(zero_copy_only=False) for c in pair], axis=0)
        return total
    if tok is None or "prompt" not in names:
        raise RuntimeError(f"data.order length: the training rows have no token columns ({sorted(names)})")
    out = []
    for p in ds["prompt"]:
        if isinstance(p, list):
            text = tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
            out.append(len(tok(text, add_special_tokens=False)["input_ids"]))
        else:
            out.append(len(tok(p)["input_ids"]))
    return np.asarray(out, np.int64)


def install(trainer, plan: dict, keys=None, repeat: dict | None = None) -> MixtureSampler:
    """The trainer draws its training rows through a MixtureSampler from now on."""
    sampler = MixtureSampler(plan, keys, repeat)

    def check(ds):
        if ds is not None and len(ds) != sampler.size:
            raise RuntimeError(f"the trainer's dataset holds {len(ds)} rows, the mixture plans for {sampler.size}: "
                               "the trainer changed the rows (data.order / mixing cannot follow)")

    check(trainer.train_dataset)  # a trainer that dropped rows (TRL filters some) fails here, before training

    def get_train_sampler(train_dataset=None):
        check(train_dataset if train_dataset is not None else trainer.train_dataset)
        return sampler

    trainer._get_train_sampler = get_train_sampler
    return sampler
