"""Bounded series, the events follower and the braille chart renderer (no terminal, no model)."""
from __future__ import annotations

import json
import math
import random

from engine.monitor.decoding import Batch, decode, parse_lines
from engine.monitor.history import Follower, RunData, load_run_data
from engine.monitor.series import CAP, Series
from engine.rundir.events import EventWriter
from tui.widgets.charts import ChartData, Marker, Trace, render_chart


def test_series_is_exact_below_cap_and_bounded_above_it():
    s = Series(cap=64)
    pts = [(i, math.sin(i / 7) + i / 100) for i in range(50)]
    for x, y in pts:
        s.add(x, y)
    assert s.points() == pts  # no merge yet: every point as written
    rnd = random.Random(1)
    ys = [rnd.gauss(0, 1) for _ in range(100_000)]
    big = Series(cap=64)
    for i in range(0, len(ys), 999):  # uneven batches, as polls deliver them
        big.extend(list(range(i, min(i + 999, len(ys)))), ys[i:i + 999])
    assert len(big) <= 64 and big.count == len(ys)
    assert big.y_range() == (min(ys), max(ys))  # min/max buckets keep the extremes exactly
    assert math.isclose(sum(big.sm), sum(ys), rel_tol=1e-9) and sum(big.n) == len(ys)
    assert big.x_range() == (0, len(ys) - 1)
    assert all(n == big.width for n in big.n[:-1])  # only the last bucket may be partial


def test_every_bucket_summarises_exactly_the_points_it_spans():
    """Whatever the batch sizes (one point per poll, or a 4 MiB chunk at once), each bucket's min, max,
    sum, count and last value are those of the points between its x0 and x1, and buckets tile the run."""
    rnd = random.Random(7)
    for trial in range(30):
        cap = rnd.choice([4, 5, 16, 64])
        n = rnd.randint(1, 3000)
        ys = [rnd.gauss(0, 1) for _ in range(n)]
        s = Series(cap=cap)
        i = 0
        while i < n:
            j = min(n, i + rnd.choice([1, 2, 3, 7, 50, 999, 5000]))
            s.extend(list(range(i, j)), ys[i:j])
            i = j
        assert len(s) < cap and s.count == n and s.x0[0] == 0 and s.x1[-1] == n - 1
        for b in range(len(s)):
            part = ys[s.x0[b]:s.x1[b] + 1]
            assert (s.lo[b], s.hi[b], s.n[b], s.last[b]) == (min(part), max(part), len(part), part[-1])
            assert math.isclose(s.sm[b], sum(part), rel_tol=1e-9, abs_tol=1e-9)
            if b:
                assert s.x0[b] == s.x1[b - 1] + 1
            if b < len(s) - 1:
                assert s.n[b] == s.width


def test_series_drops_non_finite_values_and_counts_them():
    s = Series()
    s.extend([1, 2, 3, 4], [1.0, float("nan"), float("inf"), 2.0])
    assert s.points() == [(1, 1.0), (4, 2.0)] and s.dropped == 2


def test_parse_lines_reads_nan_that_json_dumps_writes():
    data = (json.dumps({"seq": 0, "kind": "metrics", "step": 1, "loss": float("nan")}) + "\n" + "{not json}\n").encode()
    events, bad = parse_lines(data)
    assert bad == 1 and math.isnan(events[0]["loss"])


def test_follower_tails_by_offset_and_keeps_a_torn_line_back(tmp_path):
    path = tmp_path / "events.jsonl"
    w = EventWriter(path)
    for step in range(1, 4):
        w.write("metrics", step=step, loss=3.0 - step * 0.1)
    f = Follower(path)
    assert f.poll() == 3
    with open(path, "ab") as fh:  # a writer caught mid-line
        fh.write(b'{"seq":3,"time":1,"kind":"metrics","step":4,"lo')
    assert f.poll() == 0
    with open(path, "ab") as fh:
        fh.write(b'ss":2.5}\n')
    assert f.poll() == 1
    w2 = EventWriter(path)
    w2.write("checkpoint", step=4, path="x")
    w2.write("eval", step=4, loss=2.7, runtime=0.5)
    f.poll()
    d = f.data
    assert [p[0] for p in d.train["loss"].points()] == [1, 2, 3, 4]
    assert list(d.checkpoints) == [4] and d.eval["loss"].points() == [(4, 2.7)]
    assert d.step == 4


