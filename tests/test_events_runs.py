"""Engine unit tests: the event log, the run directory, control files and telemetry sampling."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time

from engine import config as C
from engine.rundir.events import EventTail, EventWriter, read_events
from engine.rundir.runs import META, create_run, list_runs, resolve_run
from engine.system.telemetry import Probe, Sampler


def test_writer_and_tail_by_offset(tmp_path):
    p = tmp_path / "events.jsonl"
    w = EventWriter(p)
    tail = EventTail(p)
    w.write("metrics", step=1, loss=2.0)
    w.write("metrics", step=2, loss=1.5)
    got = tail.read()
    assert [e["seq"] for e in got] == [0, 1] and got[1]["loss"] == 1.5
    assert tail.read() == []
    w.write("state", state="completed")
    assert [e["kind"] for e in tail.read()] == ["state"]


def test_torn_last_line_is_kept_back_then_read_when_complete(tmp_path):
    p = tmp_path / "events.jsonl"
    EventWriter(p).write("metrics", step=1, loss=2.0)
    with open(p, "ab") as f:
        f.write(b'{"seq":1,"time":1,"kind":"metr')  # a writer killed mid-line
    tail = EventTail(p)
    assert [e["seq"] for e in tail.read()] == [0]
    assert tail.bad_lines == 0
    with open(p, "ab") as f:
        f.write(b'ics","step":2}\n')
    assert [e["step"] for e in tail.read()] == [2]


def test_writer_repairs_a_torn_tail_and_continues_the_sequence(tmp_path):
    p = tmp_path / "events.jsonl"
    w = EventWriter(p)
    for i in range(3):
        w.write("metrics", step=i)
    w.close()
    with open(p, "ab") as f:
        f.write(b'{"seq":3,"kind":"metri')  # the engine was SIGKILLed mid-write
    w2 = EventWriter(p)  # a resumed engine
    w2.write("state", state="running")
    events = read_events(p)
    assert [e["seq"] for e in events] == [0, 1, 2, 3]
    assert all(line.startswith(b"{") for line in p.read_bytes().splitlines())


def test_concurrent_writers_threads_never_interleave_lines(tmp_path):
    p = tmp_path / "events.jsonl"
    w = EventWriter(p)

    def spam(kind):
        for i in range(300):
            w.write(kind, i=i, pad="x" * 500)

    threads = [threading.Thread(target=spam, args=(k,)) for k in ("metrics", "telemetry", "log")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    tail = EventTail(p)
    events = tail.read()
    assert len(events) == 900 and tail.bad_lines == 0
    assert sorted(e["seq"] for e in events) == list(range(900))


def _cfg() -> C.Config:
    return C.load_config(None, ["model.name_or_path=m", "data.train=d.jsonl"])


def test_run_directory_layout_permissions_and_atomic_status(tmp_path):
    run = create_run(tmp_path / "runs", _cfg())
    assert {p.name for p in run.path.iterdir()} >= {"config.yaml", "status.json", "control", "checkpoints"}
    assert stat.S_IMODE(run.path.stat().st_mode) == 0o700
    assert stat.S_IMODE(run.status_path.stat().st_mode) == 0o600
    assert run.status()["state"] == "created"
    assert run.settings().model.name_or_path == "m" and run.settings() == _cfg()
    run.write_status(state="running", step=3)
    assert run.status()["step"] == 3 and run.status()["state"] == "running"
    assert not [n for n in os.listdir(run.path) if n.endswith(".tmp")]


def test_active_run_whose_process_is_gone_is_lost(tmp_path):
    run = create_run(tmp_path / "runs", _cfg())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run.write_status(state="running", pid=dead.pid, pid_started=time.time())
    assert run.state() == "lost"
    me = __import__("psutil").Process()
    run.write_status(state="running", pid=os.getpid(), pid_started=me.create_time())
    assert run.state() == "running"
    run.write_status(pid_started=me.create_time() - 1000)  # same pid, another process (recycled pid)
    assert run.state() == "lost"
    run.write_status(state="completed")
    assert run.state() == "completed"


def test_control_files_are_consumed_in_order(tmp_path):
    run = create_run(tmp_path / "runs", _cfg())
    run.send("pause")
    run.send("save")
    run.send("resume")
    assert run.take_controls() == ["pause", "save", "resume"]
    assert run.take_controls() == []
    # a file that is not a valid control is dropped, not obeyed
    (run.control_dir / "0-x.json").write_text("not json")
    assert run.take_controls() == []


def test_incomplete_checkpoints_are_never_listed(tmp_path):
    run = create_run(tmp_path / "runs", _cfg())
    (run.checkpoints_dir / "checkpoint-5").mkdir()  # no meta: a save that died midway
    good = run.checkpoints_dir / "checkpoint-10"
    good.mkdir()
    (good / META).write_text(json.dumps({"step": 10}))
    (run.checkpoints_dir / ".deleting-checkpoint-2").mkdir()
    assert [c.step for c in run.checkpoints()] == [10]


def test_list_and_resolve_runs(tmp_path):
    runs = tmp_path / "runs"
    a = create_run(runs, _cfg())
    b = create_run(runs, _cfg())
    (runs / "half-created").mkdir()  # being created: no status.json yet, not listed
    assert {r.id for r in list_runs(runs)} == {a.id, b.id}
    assert resolve_run(runs, a.id).path == a.path
    assert resolve_run(runs, str(b.path)).path == b.path
    assert resolve_run(runs, a.id[-4:]).id == a.id


def test_sampler_keeps_a_fixed_schedule_and_never_overlaps():
    stamps, active = [], []

    def slow():
        active.append(1)
        assert len(active) == 1  # never two samples at once
        stamps.append(time.monotonic())
        time.sleep(0.03 if len(stamps) != 3 else 0.25)  # one sample overruns two ticks
        active.pop()

    s = Sampler(slow, interval=0.1).start()
    time.sleep(1.05)
    s.stop()
    t0 = stamps[0]
    offsets = [(t - t0) / 0.1 for t in stamps]
    # every sample starts on a tick (k * interval from the start), and the overrun skipped ticks
    assert all(abs(o - round(o)) < 0.35 for o in offsets), offsets
    assert s.skipped >= 2
    assert 6 <= len(stamps) <= 10


def test_probe_without_gpu_is_a_normal_state():
    s = Probe().sample()
    assert s["rss"] > 0 and s["ram_total"] > 0
    assert "gpus" not in s or isinstance(s["gpus"], list)


def test_a_non_finite_metric_is_written_as_null_and_named(tmp_path):
    """A diverged loss must not make events.jsonl invalid for strict readers (jq, JSON.parse, msgspec)."""
    import math

    from engine.monitor.history import Follower, RunData
    from engine.rundir.events import EventWriter

    path = tmp_path / "events.jsonl"
    w = EventWriter(path)
    w.write("metrics", step=1, loss=2.0, grad_norm=1.0)
    w.write("metrics", step=2, loss=float("nan"), grad_norm=float("inf"), extra={"x": [1.0, float("-inf")]})
    w.write("metrics", step=3, loss=1.5, grad_norm=0.5)
    w.close()

    def strict(text):
        return json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"bare {c}")))

    lines = [strict(line) for line in path.read_text().splitlines()]
    assert lines[1]["loss"] is None and lines[1]["grad_norm"] is None and lines[1]["extra"] == {"x": [1.0, None]}
    assert lines[1]["nonfinite"] == ["loss", "grad_norm", "extra.x[1]"] and "nonfinite" not in lines[0]
    data = RunData()
    Follower(path, data, use_snapshot=False).catch_up()  # the monitor reads it: the null step is a gap
    assert [p[0] for p in data.train["loss"].points()] == [1, 3] and data.step == 3
    assert all(math.isfinite(y) for _, y in data.train["grad_norm"].points())
