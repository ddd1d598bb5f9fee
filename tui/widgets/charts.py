"""Line charts drawn with Unicode braille (2x4 dots per cell) in a Textual widget; no plotting library.

A chart draws Traces (a engine.series.Series each, or a list of points) into a BrailleCanvas, with a legend
row, y labels, an axis row carrying markers (eval points, checkpoint saves) and x labels. Drawing cost is
O(buckets + cells): a Series hands over per-column min/max/mean, never its raw points. Colours come from
component classes styled with theme variables (DEFAULT_CSS below), so the chart follows the theme.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

# Braille dot bits by (x, y) inside a cell: x in 0..1, y in 0..3 (top to bottom).
DOTS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
PALETTE = 6  # chart--s0 .. chart--s5


class Rows:
    """Lines of (text, style) runs: what a chart renders to, turned into Strips without Rich's Text layout."""

    def __init__(self):
        self.rows: list[list[tuple[str, object]]] = [[]]

    def append(self, s: str, style=None) -> None:
        for i, part in enumerate(s.split("\n")):
            if i:
                self.rows.append([])
            if part:
                self.rows[-1].append((part, style))

    def append_text(self, other: "Rows") -> None:
        for i, row in enumerate(other.rows):
            if i:
                self.rows.append([])
            self.rows[-1].extend(row)

    @property
    def plain(self) -> str:
        return "\n".join("".join(t for t, _ in row) for row in self.rows)


class BrailleCanvas:
    """A w x h cell grid of braille dots; each cell remembers the style of the last trace drawn in it."""

    def __init__(self, width: int, height: int):
        self.w, self.h = max(1, width), max(1, height)
        self.bits = bytearray(self.w * self.h)
        self.style: list = [None] * (self.w * self.h)
        self.glyphs: dict[int, tuple[str, object]] = {}  # cell -> (character, style) drawn over dots

    @property
    def dot_width(self) -> int:
        return self.w * 2

    @property
    def dot_height(self) -> int:
        return self.h * 4

    def dot(self, x: int, y: int, style=None) -> None:
        """Set the dot at (x, y); y = 0 is the top row of dots. Out of range: ignored (clipped)."""
        if 0 <= x < self.w * 2 and 0 <= y < self.h * 4:
            i = (y >> 2) * self.w + (x >> 1)
            self.bits[i] |= DOTS[x & 1][y & 3]
            self.style[i] = style

    def vline(self, x: int, y0: int, y1: int, style=None) -> None:
        if y0 > y1:
            y0, y1 = y1, y0
        for y in range(max(0, y0), min(self.h * 4 - 1, y1) + 1):
            self.dot(x, y, style)

    def line(self, x0: int, y0: int, x1: int, y1: int, style=None) -> None:
        """Bresenham between two dots."""
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        for _ in range(dx - dy + 1):
            self.dot(x0, y0, style)
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def glyph(self, x: int, y: int, char: str, style=None) -> None:
        """Put a character over the cell holding dot (x, y): point markers such as eval losses."""
        if 0 <= x < self.w * 2 and 0 <= y < self.h * 4:
            self.glyphs[(y >> 2) * self.w + (x >> 1)] = (char, style)

    def row(self, r: int) -> list[tuple[str, object]]:
        out = []
        base = r * self.w
        for c in range(self.w):
            i = base + c
            g = self.glyphs.get(i)
            if g is not None:
                out.append(g)
            elif self.bits[i]:
                out.append((chr(0x2800 + self.bits[i]), self.style[i]))
            else:
                out.append((" ", None))
        return out


@dataclass
class Trace:
    """One line on a chart. `source` is a Series or a list of (x, y); `lock` guards a Series being fed."""

    label: str
    source: object
    color: int = 0              # palette index (component class chart--sN)
    points: bool = False        # draw markers at each point instead of a line (eval losses)
    smooth: float = 0.0         # EMA weight over display columns; the raw line is drawn muted beneath
    lock: object = None
    fmt: Callable[[float], str] | None = None


@dataclass
class Marker:
    """A mark on the axis row at x: checkpoint saves, evaluations."""

    x: float
    char: str = "▲"
    kind: str = "ckpt"          # component class chart--ckpt or chart--eval


@dataclass
class ChartData:
    title: str = ""
    traces: list[Trace] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    x_range: tuple | None = None
    y_range: tuple | None = None     # fixed y range (e.g. 0 .. GPU memory total)
    y_fmt: Callable[[float], str] | None = None
    x_fmt: Callable[[float], str] | None = None
    empty: str = "no data yet"


def fmt_num(v: float) -> str:
    if v is None or not math.isfinite(v):
        return "N/A"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1e9:
        return f"{v / 1e9:.3g}G"
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e4:
        return f"{v / 1e3:.3g}k"
    if a >= 0.01:
        return f"{v:.4g}"
    return f"{v:.2e}"


