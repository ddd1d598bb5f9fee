"""What the Monitor draws besides its step charts: the eval-metric rows and the memory chart's data.

Light (rich only). The eval metrics (rouge1, bleu, exact_match, accuracy, ...: engine.rundir.evalkeys) are a
sparkline and the last value each, one row per metric, or all on one line in the compact layout (80x24), where
the loss and memory charts keep every other row. A sparkline of a bounded metric is drawn on its whole scale
(EM/ROUGE/accuracy 0..1, BLEU/chrF 0..100), so a flat line near the floor reads as a low score, not a trend.
"""
from __future__ import annotations

from rich.text import Text

from engine.rundir.evalkeys import fmt_metric
from tui.fmt import fmt_bytes, fmt_duration
from tui.widgets.charts import ChartData, Trace, fmt_num

BARS = "▁▂▃▄▅▆▇█"
SPARK = 12          # evaluations a sparkline shows (the latest ones)
ROWS = 4            # metric rows at most in the full layout; the rest are named on the last one
HUNDRED = ("bleu", "chrf")
GIB = 1 << 30


def scale(name: str, ys: list[float]) -> tuple[float, float]:
    if name in HUNDRED and all(0 <= y <= 100 for y in ys):
        return 0.0, 100.0
    if all(0 <= y <= 1 for y in ys) and not name.endswith("loss"):
        return 0.0, 1.0
    return min(ys), max(ys)


def sparkline(name: str, ys: list[float]) -> str:
    ys = ys[-SPARK:]
    if not ys:
        return ""
    lo, hi = scale(name, ys)
    span = hi - lo
    return "".join(BARS[0 if span <= 0 else min(len(BARS) - 1, int((y - lo) / span * (len(BARS) - 1) + 0.5))]
                   for y in ys)


def eval_text(metrics: dict[str, list[tuple]], compact: bool, dim=None, strong=None) -> Text:
    """The eval metrics' rows: `name ▁▃▅▆ 0.423 @ step 300` (best so far when the last is not it)."""
    t = Text()
    items = [(k, pts) for k, pts in metrics.items() if pts]
    if compact:
        t.append("eval ", dim)
        for i, (name, pts) in enumerate(items):
            t.append(("  ·  " if i else "") + f"{name} ")
            t.append(fmt_metric(name, pts[-1][1]), strong)
            t.append(f" {sparkline(name, [y for _, y in pts])}")
        return t
    width = max((len(k) for k, _ in items[:ROWS]), default=0)
    for i, (name, pts) in enumerate(items[:ROWS]):
        if i:
            t.append("\n")
        ys = [y for _, y in pts]
        t.append(f"eval {name:<{width}} ", dim)
        t.append(f"{sparkline(name, ys):<{SPARK}} ")
        t.append(fmt_metric(name, ys[-1]), strong)
        t.append(f" @ step {pts[-1][0]:.0f}")
        lower_better = name.endswith("loss")
        best = min(ys) if lower_better else max(ys)
        if best != ys[-1]:
            at = next(x for x, y in pts if y == best)
            t.append(f"   best {fmt_metric(name, best)} @ {at:.0f}", dim)
    if len(items) > ROWS:
        t.append(f"   +{len(items) - ROWS} more: {', '.join(k for k, _ in items[ROWS:])}", dim)
    return t


def memory_view(d, gpus: list, last_t: dict) -> tuple[ChartData, str]:
    """The memory chart's data and the line under it (caller draws both; d is the RunData, locked per trace)."""
    lock = d.lock
    gib = lambda v: f"{v / GIB:.1f}G"  # noqa: E731
    if not gpus:
        traces = [Trace(label, d.tele[k], c, lock=lock, fmt=gib) for k, label, c in
                  (("ram_used", "host RAM", 0), ("rss", "run RSS", 2)) if k in d.tele]
        total = last_t.get("ram_total")
        chart = ChartData("memory, no GPU telemetry", traces, y_range=(0, total) if total else None,
                          y_fmt=gib, x_fmt=fmt_duration, empty="no telemetry yet")
        info = (f"CPU {fmt_num(last_t.get('cpu_percent'))}% · RSS {fmt_bytes(last_t.get('rss'))} · "
                f"RAM {fmt_bytes(last_t.get('ram_used'))} of {fmt_bytes(last_t.get('ram_total'))}" if last_t else "")
        return chart, info
    mine = [i for i in gpus if f"gpu{i}.proc_mem" in d.tele] or gpus
    g = mine[0]
    # Short labels: the legend of a 40-column chart (80x24, side by side) fits on two rows. used: NVML's
    # used memory of the GPU; run: the run process's own; reserved / allocated: torch's allocator.
    traces = [Trace(label, d.tele[k], c, lock=lock, fmt=gib) for k, label, c in (
        (f"gpu{g}.mem_used", "used", 0), (f"gpu{g}.proc_mem", "run", 2),
        ("torch_reserved", "reserved", 5), ("torch_allocated", "allocated", 3)) if k in d.tele]
    total = next((x.get("mem_total") for x in last_t.get("gpus") or [] if x.get("index") == g), None)
    chart = ChartData(f"GPU{g} memory", traces, y_range=(0, total) if total else None, y_fmt=gib,
                      x_fmt=fmt_duration)
    parts = []
    for x in last_t.get("gpus") or []:
        if x.get("index") in mine:
            parts.append(f"GPU{x['index']} {x.get('name') or ''}: {fmt_bytes(x.get('mem_used'))} of "
                         f"{fmt_bytes(x.get('mem_total'))}, run {fmt_bytes(x.get('proc_mem'))}, util "
                         f"{x.get('util', 'N/A')}%, {fmt_num(x.get('power_w'))} W, {x.get('temp_c', 'N/A')}°C")
    peak = last_t.get("torch_peak")
    parts.append(f"torch peak so far {fmt_bytes(peak)}" if peak is not None else "torch peak N/A")
    return chart, "  ·  ".join(parts)
