"""The run queue's files and the scheduler's room decisions, without engines: order, move, cancel, repair, the
one-winner take, the memory rule on a GPU, the one-at-a-time rule on a CPU, the sweep space checks."""
from __future__ import annotations

import multiprocessing
import os

import pytest

from engine import config as cfgmod
from engine.planning.estimate import GIB
from engine.rundir.queue import Queue, enqueue, taking
from engine.rundir.runs import STATES, Run, create_run
from engine.scheduling import space as spacemod
from engine.scheduling.room import Device, Load, Machine, decide

CFG = cfgmod.Config(name="q").with_values({"model.name_or_path": "org/tiny-model", "data.train": "train.jsonl"})


def test_queued_is_a_state_that_is_never_active_or_lost(tmp_path):
    assert "queued" in STATES
    run, pos = enqueue(tmp_path, CFG)
    assert pos == 1 and run.status()["state"] == "queued"
    assert run.state() == "queued"  # no pid: a waiting run is not shown as lost


def test_order_move_and_cancel(tmp_path):
    runs = [enqueue(tmp_path, CFG)[0] for _ in range(3)]
    q = Queue(tmp_path)
    assert [e.run_id for e in q.entries()] == [r.id for r in runs]
    with q.locked():
        assert q.move(runs[2].id, "up") == 2
        assert q.move(runs[2].id, "top") == 1
        assert q.move(runs[0].id, "bottom") == 3
    assert list(q.positions()) == [runs[2].id, runs[1].id, runs[0].id]
    with q.locked():
        q.cancel(runs[1].id)
        with pytest.raises(LookupError):
            q.cancel(runs[1].id)  # gone from the queue: cancelled once
        with pytest.raises(LookupError):
            q.move(runs[1].id, "up")
    st = Run(runs[1].path).status()
    assert st["state"] == "stopped" and st["cancelled"] is True
    assert list(q.positions()) == [runs[2].id, runs[0].id]


def test_repair_adds_back_a_queued_run_without_entry_and_drops_stale_entries(tmp_path):
    lost = create_run(tmp_path, CFG, state="queued")  # a crash between creating the run and queuing it
    taken, _ = enqueue(tmp_path, CFG)
    taken.write_status(state="starting")  # its engine took it, then the entry was left behind (by hand)
    q = Queue(tmp_path)
    with q.locked():
        changed = q.repair()
    assert changed == {"dropped": [taken.id], "added": [lost.id]}
    assert list(q.positions()) == [lost.id]


def _take(path, barrier, results):
    barrier.wait()
    with taking(Run(path), queued=True) as ours:  # as the scheduler's engines are started (--queued)
        if ours:
            Run(path).write_status(state="starting", pid=os.getpid())
    results.put(bool(ours))


def test_only_one_engine_takes_a_queued_run(tmp_path):
    run, _ = enqueue(tmp_path, CFG)
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_take, args=(run.path, barrier, results)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    got = [results.get(timeout=5) for _ in procs]
    assert got.count(True) == 1, got
    assert run.status()["state"] == "starting" and not Queue(tmp_path).entries()
    # an engine spawned for the queued run that comes late (another took it, even ran it to the end) touches nothing
    run.write_status(state="completed")
    with taking(Run(run.path), queued=True) as ours:
        assert not ours
    # a run started directly (not queued) is always its engine's
    direct = create_run(tmp_path, CFG)
    with taking(direct) as ours:
        assert ours


GPU = Machine(Device("cpu", 64 * GIB, 8 * GIB), Device("cuda", 80 * GIB, 1 * GIB, "NVIDIA H100 80GB HBM3"))
CPU = Machine(Device("cpu", 64 * GIB, 8 * GIB))


def test_several_runs_start_together_on_a_gpu_while_their_peaks_fit_with_headroom():
    waiting = [Load(f"r{i}", "cuda", 20 * GIB) for i in range(5)]
    got = decide(waiting, [], GPU)
    # 85% of 80 GiB = 68 GiB: 20 + 20 + 20 fit, a fourth would need 80: it waits, the fifth is not considered
    assert [d["action"] for d in got] == ["start", "start", "start", "wait"]
    assert "20.0 GiB > 8.0 GiB of room" in got[3]["reason"]


def test_running_runs_count_by_the_larger_of_measured_and_predicted_memory():
    waiting = [Load("new", "cuda", 30 * GIB)]
    active = [Load("old", "cuda", 20 * GIB)]
    assert decide(waiting, active, GPU)[0]["action"] == "start"  # 68 - max(1, 20) = 48 GiB of room
    busy = Machine(GPU.cpu, Device("cuda", 80 * GIB, 50 * GIB, "H100"))  # someone else holds 30 GiB more
    assert decide(waiting, active, busy)[0]["action"] == "wait"  # 68 - max(50, 20) = 18 GiB
    starting = [Load("old", "cuda", 20 * GIB, running=False)]  # not allocated yet: NVML cannot see it
    assert decide(waiting, starting, busy)[0]["action"] == "wait"  # 68 - 50 - 20 < 0


