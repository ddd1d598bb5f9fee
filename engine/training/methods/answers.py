"""eval.metrics for method sft: at each evaluation, greedy answers to the first eval rows, scored against theirs.

The eval rows reach the trainer tokenised (engine.data.pipeline) as training renders them, chat template and
truncation included; a row's reference answer is its last run of trained tokens (the final assistant turn, or
a prompt/completion row's completion) and its prompt is every token before that run, so the model answers the
very prompt it was trained on, not a re-rendering of it. Plain text rows (and data.loss_on: all) mark no answer:
the run says so once and scores nothing.

At each evaluation (scheduled, final, asked for, or while paused: every path calls trainer.evaluate) this
callback, placed before the RunCallback, adds `eval_<metric>` to the metrics the RunCallback writes as the
`eval` event, and writes an `eval_samples` event (a few prompt / reference / answer triples). Its time falls
inside the evaluation, which the RunCallback keeps out of train_wall_s. Cost: eval.max_rows rows x up to
eval.max_new_tokens decoding steps (one forward pass per new token per batch, with the KV cache).

Several ranks: each answers its share of the rows (the same number of batches on every rank, so ZeRO-3/FSDP,
whose generate runs in lock-step with synced_gpus, meets), and the answers are gathered (one all_gather_object).
Heavy module (torch, transformers).
"""
from __future__ import annotations

import time

from transformers import TrainerCallback

from engine.config import Config
from engine.data.encode import IGNORE
from engine.data.formats import KIND
from engine.training.distributed import world_size
from engine.training.textmetrics import text_scores

SAMPLES = 3           # prompt / reference / answer triples written with each evaluation's scores
SAMPLE_CHARS = 300    # each text in them cut to this (the prompt keeps its end: the question is last)


def split_row(input_ids: list[int], labels: list[int]) -> tuple[list[int], list[int]] | None:
    """(prompt ids, reference ids) of a tokenised sft row: the reference is the last run of trained tokens, the
    prompt everything before it. None when the row has no answer to give (no trained token, or all trained)."""
    end = len(labels)
    while end > 0 and labels[end - 1] == IGNORE:
        end -= 1
    start = end
    while start > 0 and labels[start - 1] != IGNORE:
        start -= 1
    if end == 0 or start == 0:  # nothing trains, or everything does (plain text, loss_on all): no prompt/answer
        return None
    return list(input_ids[:start]), list(input_ids[start:end])


def reference_rows(eval_ds, max_rows: int) -> list[tuple[list[int], list[int]]]:
    """The first `max_rows` eval rows that have a reference answer, as (prompt ids, reference ids)."""
    out = []
    if eval_ds is None:
        return out
    for row in eval_ds:  # Arrow rows in order; stops as soon as enough are found (a few rows read, not the set)
        pair = split_row(row["input_ids"], row["labels"])
        if pair is not None:
            out.append(pair)
            if len(out) >= max_rows:
                break
    return out


def left_padded(batch: list[list[int]], pad_id: int):
    """input_ids and attention_mask of `batch`, padded on the left: every prompt ends where generation starts."""
    import torch

    width = max(len(ids) for ids in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, row in enumerate(batch):
        ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row):] = 1
    return ids, mask


def cut_at_stop(ids: list[int], stops: set[int]) -> list[int]:
    for i, t in enumerate(ids):
        if t in stops:
            return ids[:i]
    return ids


