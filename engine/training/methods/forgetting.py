"""Forgetting watch: the loss on `data.general_eval` (general text) tracked beside the task's eval loss.

At the start (step 0, the base model's figure) and at every evaluation it computes the mean token loss on
up to MAX_ROWS general rows and adds it to the evaluation as `general_loss`, so the monitor shows general
ability falling while the task improves. Without task eval data it evaluates on the eval_steps cadence
(and at the last step) on its own. Cost: one forward pass over the general rows per evaluation.
"""
from __future__ import annotations

from transformers import TrainerCallback

from engine.config import Config

MAX_ROWS = 256
BATCH = 8


def render(row: dict, tok) -> str:
    """A row of any SFT shape as the text the model reads."""
    if "text" in row:
        return row["text"]
    if "messages" in row:
        if tok.chat_template:
            return tok.apply_chat_template(row["messages"], tokenize=False)
        return "\n".join(str(m.get("content", "")) for m in row["messages"])
    prompt, completion = row.get("prompt", ""), row.get("completion", "")
    if isinstance(prompt, list) or isinstance(completion, list):
        return render({"messages": (prompt if isinstance(prompt, list) else []) +
                       (completion if isinstance(completion, list) else [])}, tok)
    return f"{prompt}{completion}"


def general_texts(cfg: Config, tok) -> list[str]:
    from engine.data.prepare import prepare_sft

    rows, _, _ = prepare_sft(cfg.replace(data={"train": cfg.data.general_eval, "eval": None, "eval_fraction": 0.0}))
    return [render(r, tok) for r in rows[:MAX_ROWS]]


class ForgettingWatch(TrainerCallback):
    def __init__(self, texts: list[str], tok, cfg: Config, events, has_eval: bool):
        self.texts, self.tok, self.events, self.has_eval = texts, tok, events, has_eval
        self.max_length = cfg.data.max_length
        self.eval_steps = cfg.training.eval_steps
        self.model = None
        self.last_step = -1

    def loss(self) -> float:
        import torch

        model = self.model
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        total = count = 0.0
        side, self.tok.padding_side = self.tok.padding_side, "right"  # grpo/rloo pad left for generation
        with torch.no_grad():
            for i in range(0, len(self.texts), BATCH):
                enc = self.tok(self.texts[i:i + BATCH], truncation=True, max_length=self.max_length, padding=True,
                               return_tensors="pt").to(device)
                labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
                out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=labels)
                n = int((labels[:, 1:] != -100).sum())  # the loss averages over shifted target tokens
                total += float(out.loss) * n
                count += n
        model.train(was_training)
        self.tok.padding_side = side
        return total / max(count, 1)

    def on_train_begin(self, args, state, control, model=None, **kw):
        self.model = self.model or model
        if not args.eval_on_start:  # else the trainer's own first evaluation carries it (on_evaluate below)
            self.events.write("eval", step=state.global_step, general_loss=self.loss())

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        if metrics is not None:  # the RunCallback, after this one, writes it into the eval event
            metrics["eval_general_loss"] = self.loss()
            self.last_step = state.global_step

    def on_step_end(self, args, state, control, **kw):
        step = state.global_step
        due = (self.eval_steps and step % self.eval_steps == 0) or step >= state.max_steps
        if not self.has_eval and due and step != self.last_step:
            self.last_step = step
            self.events.write("eval", step=step, general_loss=self.loss())


def watch(trainer, cfg: Config, run_callback) -> None:
    if not cfg.data.general_eval:
        return
    tok = trainer.processing_class
    texts = general_texts(cfg, tok)
    cb = ForgettingWatch(texts, tok, cfg, run_callback.events, bool(run_callback.job.get("eval_rows")))
    cb.model = trainer.model
    callbacks = trainer.callback_handler.callbacks
    callbacks.insert(callbacks.index(run_callback), cb)  # before the RunCallback, which writes the eval event
