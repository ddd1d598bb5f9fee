"""data.order easy_first: each training row scored by the base model's mean token loss, before training.

Heavy (torch). One no-grad pass of the model the trainer holds, before train() (so the base weights: an adapter
is switched off while scoring, and a resumed run builds its trainer from the base too) over the prepared rows:
a row's score is the mean cross-entropy of its trained tokens (labels != -100, shifted as the causal-LM loss
shifts them), the loss the run would start from on that row. The curriculum (engine.data.mixture) orders by it,
ascending (easy first). Cost: one forward pass over every prepared row, batched, at the run's dtype, before the
first step; the scores are kept in the cache (engine.data.cache) under the prepared data's keys, the model's
identity and these settings, so a resume or a second run on the same data and model reads them back.
"""
from __future__ import annotations

import time
from pathlib import Path

from engine.config import Config
from engine.data import cache

VERSION = 1  # of the score (its definition, its file): a change makes every old entry a miss
BATCH = 16  # rows a forward pass; the longest row of a batch sets its width (rows are padded to it)
PROGRESS_EVERY = 1.0  # seconds between `data` events while scoring


def model_identity(cfg: Config) -> dict:
    """The base model as far as its scores go: its path (or hub id and revision) and, for a local directory,
    each weight/config file's name, size and modification time (a retrained base in place is a new model)."""
    p = Path(cfg.model.name_or_path).expanduser()
    files = []
    if p.is_dir():
        p = p.resolve()
        for f in sorted(p.iterdir()):
            if f.suffix in (".safetensors", ".bin", ".json", ".model", ".pt"):
                st = f.stat()
                files.append([f.name, st.st_size, st.st_mtime_ns])
    m = cfg.model
    return {"model": str(p), "files": files, "revision": getattr(m, "revision", None), "dtype": m.dtype,
            "quantization": m.quantization}


def score_key(prepared_keys: list[str], cfg: Config, resolved: dict) -> str:
    return cache.make_key({"score": VERSION, "prepared": prepared_keys, "model": model_identity(cfg),
                           "precision": resolved.get("precision"), "batch": BATCH})


def mean_token_losses(model, ds, progress=None, should_stop=None):
    """One float per row of `ds` ({input_ids, labels}): the mean loss of its trained tokens (inf when none)."""
    import contextlib

    import numpy as np
    import torch

    n = len(ds)
    out = np.full(n, np.inf)
    device = next(model.parameters()).device
    off = model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()
    was_training = model.training
    model.eval()
    t0 = last = time.monotonic()
    if progress:
        progress(phase="score", rows_done=0, rows_total=n, rows_per_s=0, elapsed_s=0.0)
    try:
        with off, torch.no_grad():
            for start in range(0, n, BATCH):
                if should_stop and should_stop():
                    raise KeyboardInterrupt("stopped while scoring the rows (data.order easy_first)")
                batch = ds[start:start + BATCH]
                width = max(len(x) for x in batch["input_ids"])
                ids = torch.zeros(len(batch["input_ids"]), width, dtype=torch.long)
                labels = torch.full_like(ids, -100)
                mask = torch.zeros_like(ids)
                for i, (x, y) in enumerate(zip(batch["input_ids"], batch["labels"])):
                    ids[i, :len(x)] = torch.as_tensor(x)
                    labels[i, :len(y)] = torch.as_tensor(y)
                    mask[i, :len(x)] = 1
                ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
                logits = model(input_ids=ids, attention_mask=mask).logits.float()
                target = labels[:, 1:]
                nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), target, ignore_index=-100,
                                                        reduction="none")
                counted = (target != -100).sum(1)
                # one .cpu() a batch: a CPU-GPU sync, once per BATCH rows
                mean = (nll.sum(1) / counted.clamp(min=1)).masked_fill(counted == 0, float("inf")).cpu().numpy()
                out[start:start + len(mean)] = mean
                now = time.monotonic()
                if progress and now - last >= PROGRESS_EVERY:
                    last = now
                    done = start + len(mean)
                    progress(phase="score", rows_done=done, rows_total=n, rows_per_s=round(done / (now - t0), 1),
                             elapsed_s=round(now - t0, 1))
    finally:
        model.train(was_training)
    return out


