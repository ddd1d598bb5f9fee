"""Layer-wise learning rates (training.layer_lr_decay) as optimizer parameter groups, for every method.

The top transformer layer, the final norm and the output head train at the full rate; layer i of n trains at
rate x decay^(n-1-i); the embeddings sit below layer 0 (decay^n). Adapters are grouped by the layer they sit
in (a LoRA matrix in layer 3 gets layer 3's rate). Gradual unfreezing (methods/freezing.py) adds its groups
at the same scales, so both features share one rule: `scale`.

The groups reach the trainer through transformers' optimizer-factory hook (`Trainer.optimizer_cls_and_kwargs`
with a callable that is not an Optimizer class): Trainer.create_optimizer calls it with the model it is about
to train (wrapped by PEFT, and by FSDP when that delays the optimizer), so the names are the trained ones.
Every TRL trainer inherits create_optimizer, so one hook serves sft, dpo, kto, reward, grpo, rloo and
classification. Heavy module: torch and transformers are imported inside functions.
"""
from __future__ import annotations

import re

LAYER = re.compile(r"\.(?:layers?|h|blocks?)\.(\d+)\.|\.(\d+)\.")
EMBEDDING = re.compile(r"embed|wte\b|wpe\b")


def layer_index(name: str) -> int:
    """The transformer layer a parameter belongs to; -1 for embeddings and other non-layer tensors."""
    m = LAYER.search(name)
    return int(m.group(1) or m.group(2)) if m else -1


def depth(name: str, n_layers: int) -> int:
    """How many layers below the top this parameter sits: 0 for the top layer, the head and the final norm,
    n_layers for the embeddings (below layer 0)."""
    i = layer_index(name)
    if i >= 0:
        return max(0, n_layers - 1 - i)
    return n_layers if EMBEDDING.search(name) else 0


def scale(name: str, n_layers: int, decay: float) -> float:
    """The factor on the learning rate of parameter `name` (1.0 when decay is 1)."""
    return 1.0 if decay == 1 else decay ** depth(name, n_layers)


def count_layers(names) -> int:
    """Number of transformer layers, from the highest layer index among the parameter names."""
    return max((layer_index(n) for n in names), default=-1) + 1


def schedule(learning_rate: float, n_layers: int, decay: float) -> dict[str, float]:
    """The declared rate at each depth, as recorded in the resolved config: head, layer_{n-1} ... layer_0,
    embeddings."""
    out = {"head": learning_rate}
    for i in range(n_layers - 1, -1, -1):
        out[f"layer_{i}"] = learning_rate * decay ** (n_layers - 1 - i)
    out["embeddings"] = learning_rate * decay ** n_layers
    return out


def model_layers(name_or_path: str, trust_remote_code: bool = False, revision: str | None = None) -> int | None:
    """Layers of a model from its config.json alone (no weights), or None when it cannot be read."""
    from transformers import AutoConfig

    try:
        c = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, revision=revision)
    except (OSError, ValueError):
        return None
    c = getattr(c, "text_config", None) or c  # a multimodal config nests the language model's
    for attr in ("num_hidden_layers", "n_layer", "num_layers"):
        if isinstance(getattr(c, attr, None), int):
            return getattr(c, attr)
    return None


def param_groups(model, learning_rate: float, weight_decay: float, decay_names, decay: float) -> list[dict]:
    """The trainable parameters grouped by (rate, weight decay); each group's `lr` is its scaled rate.

    `decay_names` are the names weight decay applies to (Trainer.get_decay_parameter_names: not biases and
    norms), as transformers' own two groups do."""
    named = list(model.named_parameters())
    n_layers = count_layers(n for n, _ in named)
    decay_names = set(decay_names)
    groups: dict[tuple, dict] = {}
    for name, p in named:
        if not p.requires_grad:
            continue
        s = scale(name, n_layers, decay)
        wd = weight_decay if name in decay_names else 0.0
        g = groups.setdefault((s, wd), {"params": [], "lr": learning_rate * s, "weight_decay": wd,
                                        "lr_scale": s, "names": []})
        g["params"].append(p)
        g["names"].append(name)
    # highest rate first: the first group is the reference other code reads (schedule factor, logged lr)
    return sorted(groups.values(), key=lambda g: (-g["lr_scale"], -g["weight_decay"]))


def attach(trainer, decay: float, events=None) -> None:
    """Make `trainer` build its optimizer with layer-wise groups (no-op when decay is 1); the groups it
    built are logged to `events` when given."""
    if decay == 1:
        return
    from transformers import Trainer

    def factory():
        def build(model, **_):
            cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(trainer.args, model)
            kwargs = {k: v for k, v in kwargs.items() if k not in ("params", "model", "optimizer_dict")}
            lr = kwargs.pop("lr", trainer.args.learning_rate)
            groups = param_groups(model, lr, trainer.args.weight_decay, trainer.get_decay_parameter_names(model),
                                  decay)
            if events is not None:
                by_rate: dict[float, int] = {}
                for g in groups:
                    by_rate[g["lr"]] = by_rate.get(g["lr"], 0) + sum(p.numel() for p in g["params"])
                events.write("log", level="info", message="layer-wise learning rates (decay "
                             f"{decay:g}): " + ", ".join(f"{lr:.3g} x {n:,} params" for lr, n in by_rate.items()))
            for g in groups:
                g.pop("names")  # torch keeps unknown keys in param_groups; names are for tests and logs only
            optimizer = cls(groups, lr=lr, **kwargs)
            if "bitsandbytes" in str(cls) and kwargs.get("optim_bits") == 8:
                keep_embeddings_32bit(model)  # what Trainer.create_optimizer does for its own 8-bit optimizers
            return optimizer

        return build

    trainer.optimizer_cls_and_kwargs = (factory, {})


def keep_embeddings_32bit(model) -> None:
    import bitsandbytes
    from torch import nn

    manager = bitsandbytes.optim.GlobalOptimManager.get_instance()
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            manager.register_module_override(module, "weight", {"optim_bits": 32})
