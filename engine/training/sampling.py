"""The mixture / curriculum sampler: each epoch's rows and their order (engine.data.mixture), in the trainer.

Installed in place of the trainer's own sampler (`_get_train_sampler`) when the data is a mixture or
data.order is not shuffle. The trainer (through accelerate) calls set_epoch(epoch) before each epoch, a resumed
one included, and skips the batches already trained: the rows are a pure function of (seed, epoch), so a
resumed run trains on the rows it would have.
"""
from __future__ import annotations

from torch.utils.data import Sampler

from engine.data import mixture


class MixtureSampler(Sampler):
    def __init__(self, plan: dict, keys=None):
        self.groups, self.per_source = plan["groups"], plan["per_source"]
        self.seed, self.order, self.curriculum = plan["seed"], plan["order"], plan["curriculum_epochs"]
        self.keys = keys
        self.epoch = 0
        self.size = sum(len(g) for g in self.groups)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def indices(self, epoch: int):
        keys = self.keys if self.order != "shuffle" else None
        return mixture.epoch_indices(self.groups, self.per_source, self.seed, epoch, keys, self.curriculum)

    def __iter__(self):
        return iter(self.indices(self.epoch).tolist())

    def __len__(self) -> int:
        return sum(self.per_source)


def install(trainer, plan: dict, keys=None) -> MixtureSampler:
    """The trainer draws its training rows through a MixtureSampler from now on."""
    sampler = MixtureSampler(plan, keys)

    def get_train_sampler(train_dataset=None):
        ds = train_dataset if train_dataset is not None else trainer.train_dataset
        if ds is not None and len(ds) != sampler.size:
            raise RuntimeError(f"the trainer's dataset holds {len(ds)} rows, the mixture plans for {sampler.size}: "
                               "the trainer changed the rows (data.order / mixing cannot follow)")
        return sampler

    trainer._get_train_sampler = get_train_sampler
    return sampler