def test_cap_order_and_the_run_that_only_fits_alone():
    capped = [Load("a", "cuda", GIB, max_concurrent=2), Load("b", "cuda", GIB, max_concurrent=2)]
    assert [d["action"] for d in decide(capped, [Load("x", "cuda", GIB)], GPU)] == ["start", "wait"]
    huge = [Load("big", "cuda", 100 * GIB), Load("small", "cuda", GIB)]
    got = decide(huge, [], GPU)
    assert got[0]["action"] == "start" and "alone" in got[0]["reason"]  # nothing else there: waiting cannot help
    assert got[1]["action"] == "wait"  # and nothing jumps the queue past a run that waits
    unknown = decide([Load("u", "cuda", None)], [Load("x", "cuda", GIB)], GPU)
    assert unknown[0]["action"] == "wait" and "unknown peak" in unknown[0]["reason"]


def test_one_at_a_time_on_a_cpu_unless_max_concurrent_says_more():
    two = [Load("a", "cpu", GIB), Load("b", "cpu", GIB)]
    assert [d["action"] for d in decide(two, [], CPU)] == ["start", "wait"]
    assert "one at a time on a CPU" in decide(two, [], CPU)[1]["reason"]
    more = [Load("a", "cpu", GIB, max_concurrent=2), Load("b", "cpu", GIB, max_concurrent=2)]
    assert [d["action"] for d in decide(more, [], CPU)] == ["start", "start"]


def test_sweep_space_is_checked_against_the_schema_before_anything_exists():
    space, problems = spacemod.parse_space(["training.learning_rate=1e-4,3e-4", "adapter.r=8,32"], [])
    assert not problems and len(spacemod.grid_points(space)) == 4
    assert spacemod.grid_points(space)[1] == {"training.learning_rate": 1e-4, "adapter.r": 32}
    _, problems = spacemod.parse_space(["training.learnin_rate=1e-4"], ["adapter.r=loguniform:0:8",
                                                                        "training.seed=gauss:1:2"])
    text = "\n".join(map(str, problems))
    assert "training.learnin_rate: unknown key in --grid; did you mean training.learning_rate?" in text
    assert "adapter.r: loguniform needs LOW > 0" in text and "unknown range 'gauss'" in text
    _, problems = spacemod.parse_space(["adapter.r=8,8"], ["adapter.r=int:4:8"])
    assert [str(p) for p in problems] == ["adapter.r: --grid lists 8 more than once; list each value once",
                                          "adapter.r: given twice in --grid/--search; one --grid or --search per key"]
    space, problems = spacemod.parse_space([], ["training.batch_size=int:1:8"])
    assert not problems and space["training.batch_size"] == {"kind": "int", "low": 1, "high": 8, "log": False}
    cfg = CFG.with_values({"data.train": "x.jsonl"})
    grid, _ = spacemod.parse_space(["training.learning_rate=1e-4,2"], [])
    problems = spacemod.check(cfg, grid, "grid", "eval_loss")
    assert any(p.path == "training.learning_rate" and "above the maximum" in p.message for p in problems)
    assert any(p.path == "data.eval" for p in problems)  # no eval data: no objective to measure
    assert spacemod.direction_of("eval_loss") == "minimize" and spacemod.direction_of("accuracy") == "maximize"


def test_train_queue_from_the_cli_waits_for_the_cpu_and_stop_cancels_it(tmp_path, tiny_model, chat_jsonl):
    """`tunebench train --queue` while a run holds the CPU: queued at #1 with a scheduler started, shown by
    `runs`, `status` and `queue`; `stop` cancels it before it ever starts, and the idle scheduler exits."""
    import json
    import subprocess
    import sys
    import time

    import psutil

    from engine.scheduling.control import running_scheduler
    from tests.conftest import tunebench, wait_for, write_config

    runs_dir = tmp_path / "runs"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        busy = create_run(runs_dir, CFG)  # an engine that trains on the CPU now (a live process)
        busy.write_status(state="running", pid=holder.pid, pid_started=psutil.Process(holder.pid).create_time(),
                          started=time.time())
        cfg = write_config(tmp_path / "c.yaml", tiny_model, chat_jsonl)  # checked by the preflight, never loaded
        out = tunebench("train", cfg, "--queue", "--detach", runs_dir=runs_dir)
        assert out.returncode == 0, out.stderr
        run_id = out.stdout.strip().splitlines()[-1]
        assert f"queued {run_id} at #1" in out.stdout and "scheduler started" in out.stdout
        wait_for(lambda: running_scheduler(runs_dir), timeout=60, what="the scheduler holding its lock")
        listed = tunebench("runs", runs_dir=runs_dir).stdout
        assert any(run_id in ln and "queued #1" in ln for ln in listed.splitlines()), listed
        status = json.loads(tunebench("status", run_id, "--json", runs_dir=runs_dir).stdout)
        assert status["state"] == "queued" and status["queue_position"] == 1
        assert [r["id"] for r in json.loads(tunebench("queue", "--json", runs_dir=runs_dir).stdout)] == [run_id]
        stopped = tunebench("stop", run_id, runs_dir=runs_dir)
        assert stopped.returncode == 0 and "cancelled while queued" in stopped.stdout
        wait_for(lambda: running_scheduler(runs_dir) is None, timeout=60, what="the idle scheduler gone")
        st = Run(runs_dir / run_id).status()
        assert st["state"] == "stopped" and st["cancelled"] and not st.get("started")
        decisions = [json.loads(ln) for ln in (runs_dir / "queue" / "decisions.jsonl").read_text().splitlines()]
        assert decisions and all(d["action"] == "wait" and d["run"] == run_id for d in decisions)
    finally:
        holder.kill()
        holder.wait()
