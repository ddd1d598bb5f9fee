"""Engine unit tests of the run directory under accident: one engine per run (the lock), a status that cannot lie,
whole event lines on a full disk, the control state machine, the resume plan, absolute paths, required data."""
from __future__ import annotations

import errno
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest

from engine import config as C
from engine.rundir import controls
from engine.rundir.events import EventWriter, read_events
from engine.rundir.lock import RunBusy, RunLock, holder
from engine.rundir.paths import absolute_paths
from engine.rundir.resume import ResumeRefused, check_overrides, parse_ref, plan, set_aside
from engine.rundir.runs import META, Run, create_run
from engine.rundir.verify import header_problem, verify_run
from tests.conftest import ROOT, wait_for


def _cfg(**values) -> C.Config:
    return C.load_config(None, ["model.name_or_path=m", "data.train=d.jsonl", *[f"{k}={v}" for k, v in values.items()]])


HOLD = """
import sys, time
from engine.rundir.lock import RunLock
lock = RunLock.acquire(sys.argv[1])
print("held", flush=True)
time.sleep(600)
"""


def _holder_process(run_path):
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(run_path)], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.stdout.readline().strip() == "held"
    return p


# -- 1. one engine per run ----------------------------------------------------------------------------------------
def test_a_second_engine_is_refused_naming_the_holder_and_the_kernel_frees_a_dead_holders_lock(tmp_path):
    run = create_run(tmp_path / "runs", _cfg())
    p = _holder_process(run.path)
    try:
        assert holder(run.path) == p.pid and run.engine_pid() == p.pid
        with pytest.raises(RunBusy) as e:
            RunLock.acquire(run.path, patience=0.2)
        assert f"held by engine pid {p.pid}" in str(e.value) and "\n" not in str(e.value)
    finally:
        p.kill()  # SIGKILL: no cleanup runs, the kernel drops the lock
        p.wait()
    assert holder(run.path) is None
    lock = RunLock.acquire(run.path)
    assert holder(run.path) == os.getpid()
    lock.release()
    assert holder(run.path) is None


def _sleep_forever(started):
    started.set()  # the fork hooks have run by now
    time.sleep(600)


def test_the_lock_is_not_kept_by_a_forked_child(tmp_path):
    """A data loader worker (fork) outliving the engine must not keep the run locked."""
    run = create_run(tmp_path / "runs", _cfg())
    lock = RunLock.acquire(run.path)
    ctx = multiprocessing.get_context("fork")
    started = ctx.Event()
    child = ctx.Process(target=_sleep_forever, args=(started,), daemon=True)
    child.start()
    try:
        assert started.wait(60)
        lock.release()
        assert holder(run.path) is None, "the forked child still holds the run"
    finally:
        child.kill()
        child.join()


def test_readers_probing_the_lock_never_make_an_engine_refuse(tmp_path):
    run = create_run(tmp_path / "runs", _cfg())
    stop = time.monotonic() + 2
    prober = subprocess.Popen([sys.executable, "-c", f"""
import time
from engine.rundir.lock import holder
while time.monotonic() < {stop}:
    holder({str(run.path)!r})
"""], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        for _ in range(20):
            RunLock.acquire(run.path).release()
    finally:
        prober.wait()


# -- 2. a status that cannot lie --------------------------------------------------------------------------------
def test_a_live_lock_holder_is_running_whatever_status_json_says(tmp_path):
    run = create_run(tmp_path / "runs", _cfg())
    run.launching.release()
    p = _holder_process(run.path)
    try:
        run.status_path.unlink()
        assert Run(run.path).exists() and Run(run.path).state() == "running"
        run.status_path.write_text("{not json")
        assert run.state() == "running"
        run.status_path.write_text(json.dumps({"state": "completed", "pid": 1}))  # a stale file from an old engine
        assert run.state() == "running"
        run.status_path.write_text(json.dumps({"state": "completed", "pid": p.pid}))  # the holder's own last word
        assert run.state() == "completed"
    finally:
        p.kill()
        p.wait()
    run.status_path.write_text(json.dumps({"state": "running", "pid": os.getpid()}))
    assert run.state() == "lost", "a locking engine that is gone is lost, even when its pid is reused"
    run.status_path.unlink()
    assert run.state() == "lost"


def test_the_engine_rewrites_a_complete_status_after_it_was_deleted(tmp_path):
    run = create_run(tmp_path / "runs", _cfg())
    engine = Run(run.path)
    engine.write_status(state="running", pid=123, step=5, max_steps=10)
    run.status_path.unlink()
    engine.write_status(step=6)
    st = run.status()
    assert st["state"] == "running" and st["pid"] == 123 and st["step"] == 6 and st["max_steps"] == 10
    assert st["method"] == "sft" and st["model"] == "m" and st["created"] > 0


def test_a_run_whose_launcher_died_before_its_engine_started_is_unstarted(tmp_path):
    code = ("import sys; from engine import config as C; from engine.rundir.runs import create_run; "
            "r = create_run(sys.argv[1], C.load_config(None, ['model.name_or_path=m', 'data.train=d.jsonl'])); "
            "print(r.id, flush=True); import time; time.sleep(600)")
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "runs")], stdout=subprocess.PIPE, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    run = Run(tmp_path / "runs" / p.stdout.readline().strip())
    assert run.state() == "created"  # its launcher is starting it
    p.send_signal(signal.SIGKILL)  # the workbench killed right after Launch
    p.wait()
    assert run.state() == "unstarted"


