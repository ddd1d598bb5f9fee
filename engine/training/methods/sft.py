"""method: sft: supervised fine-tuning with TRL's SFTTrainer (full, LoRA, QLoRA)."""
from __future__ import annotations

from engine.config import Config
from engine.data.prepare import prepare
from engine.training import modeling
from engine.training.methods.common import to_dataset, training_kwargs


def completion_only_plan(tok, rows: list[dict], loss_on: str) -> tuple[dict, list[str], list[dict]]:
    """How the config's `data.loss_on` maps onto TRL options for these rows; returns (sft kwargs, notes, rows)."""
    sample = rows[0]
    notes: list[str] = []
    if loss_on == "all":
        return {"assistant_only_loss": False, "completion_only_loss": False}, notes, rows
    if "prompt" in sample:
        return {"completion_only_loss": True}, notes, rows
    if "text" in sample:
        notes.append("data.loss_on: completion has no meaning for plain text; every token trains")
        return {"completion_only_loss": False}, notes, rows
    # Chat rows: TRL masks assistant turns through {% generation %} markers, patching known templates.
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    template = tok.chat_template or ""
    usable = has_generation_markers(template)
    if not usable:
        try:
            usable = get_training_chat_template(tok) is not None
        except Exception:  # noqa: BLE001 - an unknown template: TRL cannot patch it
            usable = False
    if usable:
        return {"assistant_only_loss": True}, notes, rows
    # Fallback that still trains only the answer: prompt = the turns before the last assistant turn.
    notes.append("the chat template has no {% generation %} markers and TRL cannot patch it: only the last "
                 "assistant turn of each conversation trains (set data.loss_on: all to train every token)")
    split_rows = []
    for r in rows:
        msgs = r["messages"]
        last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
        split_rows.append({"prompt": msgs[:last], "completion": msgs[last:last + 1]})
    return {"completion_only_loss": True}, notes, split_rows


def build(cfg: Config, resolved: dict, job: dict, callbacks: list):
    from trl import SFTConfig, SFTTrainer

    tok = modeling.load_tokenizer(cfg)
    train_rows, eval_rows, info = prepare(cfg, tok)  # with the tokenizer: rows too long to train are invalid too
    job.update(info, eval_rows=len(eval_rows))
    loss_kw, notes, train_rows = completion_only_plan(tok, train_rows, cfg.data.loss_on)
    notes = info.get("warnings", []) + notes
    if eval_rows:
        _, _, eval_rows = completion_only_plan(tok, eval_rows, cfg.data.loss_on)
    job["notes"] = notes
    model = modeling.load_model(cfg, resolved)
    args = SFTConfig(
        **training_kwargs(cfg, resolved, job["trainer_dir"], bool(eval_rows)),
        max_length=cfg.data.max_length,
        packing=cfg.data.packing,
        **loss_kw,
    )
    return SFTTrainer(model=model, args=args, train_dataset=to_dataset(train_rows), eval_dataset=to_dataset(eval_rows),
                      processing_class=tok, peft_config=modeling.peft_config(cfg), callbacks=callbacks)
