"""Durations and byte counts as the panes print them."""
from __future__ import annotations

import math


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