class AnswerScorer(TrainerCallback):
    """Generates and scores answers at each evaluation (see the module docstring)."""

    def __init__(self, trainer, cfg: Config, events, rows: list, why_none: str | None):
        self.trainer, self.events = trainer, events
        self.names = list(cfg.eval.metrics)
        self.max_new_tokens = cfg.eval.max_new_tokens
        self.max_rows = cfg.eval.max_rows
        self.batch = max(1, cfg.training.batch_size)
        self.rows, self.why_none = rows, why_none
        self.told = False  # the reason nothing is scored is logged once, not at every evaluation

    def stop_ids(self, tok) -> set[int]:
        """Tokens that end an answer: the tokenizer's and the model's EOS, and every special token a reference ends
        on (a chat template's end-of-turn token, which training taught the model to emit)."""
        stops = {tok.eos_token_id} if tok.eos_token_id is not None else set()
        cfg_eos = getattr(getattr(self.trainer.model, "generation_config", None), "eos_token_id", None)
        stops |= set(cfg_eos if isinstance(cfg_eos, list) else [cfg_eos] if cfg_eos is not None else [])
        special = set(tok.all_special_ids)
        stops |= {ref[-1] for _, ref in self.rows if ref and ref[-1] in special}
        return stops

    def answers(self, rows: list) -> list[str]:
        """Greedy answers to `rows` (prompt ids, reference ids) with the trainer's model, in eval mode."""
        import torch
        from trl.models.utils import unwrap_model_for_generation

        t = self.trainer
        tok = t.processing_class
        stops = self.stop_ids(tok)
        pad = tok.pad_token_id if tok.pad_token_id is not None else next(iter(stops), 0)
        out: list[str] = []
        # Unwrapped from DDP/FSDP/DeepSpeed (ZeRO-3 gathers its parameters), gradient checkpointing off while it
        # generates (it would turn the KV cache off: every new token would recompute the whole prefix).
        # Checkpointing comes back on with the trainer's own kwargs (TRL may have set use_reentrant for PEFT).
        with unwrap_model_for_generation(t.model_wrapped, t.accelerator,
                                         gradient_checkpointing_kwargs=t.args.gradient_checkpointing_kwargs) as model:
            was_training = model.training
            model.eval()
            device = next(model.parameters()).device
            try:
                with torch.no_grad():
                    for i in range(0, len(rows), self.batch):
                        ids, mask = left_padded([p for p, _ in rows[i:i + self.batch]], pad)
                        gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                             max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1,
                                             temperature=None, top_p=None, top_k=None, use_cache=True,
                                             pad_token_id=pad, eos_token_id=sorted(stops) or None)
                        for seq in gen[:, ids.shape[1]:].tolist():  # one device-to-host copy per batch
                            out.append(tok.decode(cut_at_stop(seq, stops), skip_special_tokens=True))
            finally:
                model.train(was_training)
        return out

    def shared(self) -> list[str]:
        """Every row's answer on every rank: each rank answers rows rank, rank+world, ... (its share padded with
        its first row to the same count everywhere, so every rank runs the same number of batches)."""
        n, world = len(self.rows), world_size()
        if world == 1:
            return self.answers(self.rows)
        import torch.distributed as dist

        me = dist.get_rank()
        mine = list(range(me, n, world))
        each = -(-n // world)
        padded = mine + [mine[0] if mine else 0] * (each - len(mine))
        answers = self.answers([self.rows[i] for i in padded])
        gathered: list = [None] * world
        dist.all_gather_object(gathered, list(zip(mine, answers)))  # the padding answers are dropped by zip
        out = [""] * n
        for part in gathered:
            for i, text in part:
                out[i] = text
        return out

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        if metrics is None:
            return
        if not self.rows:
            if not self.told:
                self.told = True
                self.events.write("log", level="warning", message=f"eval.metrics: {self.why_none}; no metric on "
                                  "generated answers is computed")
            return
        t0 = time.perf_counter()
        answers = self.shared()
        tok = self.trainer.processing_class
        refs = [tok.decode(r, skip_special_tokens=True) for _, r in self.rows]
        scores = text_scores(answers, refs, self.names)
        metrics.update({f"eval_{k}": v for k, v in scores.items()})  # the RunCallback writes them in the eval event
        seconds = time.perf_counter() - t0
        samples = [{"prompt": tok.decode(p, skip_special_tokens=False)[-SAMPLE_CHARS:],
                    "reference": refs[i][:SAMPLE_CHARS], "answer": answers[i][:SAMPLE_CHARS]}
                   for i, (p, _) in enumerate(self.rows[:SAMPLES])]
        self.events.write("eval_samples", step=state.global_step, rows=len(answers), max_new_tokens=self.max_new_tokens,
                          seconds=round(seconds, 3), scores=scores, samples=samples)


def why_no_rows(fmt: str | None, loss_on: str) -> str:
    if fmt and KIND.get(fmt) == "text":
        return ("plain text rows have no reference answer to generate against (use prompt/completion, alpaca or "
                "chat rows)")
    if loss_on != "completion":
        return "data.loss_on: all trains every token, so a row's answer cannot be told from its prompt (use completion)"
    return "no eval row has a reference answer"


def watch(trainer, cfg: Config, callbacks: list, eval_ds, fmt: str | None) -> AnswerScorer | None:
    """Install the scorer before the RunCallback when eval.metrics is set and the run has eval data."""
    if not cfg.eval.metrics or eval_ds is None:
        return None
    run_cb = next((c for c in callbacks if hasattr(c, "events") and hasattr(c, "run")), None)
    rows = reference_rows(eval_ds, cfg.eval.max_rows)
    events = run_cb.events if run_cb else _Silent()
    scorer = AnswerScorer(trainer, cfg, events, rows, why_no_rows(fmt, cfg.data.loss_on))
    handler = trainer.callback_handler.callbacks
    handler.insert(handler.index(run_cb) if run_cb in handler else len(handler), scorer)
    return scorer


class _Silent:
    def write(self, kind: str, **fields) -> None:
        return None
