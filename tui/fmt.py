"""How the panes print durations, byte counts, a progress bar and a run's config line."""
from __future__ import annotations

import math
from pathlib import Path

from engine.config import Config


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-"
    seconds = int(seconds)
    d, rem = divmod(seconds, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    return (f"{d}d " if d else "") + (f"{h}:{m:02d}:{s:02d}" if h or d else f"{m}:{s:02d}")


def fmt_bytes(n) -> str:
    if n is None:
        return "N/A"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def config_line(cfg: Config | None, status: dict) -> str:
    """The run's config at a glance: method, adapter, model, data, schedule, precision."""
    if cfg is None:
        return "config: not readable"
    m, a, d, t = cfg.model, cfg.adapter, cfg.data, cfg.training
    res = status.get("resolved") or {}
    adapter = f"{a.kind} r={a.r} α={a.alpha}" if a.kind in ("lora", "dora") else a.kind
    if m.quantization != "none":
        adapter += f" on {m.quantization}"
    steps = t.max_steps if t.max_steps > 0 else f"{t.epochs} epoch(s)"
    return (f"{cfg.method} · {adapter} · model {Path(m.name_or_path or '?').name} · "
            f"data {Path(str(d.train or '?')).name} (max_len {d.max_length}) · "
            f"lr {t.learning_rate} {t.lr_scheduler} warmup {t.warmup_steps} · "
            f"batch {t.batch_size}×{t.grad_accum} · steps {steps} · "
            f"{res.get('precision', t.precision)} on {res.get('device', '?')}")


def progress_bar(frac: float, width: int = 24) -> str:
    frac = max(0.0, min(1.0, frac))
    full = frac * width
    n = int(full)
    return "━" * n + ("╸" if full - n >= 0.5 and n < width else "") + "─" * (width - n - (1 if full - n >= 0.5 and n < width else 0))