# -- 4. whole event lines on a full disk --------------------------------------------------------------------------
def test_a_short_write_is_continued_and_a_failed_one_cut_back(tmp_path, monkeypatch):
    p = tmp_path / "events.jsonl"
    w = EventWriter(p)
    w.write("metrics", step=1)
    calls = []

    def short(fd, data):  # what write() does on a nearly full disk: stores what fits, says how much
        calls.append(len(data))
        return os.write(fd, bytes(data[:7]))

    w._os_write = short
    w.write("metrics", step=2, pad="x" * 40)
    assert len(calls) > 1, "the writer must continue after a short write"
    state = {"n": 0}

    def then_full(fd, data):
        state["n"] += 1
        if state["n"] == 1:
            return os.write(fd, bytes(data[:10]))
        raise OSError(errno.ENOSPC, "No space left on device")

    w._os_write = then_full
    with pytest.raises(OSError):
        w.write("metrics", step=3)
    w._os_write = os.write
    w.write("state", state="failed")
    assert p.read_bytes().endswith(b"\n")
    events = read_events(p)
    assert [e.get("step") for e in events] == [1, 2, None] and events[-1]["state"] == "failed"
    assert [e["seq"] for e in events] == [0, 1, 2]


def _mount_tmpfs(path, size):
    if os.geteuid() != 0:
        return False
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_events_on_a_really_full_filesystem_are_whole_lines(tmp_path):
    mnt = tmp_path / "small"
    if not _mount_tmpfs(mnt, "64k"):
        pytest.skip("cannot mount a small tmpfs here (needs root); the injected short write covers the path")
    try:
        w = EventWriter(mnt / "events.jsonl")
        failed = 0
        for i in range(4000):  # past the 64 KiB: writes go short, then fail
            try:
                w.write("metrics", step=i, pad="y" * 90)
            except OSError as e:
                assert e.errno == errno.ENOSPC
                failed += 1
        assert failed
        data = (mnt / "events.jsonl").read_bytes()
        assert data.endswith(b"\n")
        assert all(json.loads(line)["kind"] == "metrics" for line in data.splitlines())
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# -- 8. the control state machine -----------------------------------------------------------------------------------
@pytest.mark.parametrize("paused, cmds, want", [
    (False, ["pause", "resume"], dict(paused=False, stop=False)),
    (False, ["pause", "stop"], dict(paused=False, stop=True)),
    (False, ["pause", "save"], dict(paused=True, save=True)),
    (True, ["eval", "resume", "pause"], dict(paused=True, eval=True)),
    (True, ["resume"], dict(paused=False)),
    (False, ["stop", "resume", "pause"], dict(paused=False, stop=True)),
])
def test_a_batch_of_controls_is_applied_in_order(paused, cmds, want):
    d = controls.apply(paused, cmds)
    for k, v in want.items():
        assert getattr(d, k) == v, (k, d)


def test_only_controls_sent_before_a_time_are_taken(tmp_path):
    run = create_run(tmp_path / "runs", _cfg())
    run.send("stop")
    cut = time.time_ns()
    run.send("pause")
    assert run.take_controls(before_ns=cut) == ["stop"]
    assert run.take_controls() == ["pause"]