def _columns(trace: Trace, x_min: float, x_max: float, ncols: int) -> list:
    src = trace.source
    if hasattr(src, "columns"):
        if trace.lock is not None:
            with trace.lock:
                return src.columns(x_min, x_max, ncols)
        return src.columns(x_min, x_max, ncols)
    cols: list = [None] * ncols
    scale = (ncols - 1) / ((x_max - x_min) or 1.0)
    for x, y in src:
        c = int(round((x - x_min) * scale))
        if 0 <= c < ncols and y is not None and math.isfinite(y):
            cur = cols[c]
            cols[c] = (y, y, y, y) if cur is None else (min(cur[0], y), max(cur[1], y), (cur[2] + y) / 2, y)
    return cols


def _ranges(trace: Trace):
    src = trace.source
    if hasattr(src, "x_range"):
        if trace.lock is not None:
            with trace.lock:
                return src.x_range()
        return src.x_range()
    xs = [p[0] for p in src]
    return (min(xs), max(xs)) if xs else None


def ema(values: list, weight: float) -> list:
    out, acc = [], None
    for v in values:
        if v is None:
            out.append(None)
            continue
        acc = v if acc is None else weight * acc + (1 - weight) * v
        out.append(acc)
    return out


class LineChart(Widget):
    """A braille line chart of ChartData; `update_data()` replaces the data and redraws once."""

    COMPONENT_CLASSES = {f"chart--s{i}" for i in range(PALETTE)} | {
        "chart--axis", "chart--title", "chart--muted", "chart--eval", "chart--ckpt", "chart--empty"}
    DEFAULT_CSS = """
    LineChart { height: 12; min-height: 6; }
    LineChart > .chart--s0 { color: $accent; }
    LineChart > .chart--s1 { color: $warning; }
    LineChart > .chart--s2 { color: $success; }
    LineChart > .chart--s3 { color: $primary; }
    LineChart > .chart--s4 { color: $error; }
    LineChart > .chart--s5 { color: $secondary; }
    LineChart > .chart--axis { color: $text-muted; }
    LineChart > .chart--title { color: $text; text-style: bold; }
    LineChart > .chart--muted { color: $text-disabled; }
    LineChart > .chart--eval { color: $warning; text-style: bold; }
    LineChart > .chart--ckpt { color: $success; text-style: bold; }
    LineChart > .chart--empty { color: $text-muted; text-style: italic; }
    """
    Y_LABEL = 8  # characters left of the plot

    def __init__(self, data: ChartData | None = None, **kw):
        super().__init__(**kw)
        self.data = data or ChartData()
        self._strips: list[Strip] | None = None
        self._strips_size = None
        self.renders = 0

    def update_data(self, data: ChartData) -> None:
        self.data = data
        self._strips = None
        self.refresh()

    def _style(self, name: str) -> Style:
        return self.get_component_rich_style(f"chart--{name}", partial=True)

    def render_line(self, y: int) -> Strip:
        """Line API: the chart is drawn once per update into Strips (no Text layout, no wrapping)."""
        size = (self.size.width, self.size.height)
        if self._strips is None or self._strips_size != size:
            self._strips_size = size
            self._strips = self._build(*size)
        if y < len(self._strips):
            return self._strips[y]
        return Strip.blank(size[0], self.rich_style)

    def _build(self, width: int, height: int) -> list[Strip]:
        self.renders += 1
        base = self.rich_style
        rows = render_chart(self.data, width, height, self._style).rows
        return [Strip([Segment(t, base + st if st else base) for t, st in row]).adjust_cell_length(width, base)
                for row in rows]


def wrap_legend(items: list[list[tuple[str, object]]], width: int, max_rows: int) -> Rows:
    """The title and trace entries on as many rows as they need (at most max_rows; the last one is cut),
    so a legend wider than the chart wraps instead of losing its last runs."""
    out = Rows()
    used = 0
    for i, item in enumerate(items):
        n = sum(len(t) for t, _ in item)
        if i and used + n > width and len(out.rows) < max_rows:
            out.rows.append([])
            item = [(t.lstrip(), st) if j == 0 else (t, st) for j, (t, st) in enumerate(item)]
            n = sum(len(t) for t, _ in item)
            used = 0
        for t, st in item:
            if t:
                out.rows[-1].append((t, st))
        used += n
    return out


