"""Train/eval rows in a method's shape from the data layer's `prepare(cfg)`, with its report kept in the job.

Shapes (engine/data/convert.py): dpo/reward {"prompt", "chosen", "rejected"}, kto {"prompt", "completion",
"label"}, grpo/rloo {"prompt", other columns}, classification {"text", "label": int} with info["labels"].
"""
from __future__ import annotations

from engine.config import Config
from engine.data.prepare import prepare


def take_rows(cfg: Config, job: dict, tokenizer=None) -> tuple[list[dict], list[dict], dict]:
    """prepare(cfg), recording the data report in the engine's job (and its warnings as notes for the events).
    A mixture's or data.order's sampler plan goes to job["sampling"] (install_sampler puts it in the trainer)."""
    from engine.data import mixrows

    # data mixing or data.order: the sources one by one, and the sampler's plan
    train, evals, info = prepare(cfg, tokenizer, mixrows.prepare_pairs if mixrows.applies(cfg) else None)
    job["sampling"] = info.pop("sampling", None)
    job.update({k: v for k, v in info.items() if k != "warnings"}, eval_rows=len(evals))
    job.setdefault("notes", []).extend(info.get("warnings") or [])
    return train, evals, info


def install_sampler(trainer, job: dict, repeat: dict | None = None, cfg: Config | None = None,
                    resolved: dict | None = None, callbacks: list | None = None):
    """The mixture / curriculum sampler in the built trainer, when the data asked for one (None otherwise).
    Length keys are the tokens of each row as the trainer tokenised it (engine.training.sampling); easy_first
    keys (dpo, kto: cfg, resolved and the callbacks needed) the base model's loss on each row's answer."""
    plan = job.get("sampling")
    if not plan:
        return None
    from engine.training import sampling

    keys = plan["keys"]
    if plan["order"] == "length":
        keys = sampling.token_lengths(trainer.train_dataset, trainer.processing_class)
    elif plan["order"] == "easy_first":
        from engine.training import scoring
        from engine.training.methods.sft import reporter

        progress, should_stop = reporter(callbacks or [])
        keys, job["scoring"] = scoring.pair_scores(trainer, cfg, resolved, progress, should_stop)
        if progress:
            progress(phase="scored", **job["scoring"])
    return sampling.install(trainer, plan, keys, repeat)
