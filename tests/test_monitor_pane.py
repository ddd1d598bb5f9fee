"""The Monitor and Overlay panes under Textual's Pilot, driven by run directories the tests write."""
from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import threading
import time

import psutil

from engine import config as cfgmod
from engine.rundir.events import EventWriter
from engine.rundir.runs import create_run
from tui.app import TuneBench
from tui.panes.monitor import ConfirmScreen
from tui.panes.overlay import short_id
from tui.widgets.charts import render_chart

GIB = 1 << 30


def make_run(runs_dir, state="completed", pid=None, **status):
    cfg = cfgmod.Config().with_values({"model.name_or_path": "/models/tiny-llama", "data.train": "/data/chat.jsonl"})
    run = create_run(runs_dir, cfg)
    extra = {"pid": pid, "pid_started": psutil.Process(pid).create_time()} if pid else {}
    run.write_status(state=state, started=time.time() - 60, **extra, **status)
    return run


def write_steps(run, first, last, evals=(), ckpts=(), gpu=True, pref=False):
    w = EventWriter(run.events_path)
    for step in range(first, last + 1):
        m = {"loss": 4 / math.sqrt(step), "learning_rate": 1e-3 * (1 - step / 1000), "grad_norm": 1.0 + step % 3,
             "tokens_per_s": 900.0, "num_tokens": 64 * step}
        if pref:
            m.update({"rewards/chosen": 0.01 * step, "rewards/rejected": -0.01 * step, "rewards/margins": 0.02 * step})
        w.write("metrics", step=step, **m)
        if step in evals:
            w.write("eval", step=step, loss=3 / math.sqrt(step), runtime=0.1)
        if step in ckpts:
            w.write("checkpoint", step=step, path=f"checkpoints/checkpoint-{step}", size_bytes=100)
        if step % 10 == 0:
            t = {"rss": 500 << 20, "cpu_percent": 99.0, "ram_used": 4 * GIB, "ram_total": 16 * GIB}
            if gpu:
                t.update(gpus=[{"index": 0, "name": "NVIDIA A100", "mem_used": 30 * GIB + step, "mem_total": 40 * GIB,
                                "util": 95, "power_w": 250.0, "temp_c": 66, "proc_mem": 28 * GIB}],
                         torch_allocated=20 * GIB, torch_reserved=26 * GIB, torch_peak=27 * GIB)
            w.write("telemetry", **t)
    w.close()