def render_chart(data: ChartData, width: int, height: int, style_of: Callable[[str], object]) -> Rows:
    """The chart as `height` rows of styled runs; pure function of the data and size (tested directly)."""
    text = Rows()
    if width < 12 or height < 4:
        return text
    plot_w = width - LineChart.Y_LABEL - 1
    items: list[list[tuple[str, object]]] = [[(data.title, style_of("title"))]]  # the legend, wrapped below
    ranges = [r for r in (_ranges(t) for t in data.traces) if r]
    if data.x_range:
        x_min, x_max = data.x_range
    elif ranges:
        x_min, x_max = min(r[0] for r in ranges), max(r[1] for r in ranges)
    else:
        x_min = x_max = None
    per_trace = []
    if x_min is not None:
        if x_max <= x_min:
            x_max = x_min + 1
        for t in data.traces:
            cols = _columns(t, x_min, x_max, plot_w * 2)
            per_trace.append((t, cols))
    for t, cols in per_trace:
        latest = next((c[3] for c in reversed(cols) if c), None)
        items.append([("  ", None), ("● " if t.points else "━ ", style_of(f"s{t.color % PALETTE}")),
                      (f"{t.label} {(t.fmt or fmt_num)(latest)}" if latest is not None else t.label, None)])
    legend = wrap_legend(items, width, max_rows=max(1, height - 6))
    plot_h = height - 2 - len(legend.rows)  # legend rows, axis row, x label row
    canvas = BrailleCanvas(plot_w, plot_h)
    los = [c[0] for _, cols in per_trace for c in cols if c]
    his = [c[1] for _, cols in per_trace for c in cols if c]
    if not los:
        legend = wrap_legend(items[:1], width, 1)
        text.append_text(legend)
        text.append("\n")
        msg = data.empty
        pad = max(0, (width - len(msg)) // 2)
        for r in range(height - 1):
            if r == (height - 1) // 2:
                text.append(" " * pad + msg, style_of("empty"))
            if r < height - 2:
                text.append("\n")
        return text
    y_min, y_max = data.y_range if data.y_range else (min(los), max(his))
    if y_max <= y_min:
        pad = abs(y_max) * 0.05 or 1.0
        y_min, y_max = y_min - pad, y_max + pad
    elif not data.y_range:
        pad = (y_max - y_min) * 0.05
        y_min, y_max = (0.0 if 0 <= y_min < pad else y_min - pad), y_max + pad  # no negative axis for >= 0 data
    ytop = canvas.dot_height - 1
    ypos = lambda v: int(round((y_max - v) / (y_max - y_min) * ytop))  # noqa: E731 - y=0 is the top row

    for t, cols in per_trace:
        color = style_of(f"s{t.color % PALETTE}")
        if t.points:
            for x, c in enumerate(cols):
                if c:
                    canvas.glyph(x, ypos(c[3]), "●", color)
            continue
        raw_style = style_of("muted") if t.smooth else color
        prev = None
        for x, c in enumerate(cols):
            if not c:
                continue
            lo, hi = ypos(c[0]), ypos(c[1])
            canvas.vline(x, lo, hi, raw_style)
            mid = ypos(c[2])
            if prev is not None:
                canvas.line(prev[0], prev[1], x, mid, raw_style)
            prev = (x, mid)
        if t.smooth:
            sm = ema([c[2] if c else None for c in cols], t.smooth)
            prev = None
            for x, v in enumerate(sm):
                if v is None:
                    continue
                y = ypos(v)
                if prev is not None:
                    canvas.line(prev[0], prev[1], x, y, color)
                else:
                    canvas.dot(x, y, color)
                prev = (x, y)

    yfmt = data.y_fmt or fmt_num
    axis = style_of("axis")
    text.append_text(legend)
    text.append("\n")
    label_rows = {0: y_max, plot_h - 1: y_min}
    if plot_h >= 5:
        label_rows[(plot_h - 1) // 2] = (y_max + y_min) / 2
    labels = {r: yfmt(v) for r, v in label_rows.items()}
    if not data.y_fmt and len(set(labels.values())) < len(labels):  # a narrow range: show more digits
        for digits in range(4, 9):
            more = {r: f"{v:.{digits}g}".replace("e-0", "e-") for r, v in label_rows.items()}
            if max(map(len, more.values())) > LineChart.Y_LABEL:
                break
            labels = more
            if len(set(more.values())) == len(more):
                break
    for r in range(plot_h):
        label = labels.get(r, "")
        text.append(f"{label[:LineChart.Y_LABEL]:>{LineChart.Y_LABEL}}┤" if label else " " * LineChart.Y_LABEL + "│",
                    axis)
        run_chars, run_style = [], None
        for ch, st in canvas.row(r):
            if st is not run_style and run_chars:
                text.append("".join(run_chars), run_style)
                run_chars = []
            run_style = st
            run_chars.append(ch)
        if run_chars:
            text.append("".join(run_chars), run_style)
        text.append("\n")
    # Axis row with markers, then x labels at both ends.
    row = ["─"] * plot_w
    kinds: list = [None] * plot_w
    for m in sorted(data.markers, key=lambda m: m.kind != "ckpt"):  # checkpoints win a shared cell
        c = int(round((m.x - x_min) / (x_max - x_min) * (plot_w - 1)))
        if 0 <= c < plot_w and kinds[c] is None:
            row[c], kinds[c] = m.char, m.kind
    text.append(" " * LineChart.Y_LABEL + "└", axis)
    for ch, kind in zip(row, kinds):
        text.append(ch, style_of(kind) if kind else axis)
    text.append("\n")
    xfmt = data.x_fmt or fmt_num
    left, right = xfmt(x_min), xfmt(x_max)
    gap = max(1, plot_w + 1 - len(left) - len(right))
    text.append(" " * LineChart.Y_LABEL + left + " " * gap + right, axis)
    return text