def test_run_data_takes_telemetry_preference_metrics_and_states(tmp_path):
    path = tmp_path / "events.jsonl"
    w = EventWriter(path)
    w.write("state", state="running", step=0)
    for step in range(1, 6):
        w.write("metrics", step=step, loss=1.0, **{"rewards/chosen": 0.1 * step, "rewards/rejected": -0.1 * step,
                                                   "rewards/margins": 0.2 * step}, num_tokens=100 * step)
        w.write("telemetry", rss=1000 + step, cpu_percent=50.0, ram_used=10, ram_total=100, torch_peak=7 * step,
                gpus=[{"index": 0, "name": "GPU", "mem_used": 40 + step, "mem_total": 80, "util": 90, "power_w": None,
                       "temp_c": 60, "proc_mem": 30}, {"index": 1, "mem_used": 1, "mem_total": 80, "proc_mem": None}])
    w.write("state", state="failed", step=5, error="boom", oom=True)
    d = load_run_data(path, by_tokens=True)
    assert d.pref_keys() == ["rewards/chosen", "rewards/margins", "rewards/rejected"]
    assert d.tele["gpu0.mem_used"].y_range() == (41, 45) and "gpu0.power_w" not in d.tele
    assert "gpu1.proc_mem" not in d.tele and sorted(d.gpu_indices) == [0, 1]
    assert d.tele["torch_peak"].latest() == 35 and d.state == "failed"
    assert d.loss_by_tokens.x_range() == (100, 500)


def test_the_typed_fast_path_and_the_dict_path_build_the_same_series(tmp_path):
    """decode() takes metrics and telemetry as structs; parse_lines() takes every line as a dict (the path of
    chunks with NaN or preference names). Fed the same events, RunData must come out the same."""
    path = tmp_path / "events.jsonl"
    w = EventWriter(path)
    w.write("state", state="running", step=0)
    rnd = random.Random(3)
    for step in range(1, 3001):
        fields = {"loss": rnd.random() * 3, "learning_rate": 1e-4, "num_tokens": 100 * step, "epoch": step / 300}
        if step % 3:  # not every step logs every name
            fields.update(grad_norm=rnd.random(), tokens_per_s=1000 + step)
        w.write("metrics", step=step, **fields)
        if step % 20 == 0:
            w.write("telemetry", rss=step, cpu_percent=50.0, ram_used=None,
                    gpus=[{"index": 0, "mem_used": step, "mem_total": 9000, "util": 50, "power_w": None},
                          {"index": 1, "mem_used": 2 * step, "mem_total": 9000}])
        if step % 500 == 0:
            w.write("eval", step=step, loss=1.0, accuracy=0.5)
            w.write("checkpoint", step=step, path="x")
    w.write("log", level="warning", message="done")
    data = path.read_bytes()
    fast, slow = RunData(by_tokens=True), RunData(by_tokens=True)
    batch = decode(data)
    assert len(batch.metrics) == 3000 and len(batch.telemetry) == 150  # the fast path took them
    fast.ingest(batch)
    slow.ingest(Batch([], set(), None, [], None, *parse_lines(data)))
    assert fast.to_state() == slow.to_state()
    assert fast.train["grad_norm"].count == 2000 and sorted(fast.gpu_indices) == [0, 1]


def test_a_long_history_stays_bounded(tmp_path):
    path = tmp_path / "events.jsonl"
    n = 60_000
    with open(path, "w") as f:
        for i in range(1, n + 1):
            f.write(json.dumps({"seq": i, "time": i * 0.05, "kind": "metrics", "step": i, "loss": 5 / math.sqrt(i),
                                "learning_rate": 1e-4, "grad_norm": 1.0, "tokens_per_s": 1e4}) + "\n")
    follower = Follower(path, chunk=1 << 20)  # many chunks: the same result as one read
    follower.catch_up()
    d = follower.data
    loss = d.train["loss"]
    assert loss.count == n and len(loss) <= CAP and d.step == n
    assert loss.y_range() == (5 / math.sqrt(n), 5.0)
    assert d.nbytes() < 2_000_000


def _plain(data, w=60, h=12):
    return render_chart(data, w, h, lambda name: None).plain.split("\n")


def test_chart_draws_lines_markers_and_eval_points():
    s = Series()
    s.extend(list(range(1, 101)), [5 - i / 25 for i in range(1, 101)])
    data = ChartData("loss", [Trace("train", s, 0, smooth=0.6), Trace("eval", [(50, 3.0), (100, 1.0)], 1, points=True)],
                     [Marker(50, "▲", "ckpt"), Marker(100, "◆", "eval")])
    lines = _plain(data)
    assert len(lines) == 12 and "train 1" in lines[0] and "eval 1" in lines[0]
    axis = lines[-2]
    plot_w = 60 - 9
    assert axis[9 + round(49 / 99 * (plot_w - 1))] == "▲" and axis[9 + plot_w - 1] == "◆"
    body = "\n".join(lines[1:-2])
    assert body.count("●") == 2 and any("\u2800" < ch <= "\u28ff" for ch in body)
    assert lines[-1].strip().startswith("1") and lines[-1].strip().endswith("100")
    # A falling line: its first braille cell sits above its last.
    rows = [i for i, ln in enumerate(lines[1:-2]) if any("\u2800" < ch <= "\u28ff" for ch in ln[9:12])]
    rows_end = [i for i, ln in enumerate(lines[1:-2]) if any("\u2800" < ch <= "\u28ff" for ch in ln[-3:])]
    assert min(rows) < max(rows_end)


def test_chart_without_data_says_so():
    lines = _plain(ChartData("loss", [], empty="waiting for the first logged step"))
    assert any("waiting for the first logged step" in ln for ln in lines) and len(lines) == 12
