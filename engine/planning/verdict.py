"""The verdict for the hyperparameters pane: fits / tight / does not fit, and the one change that makes it fit.

Light module (no torch): `verdict(cfg, free_bytes, gpu=...)` costs a few estimates, each well under a
millisecond after the model's config.json is cached, so the TUI can call it on every edit.
"""
from __future__ import annotations

import math

from engine.config import Config
from engine.planning.estimate import FIT, GIB, TIGHT, Shape, estimate, model_shape, plan
from engine.system import gpus as gpumod


def _candidates(cfg: Config, est: dict):
    """Single changes that save memory, least harmful to the result first: (why, {key: value})."""
    t, d = cfg.training, cfg.data
    if not est["gradient_checkpointing"]:
        yield "recompute activations (about 30% slower)", {"training.gradient_checkpointing": "true"}
    if est["kind"] == "full" and est["optimizer"] not in ("adamw_8bit", "paged_adamw_8bit") and est["device"] == "cuda":
        yield "8-bit AdamW states (2 instead of 8 bytes a parameter)", {"training.optimizer": "paged_adamw_8bit"}
    b, eff = t.batch_size, t.batch_size * t.grad_accum
    for nb in sorted({b // 2, b // 4, b // 8, 1} - {0, b}, reverse=True):
        yield (f"smaller micro-batches, same effective batch {eff}",
               {"training.batch_size": nb, "training.grad_accum": math.ceil(eff / nb)})
    if est["kind"] == "full":
        extra = {} if cfg.model.dtype == "auto" else {"model.dtype": "auto"}  # 16-bit frozen weights
        yield "train LoRA adapters instead of every weight", {"adapter.kind": "lora", **extra}
    elif est["kind"] == "lora" and est["device"] == "cuda":
        yield "QLoRA: 4-bit base weights", {"model.quantization": "4bit"}
    for nl in (d.max_length // 2, d.max_length // 4):
        if nl >= 64:
            yield "shorter sequences (longer rows get truncated)", {"data.max_length": nl}


def _resolved_after(resolved: dict | None, changed: Config, gpu) -> dict | None:
    """The engine's resolved values for a changed config: same device and precision, the rest re-planned."""
    if not resolved:
        return None
    pinned = changed.with_values({"hardware.device": resolved["device"], "training.precision": resolved["precision"]})
    p = plan(pinned, gpu)
    if p["gradient_checkpointing"] is None:
        p["gradient_checkpointing"] = resolved.get("gradient_checkpointing", False)
    return {**resolved, **p}


def verdict(cfg: Config, free_bytes: int | None = None, *, gpu: gpumod.Gpu | str | None = None,
            resolved: dict | None = None, shape: Shape | None = None, tokens_per_row: float | None = None,
            rows: int | None = None) -> dict:
    """fits / tight / does_not_fit for `cfg` against `free_bytes` (default: all of the named GPU's memory),
    with the one change that makes it fit. Light: the TUI can call it on every edit."""
    gpu = gpumod.find_gpu(gpu) if isinstance(gpu, str) else gpu
    shape = shape or model_shape(cfg.model.name_or_path)
    kw = dict(gpu=gpu, shape=shape, tokens_per_row=tokens_per_row, rows=rows)
    est = estimate(cfg, resolved=resolved, free_bytes=free_bytes, **kw)
    if free_bytes is None:
        if est["device"] == "cuda" and gpu:
            free_bytes = gpu.memory
        elif est["device"] == "cpu":
            import psutil

            free_bytes = psutil.virtual_memory().available
    out = {"estimate": est, "peak_bytes": est["peak_bytes"], "free_bytes": free_bytes, "fix": None}
    if not free_bytes:
        return {**out, "verdict": "unknown", "message": "no GPU named or visible: set hardware.gpu (e.g. H100)"}
    ratio = est["peak_bytes"] / free_bytes
    out["verdict"] = "fits" if ratio <= FIT else "tight" if ratio <= TIGHT else "does_not_fit"
    out["ratio"] = round(ratio, 3)
    if out["verdict"] != "fits":
        fallback = None
        for why, changes in _candidates(cfg, est):
            changed = cfg.with_values(changes)
            new = estimate(changed, resolved=_resolved_after(resolved, changed, gpu), free_bytes=free_bytes, **kw)
            r = new["peak_bytes"] / free_bytes
            fix = {"set": changes, "why": why, "peak_bytes": new["peak_bytes"], "ratio": round(r, 3),
                   "text": " ".join(f"--set {k}={v}" for k, v in changes.items())}
            if r <= FIT:
                out["fix"] = fix
                break
            if r <= TIGHT and fallback is None:
                fallback = fix
        out["fix"] = out["fix"] or fallback
    gib = lambda b: f"{b / GIB:.1f} GiB"  # noqa: E731
    msg = f"{out['verdict'].replace('_', ' ')}: {gib(est['peak_bytes'])} predicted of {gib(free_bytes)} free"
    if out["fix"]:
        msg += f"; to fit: {out['fix']['text']} ({out['fix']['why']}, {gib(out['fix']['peak_bytes'])})"
    elif out["verdict"] != "fits":
        msg += "; no single change makes it fit: use a smaller model or a larger GPU"
    out["message"] = msg
    return out


def target(cfg: Config, name: str | None = None) -> tuple[gpumod.Gpu | None, int | None, str]:
    """(GPU spec or None, free bytes or None, where from) for a config: `name`, else hardware.gpu, else the
    visible GPU (NVML, ~50 ms), else the CPU. A named GPU that is not here counts all its memory free.
    Raises ValueError for a name the table does not know."""
    wanted = name or (cfg.hardware.gpu if cfg.hardware.gpu != "auto" else None)
    if cfg.hardware.device == "cpu" and not name:
        return None, None, "cpu (hardware.device)"
    seen = gpumod.visible_gpu()
    if wanted:
        gpu = gpumod.find_gpu(wanted)
        if gpu is None:
            raise ValueError(f"unknown GPU {wanted!r}; known: {', '.join(gpumod.gpu_names())}")
        if seen and gpumod.find_gpu(seen["name"]) == gpu and seen.get("mem_total"):
            return gpu, seen["mem_total"] - (seen.get("mem_used") or 0), f"{seen['name']} (visible)"
        return gpu, None, f"{gpu.key} (named, not present: all its memory counted free)"
    if seen:
        gpu = gpumod.find_gpu(seen["name"])
        free = seen["mem_total"] - (seen.get("mem_used") or 0) if seen.get("mem_total") else None
        return gpu, free, f"{seen['name']} (visible)" + ("" if gpu else ": not in the FLOP/s table, no step time")
    return None, None, "cpu (no GPU visible; name one with --gpu or hardware.gpu)"


def for_target(cfg: Config, where: str) -> dict:
    """The config as the engine would run it there: hardware.device auto becomes cuda for a GPU target."""
    if not where.startswith("cpu") and cfg.hardware.device == "auto":
        return cfg.with_values({"hardware.device": "cuda"})
    return cfg


def check(cfg: Config, free_bytes: int | None = None, *, gpu: str | None = None,
          tokens_per_row: float | None = None, rows: int | None = None) -> dict:
    """For the hyperparameters pane: the verdict for a validated config on its target GPU, in one call.

    Picks the GPU like `tunebench estimate` (hardware.gpu, else the visible one, else the CPU); `free_bytes`
    overrides the free memory (e.g. the GPU the user picked in the pane). Returns verdict()'s dict plus
    "target" (where) and, for an unreadable model or unknown GPU name, {"verdict": "unknown", "message"}.
    No torch: safe to call from the TUI process on every edit (debounce it; NVML costs ~50 ms a call).
    """
    from engine.planning.estimate import EstimateError

    try:
        spec, free, where = target(cfg, gpu)
        out = verdict(for_target(cfg, where), free_bytes if free_bytes is not None else free, gpu=spec,
                      tokens_per_row=tokens_per_row, rows=rows)
    except (EstimateError, ValueError) as e:
        return {"verdict": "unknown", "message": str(e), "fix": None, "estimate": None, "target": None}
    return {**out, "target": where}
