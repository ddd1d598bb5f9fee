"""Bounded, downsampled metric series: what the monitor's charts draw, whatever the run's length.

Light module (no textual, no torch). Memory and redraw cost stay flat however long a run gets: a Series
keeps at most CAP min/max buckets and merges neighbours pairwise when full, so a 1M-step run costs the
same as a 2k-step one. Points arrive in batches and are bucketed column-wise, so the work per value runs
in C (slices, zip, map(min/max/sum)) rather than in per-point Python. Fed and held by
engine.history (RunData), drawn by tui.widgets.charts.
"""
from __future__ import annotations

import math
from operator import add

CAP = 1024          # buckets per series; a chart is at most a few hundred dot columns wide


class Series:
    """At most CAP buckets of consecutive points; each keeps x range, min, max, sum, count and last y."""

    __slots__ = ("cap", "width", "x0", "x1", "lo", "hi", "sm", "n", "last", "count", "dropped")

    def __init__(self, cap: int = CAP):
        self.cap = cap
        self.width = 1  # points per full bucket; doubles each time the buckets are merged
        self.x0: list = []
        self.x1: list = []
        self.lo: list = []
        self.hi: list = []
        self.sm: list = []
        self.n: list = []
        self.last: list = []
        self.count = 0     # points taken in total
        self.dropped = 0   # non-finite values (NaN/inf loss) left out of the buckets

    def __len__(self) -> int:
        return len(self.x0)

    def add(self, x, y) -> None:
        self.extend([x], [y])

    def extend(self, xs: list, ys: list) -> None:
        """Append points in x order. Cost: O(1) Python steps per call; the per-point work (grouping,
        min/max/sum per bucket) runs in C through zip/map over the slices."""
        total = len(ys)
        if not total:
            return
        s = sum(ys)
        if not math.isfinite(s):  # rare: filter NaN/inf out (a finite sum proves there are none)
            keep = [i for i, y in enumerate(ys) if math.isfinite(y)]
            self.dropped += total - len(keep)
            xs, ys = [xs[i] for i in keep], [ys[i] for i in keep]
            total = len(ys)
            if not total:
                return
        self.count += total
        while len(self.x0) + total // self.width >= self.cap:
            self._merge()  # widen first: a big batch (attaching) is bucketed once, at its final width
        if self.n and self.n[-1] < self.width:  # top up the partial last bucket
            take = min(self.width - self.n[-1], total)
            part = ys[:take]
            self.lo[-1] = min(self.lo[-1], min(part))
            self.hi[-1] = max(self.hi[-1], max(part))
            self.sm[-1] += sum(part)
            self.n[-1] += take
            self.last[-1] = part[-1]
            self.x1[-1] = xs[take - 1]
            if take == total:
                return
            xs, ys = xs[take:], ys[take:]
        w = self.width
        k = len(ys) // w  # full buckets
        full = k * w
        if w == 1:
            self.x0 += xs
            self.x1 += xs
            for col in (self.lo, self.hi, self.sm, self.last):
                col += ys
            self.n += [1] * len(ys)
        else:
            groups = list(zip(*[iter(ys)] * w))  # k tuples of w values (a tail shorter than w is left out)
            self.x0 += xs[0:full:w]
            self.x1 += xs[w - 1:full:w]
            self.lo += map(min, groups)
            self.hi += map(max, groups)
            self.sm += map(sum, groups)
            self.n += [w] * k
            self.last += ys[w - 1:full:w]
            if full < len(ys):  # the tail: one partial bucket, topped up by the next call
                tail = ys[full:]
                self.x0.append(xs[full])
                self.x1.append(xs[-1])
                self.lo.append(min(tail))
                self.hi.append(max(tail))
                self.sm.append(sum(tail))
                self.n.append(len(tail))
                self.last.append(tail[-1])
        while len(self.x0) >= self.cap:
            self._merge()

    def _merge(self) -> None:
        """Halve the bucket count by merging neighbours; only the last bucket may stay partial."""
        odd = len(self.x0) % 2

        def pairs(v, f):
            out = list(map(f, v[0::2], v[1::2]))  # zip stops at the shorter: an odd last bucket is kept below
            if odd:
                out.append(v[-1])
            return out

        self.x0 = self.x0[0::2]
        self.x1 = self.x1[1::2] + (self.x1[-1:] if odd else [])
        self.lo = pairs(self.lo, min)
        self.hi = pairs(self.hi, max)
        self.sm = pairs(self.sm, add)
        self.n = pairs(self.n, add)
        self.last = self.last[1::2] + (self.last[-1:] if odd else [])
        self.width *= 2

    # -- reading ----------------------------------------------------------------------------------
    def latest(self):
        return self.last[-1] if self.last else None

    def x_range(self):
        return (self.x0[0], self.x1[-1]) if self.x0 else None

    def y_range(self):
        return (min(self.lo), max(self.hi)) if self.lo else None

    def points(self) -> list[tuple]:
        """(x, y) of every point; exact while no merge happened (count <= CAP), bucket means after."""
        return [((a + b) / 2 if w > 1 else a, s / w) for a, b, s, w in zip(self.x0, self.x1, self.sm, self.n)]

    def columns(self, x_min: float, x_max: float, ncols: int) -> list:
        """Per display column: None or (lo, hi, mean, last) of the buckets whose x falls in it.

        Cost: O(buckets) (at most CAP), whatever the run's length; the column of each bucket's midpoint
        comes from one comprehension, the merge loop touches only buckets that share a column."""
        half = (ncols - 1) / ((x_max - x_min) or 1.0) / 2
        cols_of = [int((a + b - 2 * x_min) * half + 0.5) for a, b in zip(self.x0, self.x1)]
        lo_, hi_, sm_, n_, last_ = {}, {}, {}, {}, {}
        for i, c in enumerate(cols_of):
            if c in lo_:
                if self.lo[i] < lo_[c]:
                    lo_[c] = self.lo[i]
                if self.hi[i] > hi_[c]:
                    hi_[c] = self.hi[i]
                sm_[c] += self.sm[i]
                n_[c] += self.n[i]
                last_[c] = self.last[i]
            elif 0 <= c < ncols:
                lo_[c], hi_[c], sm_[c], n_[c], last_[c] = self.lo[i], self.hi[i], self.sm[i], self.n[i], self.last[i]
        cols: list = [None] * ncols
        for c in lo_:
            cols[c] = (lo_[c], hi_[c], sm_[c] / n_[c], last_[c])
        return cols

    FIELDS = ("x0", "x1", "lo", "hi", "sm", "n", "last")

    def state(self) -> dict:
        """Plain lists and numbers (for the history snapshot); from_state() gives the same Series back."""
        return {"cap": self.cap, "width": self.width, "count": self.count, "dropped": self.dropped,
                **{f: getattr(self, f) for f in self.FIELDS}}

    @classmethod
    def from_state(cls, st: dict) -> Series:
        s = cls(int(st["cap"]))
        s.width, s.count, s.dropped = int(st["width"]), int(st["count"]), int(st["dropped"])
        cols = [list(st[f]) for f in cls.FIELDS]
        if len({len(c) for c in cols}) != 1 or len(cols[0]) >= s.cap:
            raise ValueError("series columns of unequal length")
        for f, c in zip(cls.FIELDS, cols):
            setattr(s, f, c)
        return s

    def nbytes(self) -> int:
        """Rough memory held (lists of pointers plus float objects), for the bench's accounting."""
        return len(self.x0) * 7 * (8 + 24)


def numeric(xs: list, ys: list) -> tuple[list, list]:
    """Keep the points whose y is a number; the common all-numeric case costs one C-level sum()."""
    try:
        sum(ys)
        if not any(type(y) is bool for y in ys[:1]):
            return xs, ys
    except TypeError:
        pass
    keep = [i for i, y in enumerate(ys) if isinstance(y, (int, float)) and not isinstance(y, bool)]
    return [xs[i] for i in keep], [ys[i] for i in keep]


def present(xs: list, ys: list) -> tuple[list, list]:
    """The points where neither x nor y is None (the fast path's values are numbers or None).
    Cost: two C-level sum()s when nothing is missing, which is every step of a normal run."""
    try:
        sum(xs)
        sum(ys)
        return xs, ys
    except TypeError:
        keep = [i for i, (x, y) in enumerate(zip(xs, ys)) if x is not None and y is not None]
        return [xs[i] for i in keep], [ys[i] for i in keep]