def scores(trainer, rows, prepared_keys: list[str] | None, cfg: Config, resolved: dict,
           progress=None, should_stop=None) -> tuple:
    """(scores of every prepared train row, in file order; what the run records about them). From the cache
    when an entry exists (and data.cache is on), else computed now over rows() (a dataset of {input_ids, labels}:
    every prepared train row) and kept there."""
    import numpy as np

    t0 = time.monotonic()
    # an uncached part (a hub id, data.cache false) has no key: its rows, and so its scores, are not kept
    key = score_key(prepared_keys, cfg, resolved) if prepared_keys and all(prepared_keys) and cfg.data.cache else None
    if key:
        entry, found = cache.lookup(key)
        if entry is not None:
            values = np.fromfile(entry / "scores.f64", dtype=np.float64)
            return values, _record(values, True, time.monotonic() - t0)
        if found and progress:
            progress(phase="cache", note=f"the cached row scores were damaged ({found}); scoring again")
    values = mean_token_losses(trainer.model, rows(), progress, should_stop)
    if key:
        tmp = cache.staging(key)
        (tmp / "scores.f64").write_bytes(values.astype(np.float64).tobytes())
        cache.publish(tmp, key, {"files": [{"name": "scores.f64", "bytes": values.size * 8}], "rows": int(values.size),
                                 "model": cfg.model.name_or_path})
    return values, _record(values, False, time.monotonic() - t0)


def _record(values, cached: bool, seconds: float) -> dict:
    import numpy as np

    finite = values[np.isfinite(values)]
    q = (lambda p: round(float(np.quantile(finite, p)), 4)) if finite.size else (lambda p: None)
    return {"scored": "base model mean token loss", "rows": int(values.size), "cached": cached,
            "seconds": round(seconds, 2), "min": q(0), "median": q(0.5), "max": q(1)}


def answer_rows(ds, max_length: int):
    """dpo/kto rows as TRL tokenised them, as {input_ids, labels}: the prompt, then the answer that trains towards
    (dpo: chosen; kto: the completion), labels on the answer only, cut to max_length from the start (TRL's
    keep_start); rows in the dataset's order."""
    from datasets import Dataset

    answer = "chosen_ids" if "chosen_ids" in ds.column_names else "completion_ids"
    cols = ds.select_columns(["prompt_ids", answer]).with_format(None)
    ids, labels = [], []
    for p, a in zip(cols["prompt_ids"], cols[answer]):
        ids.append((p + a)[:max_length])
        labels.append(([-100] * len(p) + a)[:max_length])
    return Dataset.from_dict({"input_ids": ids, "labels": labels})


def content_key(ds) -> str:
    """A hash of a tokenised dataset's content (every column's Arrow buffers, in the dataset's row order): the
    rows dpo/kto score are tokenised by TRL in memory and have no prepared-data key of their own."""
    import hashlib

    h = hashlib.sha256()
    table = ds.with_format("arrow")[:]
    for name in sorted(table.column_names):
        h.update(name.encode())
        for chunk in table.column(name).chunks:
            for buf in chunk.buffers():
                if buf is not None:
                    h.update(buf)
    return h.hexdigest()[:32]


def pair_scores(trainer, cfg: Config, resolved: dict, progress=None, should_stop=None):
    """easy_first for dpo/kto: scores() over answer_rows of the trainer's tokenised training rows, cached under
    their content hash (with the model's identity and the settings)."""
    rows = answer_rows(trainer.train_dataset, cfg.data.max_length)
    return scores(trainer, lambda: rows, [content_key(rows)], cfg, resolved, progress, should_stop)