async def until(pilot, pred, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        await pilot.pause(0.05)
    raise AssertionError("condition not reached")


async def pane(app, pilot, key):
    """The pane widget once mounted (the app may mount panes after its first paint)."""
    await until(pilot, lambda: bool(app.query(f"#pane-{key}")), 60.0)
    return app.query_one(f"#pane-{key}")


def text_of(app, wid):
    return str(app.query_one(wid).render())


def chart_lines(app, wid, w=100, h=14):
    chart = app.query_one(wid)
    return render_chart(chart.data, w, h, lambda n: None).plain.split("\n")


def test_attach_loads_the_whole_history(runs_dir):
    run = make_run(runs_dir, max_steps=300, step=300)
    write_steps(run, 1, 300, evals=(100, 200, 300), ckpts=(150, 300))

    async def body():
        app = TuneBench(runs_dir=runs_dir, run=run.path)  # what `tunebench attach RUN` opens
        async with app.run_test(size=(170, 60)) as pilot:
            mon = await pane(app, pilot, "monitor")
            await until(pilot, lambda: mon.attach_s is not None)
            await pilot.pause(0.1)
            assert app.query_one("#panes").active == "monitor"
            head = text_of(app, "#mon-head")
            assert "step 300 / 300" in head and "completed" in head and "100.0%" in head
            assert "lora r=16" in text_of(app, "#mon-config")
            loss = mon.data.train["loss"]
            assert [p[0] for p in loss.points()] == list(range(1, 301))
            lines = chart_lines(app, "#chart-loss")
            assert lines[-2].count("▲") == 2 and lines[-2].count("◆") == 2  # eval at 300 shares the checkpoint cell
            assert "eval" in lines[0] and "\n".join(lines[1:]).count("●") == 3
            assert "eval loss" in text_of(app, "#mon-numbers")
            mem = chart_lines(app, "#chart-mem")
            top = next(line for line in mem if "┤" in line)  # the first plot row (the legend may wrap)
            assert "GPU0 memory" in mem[0] and "40.0G" in top  # y axis runs to the GPU's total
            assert "torch peak so far 27.0 GiB" in text_of(app, "#mon-gpu")
            assert not app.query_one("#chart-pref").has_class("-show")
            assert not app.query_one("#mon-error").has_class("-show")

    asyncio.run(body())


def test_following_a_live_run_merges_updates(runs_dir):
    """Events at up to 400/s: every step arrives, and the pane redraws once a poll at most (the follower reads
    whatever arrived since the last poll and posts one update; one still queued is replaced), never once an event."""
    run = make_run(runs_dir, state="running", pid=os.getpid(), max_steps=400)
    write_steps(run, 1, 5)

    async def body():
        app = TuneBench(runs_dir=runs_dir, run=run.path)
        async with app.run_test(size=(170, 60)) as pilot:
            mon = await pane(app, pilot, "monitor")
            await until(pilot, lambda: mon.attach_s is not None)
            start_redraws, start_posts = mon.redraws, mon.posts

            def writer():
                w = EventWriter(run.events_path)
                for step in range(6, 401):
                    w.write("metrics", step=step, loss=1.0, learning_rate=1e-4, grad_norm=1.0)
                    time.sleep(0.0025)
                w.close()

            th = threading.Thread(target=writer)
            th.start()
            await until(pilot, lambda: mon.data.step == 400, timeout=120)
            th.join()
            await until(pilot, lambda: "step 400 / 400" in text_of(app, "#mon-head"))
            redraws, posts = mon.redraws - start_redraws, mon.posts - start_posts
            assert mon.data.train["loss"].count == 400
            assert "running" in text_of(app, "#mon-head")
            assert redraws <= posts + 1, (redraws, posts)  # one redraw an update: none per event
            assert posts < 395 / 2, posts  # polls read several events each (at 400/s, ~100 a poll)


def test_an_oom_failure_shows_the_error_first_then_the_memory_timeline(runs_dir):
    msg = ("CUDA out of memory at step 40: 39.9 GiB of 40.0 GiB in use, torch peak 38.0 GiB. To fit, change one of: "
           "training.batch_size 8 -> 4")
    run = make_run(runs_dir, state="failed", max_steps=100, step=40, error=msg, oom=True)
    write_steps(run, 1, 40)
    EventWriter(run.events_path).write("state", state="failed", step=40, error=msg, oom=True)

    async def body():
        app = TuneBench(runs_dir=runs_dir, run=run.path)
        async with app.run_test(size=(170, 60)) as pilot:
            mon = await pane(app, pilot, "monitor")
            await until(pilot, lambda: mon.attach_s is not None)
            await pilot.pause(0.1)
            err = app.query_one("#mon-error")
            assert err.has_class("-show") and "OUT OF MEMORY" in text_of(app, "#mon-error")
            assert "batch_size 8 -> 4" in text_of(app, "#mon-error")
            order = [c.id for c in app.query_one("#mon-body").children]
            charts = [c.id for c in app.query_one("#mon-charts").children]
            assert order.index("mon-error") < order.index("mon-charts")
            assert charts.index("mem-box") < charts.index("train-box")  # the memory timeline first
            assert mon.data.tele["gpu0.mem_used"].count == 4  # the timeline up to the failure

    asyncio.run(body())


def test_a_run_whose_engine_died_shows_as_lost(runs_dir):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    pid, started = dead.pid, psutil.Process(dead.pid).create_time()
    dead.wait()
    run = make_run(runs_dir, state="running", max_steps=50, step=10)
    run.write_status(pid=pid, pid_started=started)
    write_steps(run, 1, 10)

    async def body():
        app = TuneBench(runs_dir=runs_dir, run=run.path)
        async with app.run_test(size=(170, 60)) as pilot:
            mon = await pane(app, pilot, "monitor")
            await until(pilot, lambda: mon.attach_s is not None)
            await pilot.pause(0.1)
            assert "lost (crashed" in text_of(app, "#mon-head") and "LOST" in text_of(app, "#mon-error")
            await pilot.press("x")  # controls refuse a run that is not live
            assert not isinstance(app.screen, ConfirmScreen) and not list(run.control_dir.iterdir())

    asyncio.run(body())


def test_controls_write_control_files_and_stop_asks_first(runs_dir):
    run = make_run(runs_dir, state="running", pid=os.getpid(), max_steps=100, step=5)
    write_steps(run, 1, 5)
    EventWriter(run.events_path).write("data", format="messages", train_rows=60, eval_rows=4)

    def sent():
        return [json.loads(p.read_text())["command"] for p in sorted(run.control_dir.iterdir())]

    async def body():
        app = TuneBench(runs_dir=runs_dir, run=run.path)
        async with app.run_test(size=(170, 60)) as pilot:
            mon = await pane(app, pilot, "monitor")
            await until(pilot, lambda: mon.attach_s is not None)
            await pilot.press("x")
            assert isinstance(app.screen, ConfirmScreen) and "step 5" in str(app.screen.question)
            await pilot.press("n")
            assert sent() == []
            await pilot.press("x")
            await pilot.press("y")
            await pilot.press("p", "s", "e")
            await pilot.pause(0.1)
            assert sent() == ["stop", "pause", "save", "eval"]

    asyncio.run(body())


def test_preference_metrics_get_their_own_chart(runs_dir):
    run = make_run(runs_dir, max_steps=50, step=50)
    write_steps(run, 1, 50, pref=True, gpu=False)

    async def body():
        app = TuneBench(runs_dir=runs_dir, run=run.path)
        async with app.run_test(size=(170, 70)) as pilot:
            mon = await pane(app, pilot, "monitor")
            await until(pilot, lambda: mon.attach_s is not None)
            await pilot.pause(0.1)
            assert app.query_one("#chart-pref").has_class("-show")
            legend = chart_lines(app, "#chart-pref", w=160)[0]
            assert "rewards/chosen 0.5" in legend and "rewards/margins 1" in legend
            mem = chart_lines(app, "#chart-mem")  # no GPU telemetry: host RAM and the run's RSS instead
            legend = " ".join(mem[:2])  # a legend wider than the chart wraps onto a second row
            assert "no GPU telemetry" in legend and "run RSS" in legend

    asyncio.run(body())


def test_enter_in_runs_opens_the_monitor_and_overlay_compares_runs(runs_dir):
    slow = make_run(runs_dir, max_steps=100, step=100)
    write_steps(slow, 1, 100)
    fast = make_run(runs_dir, max_steps=50, step=50)
    w = EventWriter(fast.events_path)
    for step in range(1, 51):
        w.write("metrics", step=step, loss=2.0 / step, num_tokens=1000 * step)

    async def body():
        app = TuneBench(runs_dir=runs_dir)
        async with app.run_test(size=(170, 50)) as pilot:
            await pilot.press("1")
            await pilot.pause(0.2)
            await pilot.press("enter")  # the newest run is on top
            mon = await pane(app, pilot, "monitor")
            await until(pilot, lambda: mon.attach_s is not None)
            assert app.query_one("#panes").active == "monitor" and mon.run.id == fast.id
            await pilot.press("6")
            ov = await pane(app, pilot, "overlay")
            ov.select([slow.path, fast.path])
            await until(pilot, lambda: all(v is not None for v in ov.summary().values()) and len(ov.summary()) == 2)
            await pilot.pause(0.2)
            by_step = chart_lines(app, "#ov-chart")
            legend = " ".join(by_step[:2])
            assert short_id(slow.id) in legend and short_id(fast.id) in legend and by_step[-1].split()[-1] == "100"
            await pilot.press("a")
            by_tokens = chart_lines(app, "#ov-chart")
            assert "tokens seen" in by_tokens[0] and by_tokens[-1].split()[-1] == "50k"

    asyncio.run(body())


def test_attach_to_an_unknown_run_is_one_clear_line(runs_dir):
    from tests.conftest import tunebench

    make_run(runs_dir)
    r = tunebench("attach", "no-such-run", runs_dir=runs_dir)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "no-such-run: no such run" in r.stderr and "tunebench runs" in r.stderr


def test_eval_metrics_show_a_row_each_and_follow_new_evals(runs_dir):
    """Any metric of the eval events (sft's rouge1/bleu, a classifier's accuracy) gets a row with a sparkline and its
    last value; a live eval extends it; at 80x24 they share one line, the loss and memory charts still on screen."""
    run = make_run(runs_dir, state="running", pid=os.getpid(), max_steps=400, step=300)
    write_steps(run, 1, 300, evals=(100, 200, 300))
    w = EventWriter(run.events_path)
    for step, r1 in ((100, 0.2), (200, 0.5), (300, 0.4)):
        w.write("eval", step=step, loss=1.0, runtime=0.2, rouge1=r1, bleu=100 * r1 / 2, accuracy=r1 + 0.1)
    w.close()
    plain = make_run(runs_dir, max_steps=10, step=10)
    write_steps(plain, 1, 10, evals=(10,))

    async def body():
        app = TuneBench(runs_dir=runs_dir, run=run.path)
        async with app.run_test(size=(140, 44)) as pilot:
            mon = await pane(app, pilot, "monitor")
            await until(pilot, lambda: "rouge1" in text_of(app, "#mon-evals"))
            rows = text_of(app, "#mon-evals").splitlines()
            assert [r.split()[1] for r in rows] == ["rouge1", "bleu", "accuracy"]  # asked-for metrics first
            assert "0.400 @ step 300" in rows[0] and "best 0.500 @ 200" in rows[0]  # the last is not the best
            assert "▂▅▄" in rows[0] and "20.0 @ step 300" in rows[1]  # ROUGE on 0..1; BLEU on 0..100
            assert "runtime" not in text_of(app, "#mon-evals")  # bookkeeping is not a metric
            with open(run.events_path, "a") as f:  # the engine evaluates again
                f.write(json.dumps({"seq": 10**6, "time": time.time(), "kind": "eval", "step": 350, "loss": 0.9,
                                    "rouge1": 0.9, "bleu": 45.0, "accuracy": 0.95}) + "\n")
            await until(pilot, lambda: "0.900 @ step 350" in text_of(app, "#mon-evals"), timeout=30)
            await pilot.resize_terminal(80, 24)
            await until(pilot, lambda: mon.has_class("-compact") and "\n" not in text_of(app, "#mon-evals"))
            line = text_of(app, "#mon-evals")
            assert line.startswith("eval rouge1 0.900") and "bleu 45.0" in line
            assert app.query_one("#chart-loss").size.height >= 8 and app.query_one("#chart-mem").size.height >= 5
            mon.open_run(plain.path)  # a run without eval metrics has no empty row
            await until(pilot, lambda: mon.attach_s is not None and not app.query_one("#mon-evals").display)

    asyncio.run(body())