# -- 7, 9. the resume plan ------------------------------------------------------------------------------------------
def _checkpoint(run: Run, step: int, optimizer: bool = True, weights: bytes | None = None):
    d = run.checkpoints_dir / f"checkpoint-{step}"
    d.mkdir()
    (d / META).write_text(json.dumps({"step": step}))
    (d / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    (d / "adapter_model.safetensors").write_bytes(weights if weights is not None else
                                                  len(header).to_bytes(8, "little") + header + b"\0" * 8)
    if optimizer:
        (d / "optimizer.pt").write_bytes(b"x")
        (d / "scheduler.pt").write_bytes(b"x")
    return d


def test_a_damaged_newest_checkpoint_is_named_and_the_newest_that_loads_is_chosen(tmp_path):
    run = create_run(tmp_path / "runs", _cfg())
    _checkpoint(run, 3)
    _checkpoint(run, 6)
    bad = _checkpoint(run, 9, weights=b"\xff" * 64)
    assert "invalid header length" in header_problem(bad / "adapter_model.safetensors")
    p = plan(run)
    assert p.checkpoint.step == 6 and [c.step for c, _ in p.damaged] == [9]
    assert "checkpoint-9 does not load" in p.notes()[0] and "adapter_model.safetensors" in p.notes()[0]
    set_aside(run, p)
    assert [c.step for c in run.checkpoints()] == [3, 6] and (run.checkpoints_dir / "damaged-checkpoint-9").is_dir()
    p = plan(run, step=3)  # RUN@STEP: the later ones are set aside, never deleted
    assert p.checkpoint.step == 3 and [c.step for c in p.superseded] == [6]
    with pytest.raises(ResumeRefused, match="no complete checkpoint at step 4"):
        plan(run, step=4)
    assert parse_ref("abc@12") == ("abc", 12) and parse_ref("abc") == ("abc", None)


def test_a_checkpoint_without_optimizer_state_is_refused_unless_weights_only(tmp_path):
    run = create_run(tmp_path / "runs", _cfg())
    d = _checkpoint(run, 4, optimizer=False)
    with pytest.raises(ResumeRefused) as e:
        plan(run)
    assert str(d) in str(e.value) and "--resume-weights-only" in str(e.value) and "optimizer.pt" in str(e.value)
    p = plan(run, weights_only=True)
    assert p.weights_only and "optimizer and the learning-rate schedule start fresh" in p.notes()[0]
    assert any("no optimizer.pt or scheduler.pt" in x for x in verify_run(run))


def test_resume_may_change_only_what_does_not_change_the_training():
    assert check_overrides(["training.save_total_limit=2", "training.logging_steps=5"]) == {
        "training.save_total_limit": 2, "training.logging_steps": 5}
    with pytest.raises(ResumeRefused, match="training.learning_rate"):
        check_overrides(["training.learning_rate=1e-3"])


# -- 5, 6. absolute paths, required data ------------------------------------------------------------------------------
def test_local_paths_become_absolute_and_hub_ids_stay(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.jsonl").write_text("{}\n")
    (tmp_path / "model").mkdir()
    cfg = _cfg(**{"model.name_or_path": "model", "data.train": "data/*.jsonl", "data.eval": "data/a.jsonl"})
    out = absolute_paths(cfg, tmp_path)
    assert out.model.name_or_path == str(tmp_path / "model")
    assert out.data.train == str(tmp_path / "data" / "*.jsonl") and out.data.eval == str(tmp_path / "data" / "a.jsonl")
    hub = absolute_paths(_cfg(**{"model.name_or_path": "Qwen/Qwen2.5-0.5B", "data.train": "org/set"}), tmp_path)
    assert hub.model.name_or_path == "Qwen/Qwen2.5-0.5B" and hub.data.train == "org/set"


def test_a_run_without_data_train_is_refused_before_it_exists(tmp_path):
    cfg = C.load_config(None, ["model.name_or_path=m"])  # valid for an estimate; not for a run
    with pytest.raises(C.ConfigError) as e:
        create_run(tmp_path / "runs", cfg)
    assert [p.path for p in e.value.problems] == ["data.train"]
    assert not (tmp_path / "runs").exists()
    with pytest.raises(C.ConfigError, match="data.train: required"):
        C.load_config(None, ["model.name_or_path=m"], for_run=True)
    with pytest.raises(C.ConfigError, match="empty entry"):
        C.load_config(None, ["model.name_or_path=m", "data.train=[a.jsonl, '']"], for_run=True)


def test_the_engine_exits_at_once_when_another_holds_the_run(tmp_path):
    """The loser of two racing resumers writes nothing: no status, no event."""
    run = create_run(tmp_path / "runs", _cfg())
    run.launching.release()
    before = run.status_path.read_bytes()
    p = _holder_process(run.path)
    try:
        r = subprocess.run([sys.executable, "-m", "engine.worker", str(run.path), "--resume"], capture_output=True,
                           text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    finally:
        p.kill()
        p.wait()
    assert r.returncode == 75 and f"held by engine pid {p.pid}" in r.stderr
    assert run.status_path.read_bytes() == before and not run.events_path.exists()
    wait_for(lambda: holder(run.path) is None, timeout=10, what="the holder's lock to go")


def test_sizes_on_a_small_filesystem_read_as_sizes():
    from engine.training.worker import size_text

    assert [size_text(n) for n in (512, 180 << 10, 1200 << 10, 3 << 30, 64 << 30)] == [
        "512 bytes", "180 KiB", "1.2 MiB", "3.0 GiB", "64 GiB"]
