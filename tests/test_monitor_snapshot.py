"""The engine's history snapshot: attaching from it gives what reading every event gives, and a snapshot
that does not belong to the file is ignored."""
from __future__ import annotations

import math
import time

import pytest

from engine.monitor import snapshot
from engine.monitor.history import Follower, RunData, load_run_data
from engine.monitor.snapshotter import Snapshotter
from engine.rundir.events import EventWriter


def write_events(w: EventWriter, start: int, steps: int, pref: bool = False, nan_at: int | None = None) -> None:
    """A run's events as the engine writes them: metrics each step, telemetry every 10, eval every 50,
    a checkpoint every 200; preference metrics and a diverged (NaN) loss when asked."""
    for step in range(start, start + steps):
        loss = float("nan") if step == nan_at else 1 + 4 / math.sqrt(step) + (step % 7) * 0.01
        extra = {"rewards/chosen": step * 0.01, "rewards/margins": 0.5} if pref else {}
        w.write("metrics", step=step, loss=loss, learning_rate=1e-4, grad_norm=0.5 + step % 3, tokens_per_s=900.0,
                num_tokens=64.0 * step, epoch=step / 1000, **extra)
        if step % 10 == 0:
            w.write("telemetry", rss=10**9 + step, cpu_percent=90.0, ram_used=2 * 10**9, torch_peak=None,
                    gpus=[{"index": 0, "mem_used": 4 * 10**9 + step, "mem_total": 8 * 10**9, "util": 97}])
        if step % 50 == 0:
            w.write("eval", step=step, loss=1.5 + 1 / step, runtime=0.1)
        if step % 200 == 0:
            w.write("checkpoint", step=step, path=f"checkpoints/checkpoint-{step}")
    w.write("log", level="warning", message=f"logged after step {start + steps - 1}")


def same(a, b, path="") -> None:
    """Equal structure and values; floats equal to 1e-9 (a bucket topped up after a restore adds its
    points in another order), NaN equal to NaN."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), path
        for k in a:
            same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), (path, a, b)
    else:
        assert a == b, (path, a, b)


def test_attaching_from_the_snapshot_equals_reading_every_event(tmp_path):
    path = tmp_path / "events.jsonl"
    w = EventWriter(path)
    w.write("state", state="running", step=0)
    snap = Snapshotter(path, every=256 << 10)
    start = 1
    for steps, pref, nan_at in [(3000, False, None), (2000, False, 4100), (1500, True, None), (2500, False, None)]:
        write_events(w, start, steps, pref, nan_at)  # fast path, a NaN chunk, preference names: both decoders
        start += steps
        assert snap.maybe_save(256 << 10)
    write_events(w, start, 700)  # after the last snapshot: read from events.jsonl on attach
    w.write("state", state="completed", step=start + 699)
    f = Follower(path, RunData())
    f.catch_up()
    assert 0 < f.restored_offset < path.stat().st_size
    full = load_run_data(path, by_tokens=True, use_snapshot=False)  # the engine keeps loss over tokens too
    same(f.data.to_state(), full.to_state())
    assert f.data.state == "completed" and f.data.step == start + 699 and "rewards/chosen" in f.data.train
    assert f.data.train["loss"].dropped == 1 and list(f.data.checkpoints)[-1] == 9600
    # Following on from a restored history: new events land as they would have.
    write_events(w, start + 700, 300)
    f.poll()
    same(f.data.to_state(), load_run_data(path, by_tokens=True, use_snapshot=False).to_state())


@pytest.mark.parametrize("damage", ["garbage", "other file", "file cut short", "other format"])
def test_a_snapshot_that_does_not_belong_to_the_file_is_ignored(tmp_path, damage):
    path = tmp_path / "events.jsonl"
    w = EventWriter(path)
    write_events(w, 1, 1000)
    snap = Snapshotter(path)
    assert snap.maybe_save(1)
    snap_path = path.with_name(snapshot.NAME)
    if damage == "garbage":
        snap_path.write_bytes(snap_path.read_bytes()[:100])
    elif damage == "other file":  # a run directory's events.jsonl replaced by another run's
        path.unlink()
        write_events(EventWriter(path), 5, 1000)
    elif damage == "file cut short":
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size // 2)
    else:
        doc = snapshot.msgspec.msgpack.decode(snap_path.read_bytes())
        snap_path.write_bytes(snapshot.msgspec.msgpack.encode({**doc, "format": 999}))
    f = Follower(path)
    f.catch_up()
    assert f.restored_offset == 0
    same(f.data.to_state(), load_run_data(path, use_snapshot=False).to_state())


def test_the_engine_thread_snapshots_as_the_run_grows_and_once_at_the_end(tmp_path):
    path = tmp_path / "events.jsonl"
    w = EventWriter(path)
    snap = Snapshotter(path, interval=0.05, every=64 << 10).start()
    write_events(w, 1, 2000)
    end = time.monotonic() + 30
    while snapshot.load(path) is None and time.monotonic() < end:
        time.sleep(0.05)
    assert snapshot.load(path) is not None, "no snapshot while the run grew"
    write_events(w, 2001, 1500)
    snap.close()
    offset, _ = snapshot.load(path)
    assert offset == path.stat().st_size  # the final snapshot covers every event
    stale = path.with_name(f".{snapshot.NAME}.999.abc.tmp")  # left by an engine killed while writing one
    stale.write_bytes(b"half")
    resumed = Snapshotter(path)  # a resumed engine starts from it instead of re-reading the file
    assert resumed.saved == offset and resumed.follower.data.step == 3500 and not stale.exists()
