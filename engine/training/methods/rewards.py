"""Rewards for grpo/rloo: Python reward functions from a file, a reward model directory, and sample events.

A reward file is ordinary Python: `def reward(completions, **columns) -> list[float]`, called by TRL with
the batch's `prompts`, `completions` (strings for plain-text prompts, lists of messages for chat prompts),
`completion_ids` and every other column of the data rows. `rl.reward_functions` names the ones to use.
"""
from __future__ import annotations

import functools
import importlib.util
import json
import math
from pathlib import Path

from engine.config import Config


def load_reward_functions(path: str, names) -> list:
    """Import the reward file and return the named functions, each wrapped to check what it returns."""
    p = Path(path)
    spec = importlib.util.spec_from_file_location(f"tunebench_rewards_{abs(hash(str(p.resolve())))}", p)
    if spec is None or spec.loader is None:
        raise ValueError(f"rl.reward_file: {p} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)  # runs the user's file: it is their code, as trust_remote_code is
    except Exception as e:
        raise ValueError(f"rl.reward_file: {p} failed to import: {type(e).__name__}: {e}") from e
    names = [names] if isinstance(names, str) else list(names)
    funcs = []
    for name in names:
        fn = getattr(module, name, None)
        if not callable(fn):
            found = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
            raise ValueError(f"rl.reward_functions: {p} defines no function {name!r} (it defines: {', '.join(found) or 'none'})")
        funcs.append(_checked(fn, p))
    return funcs


def _checked(fn, path: Path):
    @functools.wraps(fn)
    def wrapper(*args, completions=None, **kw):
        out = fn(*args, completions=completions, **kw)
        try:
            out = [None if v is None else float(v) for v in out]
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {fn.__name__} must return a list of numbers (or None), got {out!r:.200}") from e
        if len(out) != len(completions):
            raise ValueError(f"{path}: {fn.__name__} returned {len(out)} rewards for {len(completions)} completions")
        return out

    return wrapper


def load_reward_model(path: str, dtype="float32"):
    """(model, tokenizer) from a reward model directory: a full model or base + adapter (a tunebench checkpoint)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    p = Path(path)
    adapter = p / "adapter_config.json"
    if adapter.exists():
        from peft import PeftModel

        base_path = json.loads(adapter.read_text())["base_model_name_or_path"]
        base = AutoModelForSequenceClassification.from_pretrained(base_path, num_labels=1, dtype=getattr(torch, dtype))
        model = PeftModel.from_pretrained(base, p).merge_and_unload()
    else:
        model = AutoModelForSequenceClassification.from_pretrained(p, num_labels=1, dtype=getattr(torch, dtype),
                                                                   ignore_mismatched_sizes=True)
    tok_dir = p if (p / "tokenizer_config.json").exists() else model.config._name_or_path
    tok = AutoTokenizer.from_pretrained(tok_dir)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    model.config.pad_token_id = tok.pad_token_id
    model.eval()
    return model, tok


def reward_sources(cfg: Config) -> tuple[list, list]:
    """(reward_funcs, reward_processing_classes) for TRL's GRPO/RLOO trainers from the `rl` section."""
    rl = cfg.rl
    funcs, classes = [], []
    if rl.reward_model:
        model, tok = load_reward_model(rl.reward_model)
        funcs.append(model)
        classes.append(tok)
    if rl.reward_file:
        for fn in load_reward_functions(rl.reward_file, rl.reward_functions):
            funcs.append(fn)
            classes.append(None)
    return funcs, classes


def _text(x) -> str:
    if isinstance(x, list):  # chat messages
        return "\n".join(f"{m.get('role')}: {m.get('content')}" for m in x if isinstance(m, dict))
    return str(x)


def sample_callback(events, n: int):
    """A TrainerCallback writing up to `n` of the latest completions with their rewards as `sample` events."""
    from transformers import TrainerCallback

    class Samples(TrainerCallback):
        trainer = None  # set after the trainer exists: TRL keeps the last generation batch in trainer._logs

        def __init__(self):
            self.done_step = -1

        def on_log(self, args, state, control, logs=None, **kw):
            logs_ = getattr(self.trainer, "_logs", None)
            if not n or logs_ is None or state.global_step == self.done_step or "loss" not in (logs or {}):
                return
            self.done_step = state.global_step
            prompts, comps = list(logs_["prompt"]), list(logs_["completion"])
            rewards = {k: list(v) for k, v in logs_["rewards"].items()}
            adv = list(logs_["advantages"])
            start = max(0, len(comps) - n)
            for i in range(start, len(comps)):
                per = {k: (None if v[i] is None or math.isnan(v[i]) else round(v[i], 4))
                       for k, v in rewards.items() if i < len(v)}
                total = [v for v in per.values() if v is not None]
                events.write("sample", step=state.global_step, prompt=_text(prompts[i])[-2000:],
                             completion=_text(comps[i])[:2000], rewards=per,
                             reward=round(sum(total), 4) if total else None,
                             advantage=round(adv[i], 4) if i < len(adv) else None)

    return Samples()
