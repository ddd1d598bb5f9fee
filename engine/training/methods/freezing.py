"""training.freeze (parameter-name patterns kept frozen) and gradual unfreezing (training.unfreeze_every).

Freezing is applied to the built trainer's model before train() creates the optimizer, so frozen tensors
get no optimizer state. Gradual unfreezing (ULMFiT-style) then thaws the frozen layers from the output
side down, one layer every `unfreeze_every` steps, adding each to the optimizer as a new parameter group
that follows the same learning-rate schedule, at its layer's rate when training.layer_lr_decay is set
(engine.training.layerwise.scale: the one rule for both).
"""
from __future__ import annotations

from fnmatch import fnmatchcase

from transformers import TrainerCallback

from engine.config import Config
from engine.training.layerwise import count_layers, layer_index, scale


def apply(trainer, cfg: Config, events) -> None:
    t = cfg.training
    patterns = t.freeze if isinstance(t.freeze, list) else [t.freeze]
    patterns = [p for p in patterns if p]
    if not patterns:
        return
    named = list(trainer.model.named_parameters())
    frozen = [(n, p) for n, p in named if any(fnmatchcase(n, pat) for pat in patterns)]
    if not frozen:
        sample = ", ".join(n for n, _ in named[:4])
        raise ValueError(f"training.freeze: no parameter name matches {patterns}; names look like: {sample}")
    for _, p in frozen:
        p.requires_grad_(False)
    events.write("log", level="info", message=f"froze {len(frozen)} tensors "
                 f"({sum(p.numel() for _, p in frozen):,} parameters) matching {', '.join(patterns)}")
    if t.unfreeze_every:
        n_layers = count_layers(n for n, _ in named)
        trainer.add_callback(Unfreezer(frozen, t.unfreeze_every, events,
                                       lambda name: scale(name, n_layers, t.layer_lr_decay)))


class Unfreezer(TrainerCallback):
    """Every `every` steps, thaw the next frozen layer (highest index first, embeddings last)."""

    def __init__(self, frozen: list, every: int, events, lr_scale=lambda name: 1.0):
        groups: dict[int, list] = {}
        for name, p in frozen:
            groups.setdefault(layer_index(name), []).append((name, p))
        self.queue = [groups[k] for k in sorted(groups, reverse=True)]  # -1 (embeddings) sorts last
        self.every, self.events, self.lr_scale = every, events, lr_scale

    def on_step_end(self, args, state, control, optimizer=None, lr_scheduler=None, **kw):
        if not self.queue or state.global_step % self.every or optimizer is None:
            return
        group = self.queue.pop(0)
        params = [p for _, p in group]
        for p in params:
            p.requires_grad_(True)
        opt = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the torch optimizer
        first = opt.param_groups[0]
        # where the schedule stands now (lr / initial lr of the first group), applied to this layer's own rate
        factor = first["lr"] / first["initial_lr"] if first.get("initial_lr") else 1.0
        base = args.learning_rate * self.lr_scale(group[0][0])
        opt.add_param_group({"params": params, "lr": base * factor, "initial_lr": base,
                             "weight_decay": args.weight_decay})
        sched = getattr(lr_scheduler, "scheduler", lr_scheduler)
        # LambdaLR keeps one base lr and one lambda per group: the new group follows the first group's schedule.
        if sched is not None and hasattr(sched, "base_lrs"):
            sched.base_lrs.append(base)
            if hasattr(sched, "lr_lambdas"):
                sched.lr_lambdas.append(sched.lr_lambdas[0])
        layer = layer_index(group[0][0])
        self.events.write("log", level="info", message=(
            f"step {state.global_step}: unfroze {'layer ' + str(layer) if layer >= 0 else 'the non-layer tensors'} "
            f"({sum(p.numel() for p in params):,} parameters); {len(self.queue)} frozen group(s) left"))
