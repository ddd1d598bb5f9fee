"""Monitor cost: attach time and resident memory for 10k/100k/1M-event runs, CPU spent following a fast run.

Usage: .venv/bin/python bench/monitor.py [--sizes 10000,100000,1000000] [--follow-seconds 30]
Each measurement runs the real workbench (headless, Textual's Pilot) in a fresh process, so the figures
include Textual itself. Each size is attached twice: as the engine leaves a live run (its history snapshot,
engine/snapshot.py, taken the most events ago it can be: a full SNAPSHOT_BYTES of events after it to decode)
and with no snapshot at all (a run from before snapshots, or one whose snapshot was deleted: every event
decoded). Prints a table of figures and the ratios that matter (CPU per 100k events decoded).
"""
from __future__ import annotations

import sys

# Run as a script, bench/ is sys.path[0], and a sibling bench/inspect.py would shadow the stdlib's inspect.
sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith("/bench") and p != "bench"]

import argparse  # noqa: E402
import json
import math
import os
import random
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GIB = 1 << 30
FULL_APP = "--full-app" in sys.argv


def make_run(runs_dir: Path, name: str = "bench") -> Path:
    """A run directory (config.yaml, status.json) as `tunebench train` leaves it, state completed."""
    from engine import config as cfgmod
    from engine.rundir.runs import create_run

    cfg = cfgmod.Config(name=name).with_values({"model.name_or_path": "bench/tiny-llama", "data.train": "bench.jsonl"})
    run = create_run(runs_dir, cfg)
    return run.path


def event_lines(n_events: int, t0: float, steps_per_s: float = 20.0, start_seq: int = 0, start_step: int = 1,
                gpus: int = 1, pref: bool = False, seed: int = 0):
    """Yield (seconds since t0, JSON line) of a realistic run: a metrics event each step, telemetry each
    second, an eval every 500 steps and a checkpoint every 2000, like the engine writes them."""
    rnd = random.Random(seed)
    seq, step, t, next_tele = start_seq, start_step, 0.0, 0.0
    pending: list[dict] = []  # eval and checkpoint events that follow a step's metrics
    while seq < start_seq + n_events:
        now = round(t0 + t, 3)
        if pending:
            ev = {"seq": seq, "time": now, **pending.pop(0)}
        elif t >= next_tele:
            ev = {"seq": seq, "time": now, "kind": "telemetry", "rss": 2_400_000_000 + step * 10,
                  "cpu_percent": 100.0 + rnd.random(), "ram_used": 9 * GIB, "ram_total": 24 * GIB,
                  "gpus": [{"index": i, "name": "NVIDIA H100 80GB HBM3", "mem_used": int(40 * GIB + rnd.random() * GIB),
                            "mem_total": 80 * GIB, "util": rnd.randint(90, 100), "power_w": 500 + rnd.random() * 100,
                            "temp_c": 60 + rnd.randint(0, 10), "proc_mem": int(38 * GIB)} for i in range(gpus)],
                  "torch_allocated": int(30 * GIB), "torch_reserved": int(36 * GIB), "torch_peak": int(35 * GIB)}
            next_tele += 1.0
        else:
            loss = 1.0 + 4 / math.sqrt(step) + rnd.random() * 0.3
            ev = {"seq": seq, "time": now, "kind": "metrics", "step": step, "epoch": step / 10000,
                  "entropy": 2.0 + rnd.random(), "learning_rate": 2e-4 * (1 - step / 1e7), "mean_token_accuracy": 0.6,
                  "grad_norm": 0.5 + rnd.random(), "loss": loss, "num_tokens": 4096.0 * step, "tokens_per_s": 81920.0}
            if pref:
                ev.update({"rewards/chosen": 0.1 * math.log(step + 1), "rewards/rejected": -0.1 * math.log(step + 1),
                           "rewards/margins": 0.2 * math.log(step + 1), "rewards/accuracies": 0.8})
            if step % 500 == 0:
                pending.append({"kind": "eval", "step": step, "loss": 1.2 + 3 / math.sqrt(step), "runtime": 3.2,
                                "samples_per_second": 40.0})
            if step % 2000 == 0:
                pending.append({"kind": "checkpoint", "step": step, "path": f"checkpoints/checkpoint-{step}",
                                "size_bytes": 1 << 26, "loss": loss, "eval_loss": 1.1})
            step += 1
            t += 1.0 / steps_per_s
        yield t, json.dumps(ev, separators=(",", ":")) + "\n"
        seq += 1


def snapshot_as_engine(run_dir: Path) -> int:
    """The engine's snapshot at its worst for a reader: SNAPSHOT_BYTES of events written since (a live run,
    just before the next one). Same code as the engine's Snapshotter; returns the snapshot's offset."""
    from engine.monitor import snapshot
    from engine.monitor.history import Follower, RunData

    path = run_dir / "events.jsonl"
    f = Follower(path, RunData(by_tokens=True), use_snapshot=False)
    limit = path.stat().st_size - snapshot.SNAPSHOT_BYTES
    while f.tail.offset + f.chunk <= limit:
        f.poll()
    if f.tail.offset == 0:
        return 0  # the whole run is shorter than one snapshot interval: the engine has not written one
    with f.data.lock:
        state = f.data.to_state()
    snapshot.save(path, f.tail.offset, state)
    return f.tail.offset


def write_history(run_dir: Path, n_events: int, **kw) -> int:
    """Write n_events to events.jsonl at once; status.json says completed at the last step."""
    from engine.rundir.runs import Run

    t0 = time.time() - n_events / 20
    last_step = 0
    with open(run_dir / "events.jsonl", "w") as f:
        buf = []
        for _t, line in event_lines(n_events, t0, **kw):
            buf.append(line)
            if len(buf) >= 10000:
                f.write("".join(buf))
                buf = []
        f.write("".join(buf))
    with open(run_dir / "events.jsonl", "rb") as f:
        f.seek(-4096, 2)
        for line in reversed(f.read().splitlines()[1:]):
            ev = json.loads(line)
            if ev.get("kind") == "metrics":
                last_step = ev["step"]
                break
    Run(run_dir).write_status(state="completed", started=t0, ended=time.time(), step=last_step,
                              max_steps=last_step, last_loss=1.0)
    return last_step


# -- measurements, each in a fresh process running the app headless ---------------------------------------
def _bench_app(runs_dir: str, run_dir: str | None = None):
    """The parts this bench measures, as the workbench mounts them: the system header and the Monitor pane
    (with the app's stylesheet). The other panes are left out so their cost (and their bugs while they are
    being built) do not blur these figures; `--full-app` measures the whole workbench instead."""
    if FULL_APP:
        from tui.app import TuneBench

        return TuneBench(runs_dir=runs_dir, run=run_dir)
    from textual.app import App

    from tui.panes.monitor import MonitorPane
    from tui.widgets.sysheader import SystemHeader

    class MonitorOnly(App):
        CSS_PATH = str(ROOT / "tui" / "app.tcss")

        def compose(self):
            yield SystemHeader(runs_dir=runs_dir, id="system-header")
            yield MonitorPane(id="pane-monitor")

        def on_mount(self):
            if run_dir:
                self.query_one(MonitorPane).open_run(Path(run_dir))

    return MonitorOnly()


async def _wait(pilot, pred, what: str, timeout: float = 300.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        await pilot.pause(0.02)


def _child_attach(run_dir: str) -> dict:
    """Open the workbench on a run; time until the Monitor shows the whole history; RSS after."""
    import asyncio
    import resource

    import psutil

    out: dict = {}

    async def body():
        app = _bench_app(str(Path(run_dir).parent))
        async with app.run_test(size=(170, 60)) as pilot:
            await _wait(pilot, lambda: bool(app.query("#pane-monitor")), "the Monitor pane")
            await pilot.pause(0.5)
            out["rss_before_mb"] = psutil.Process().memory_info().rss / 2**20
            mon = app.query_one("#pane-monitor")
            me = psutil.Process()
            c0, t0 = sum(me.cpu_times()[:2]), time.perf_counter()
            mon.open_run(Path(run_dir))
            await _wait(pilot, lambda: mon.attach_s is not None and mon.redraws > 0, "the attach")
            out["attach_s"] = time.perf_counter() - t0  # open -> history parsed and first full redraw
            # CPU seconds the process spent meanwhile: on a shared, loaded machine this is the figure that
            # says what attaching costs (wall time there is mostly waiting for a core).
            out["attach_cpu_s"] = sum(me.cpu_times()[:2]) - c0
            out["parse_s"] = mon.attach_s
            out["worker_cpu_s"] = mon.attach_cpu_s  # the follower thread alone: parse + ingest
            await pilot.pause(0.5)
            out["events"] = mon.data.events
            out["buckets"] = max(len(s) for s in mon.data.train.values())
            out["series_mb"] = mon.data.nbytes() / 2**20
            out["rss_after_mb"] = psutil.Process().memory_info().rss / 2**20
            out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    asyncio.run(body())
    return out


def _child_follow(run_dir: str, seconds: float) -> dict:
    """Follow a run being written; sample the display lag (now - time of the newest step shown)."""
    import asyncio

    import psutil

    out: dict = {}

    async def body():
        app = _bench_app(str(Path(run_dir).parent), run_dir)
        async with app.run_test(size=(170, 60)) as pilot:
            await _wait(pilot, lambda: bool(app.query("#pane-monitor")), "the Monitor pane")
            mon = app.query_one("#pane-monitor")
            await _wait(pilot, lambda: mon.attach_s is not None, "the attach")
            me = psutil.Process()
            c0, t0, r0 = sum(me.cpu_times()[:2]), time.monotonic(), mon.redraws
            lags = []
            while time.monotonic() - t0 < seconds:
                await pilot.pause(0.25)
                with mon.data.lock:
                    shown = mon.data.last_metrics.get("time")
                if shown:
                    lags.append(time.time() - shown)
            wall = time.monotonic() - t0
            out["cpu_percent"] = 100 * (sum(me.cpu_times()[:2]) - c0) / wall
            out["redraws_per_s"] = (mon.redraws - r0) / wall
            out["lag_mean_s"] = sum(lags) / max(1, len(lags))
            out["lag_max_s"] = max(lags or [0])
            out["steps_shown"] = mon.data.step
            out["rss_mb"] = me.memory_info().rss / 2**20

    asyncio.run(body())
    return out


def _generate_live(run_dir: str, seconds: float, steps_per_s: float) -> None:
    """The fast run: append events in real time (metrics every step, telemetry every second)."""
    from engine.rundir.runs import Run

    run = Run(run_dir)
    run.write_status(state="running", pid=os.getpid(), pid_started=__import__("psutil").Process().create_time(),
                     started=time.time(), max_steps=int(seconds * steps_per_s) + 1, ended=None)
    t0 = time.time()
    start_seq = 0
    with open(run.events_path, "a") as f:
        for t, line in event_lines(10**9, t0, steps_per_s=steps_per_s, start_seq=start_seq):
            if t > seconds:
                break
            delay = t0 + t - time.time()
            if delay > 0:
                time.sleep(delay)
            f.write(line)
            f.flush()  # one write per event, as EventWriter does
    run.write_status(state="completed", ended=time.time())


def _child(args: list[str]) -> dict:
    args = args + (["--full-app"] if FULL_APP else [])
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, cwd=ROOT, timeout=900)
    if out.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,200000,1000000")
    ap.add_argument("--follow-seconds", type=float, default=30.0)
    ap.add_argument("--steps-per-s", type=float, default=20.0)
    ap.add_argument("--child-attach")
    ap.add_argument("--child-follow")
    ap.add_argument("--child-generate")
    ap.add_argument("--full-app", action="store_true", help="measure the whole workbench, every pane mounted")
    a = ap.parse_args()
    if a.child_attach:
        print(json.dumps(_child_attach(a.child_attach)))
        return
    if a.child_follow:
        print(json.dumps(_child_follow(a.child_follow, a.follow_seconds)))
        return
    if a.child_generate:
        _generate_live(a.child_generate, a.follow_seconds, a.steps_per_s)
        return
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (figures under load are slower); "
          f"{'whole workbench' if FULL_APP else 'system header + Monitor pane'} in a headless Textual app")
    with tempfile.TemporaryDirectory(prefix="tb-bench-") as tmp:
        runs = Path(tmp) / "runs"
        print(f"{'events':>9} {'file MB':>8} {'snapshot':>9} {'decoded':>8} {'attach s':>9} {'proc CPU':>8} "
              f"{'thread CPU':>10} {'CPU/100k':>8} {'RSS before':>11} {'RSS after':>10} {'peak RSS':>9} {'buckets':>8} "
              f"{'series MB':>10}")
        for n in [int(x) for x in a.sizes.split(",") if x]:
            rd = make_run(runs, name=f"n{n}")
            write_history(rd, n)
            size = (rd / "events.jsonl").stat().st_size
            for mode in ("engine's", "none"):
                offset = snapshot_as_engine(rd) if mode == "engine's" else 0
                if mode == "none":
                    (rd / "history.msgpack").unlink(missing_ok=True)
                decoded = round(n * (size - offset) / size)  # events decoded from events.jsonl (about)
                r = _child(["--child-attach", str(rd)])
                if r["events"] != n:
                    raise SystemExit(f"attached {r['events']} events of {n} ({mode} snapshot)")
                print(f"{n:>9} {size / 1e6:>8.1f} {mode:>9} {decoded:>8} {r['attach_s']:>9.3f} "
                      f"{r['attach_cpu_s']:>8.3f} {r['worker_cpu_s']:>10.3f} {r['worker_cpu_s'] / max(1, decoded) * 1e5:>8.3f} "
                      f"{r['rss_before_mb']:>9.1f}MB {r['rss_after_mb']:>8.1f}MB {r['peak_rss_mb']:>7.1f}MB "
                      f"{r['buckets']:>8} {r['series_mb']:>10.2f}", flush=True)
            (rd / "events.jsonl").unlink()
        # Baseline: the same app on a finished run (header sampling, Runs refresh): what idling costs.
        idle = make_run(runs, name="idle")
        write_history(idle, 1000)
        b = _child(["--child-follow", str(idle), "--follow-seconds", str(a.follow_seconds)])
        print(f"idle workbench on a finished run: TUI CPU {b['cpu_percent']:.1f}% of one core, "
              f"{b['redraws_per_s']:.1f} redraws/s, RSS {b['rss_mb']:.0f} MB")
        # Following a fast run: a generator appends in real time; the TUI follows it in another process.
        rd = make_run(runs, name="live")
        gen = subprocess.Popen([sys.executable, __file__, "--child-generate", str(rd),
                                "--follow-seconds", str(a.follow_seconds + 300), "--steps-per-s", str(a.steps_per_s)],
                               cwd=ROOT)
        time.sleep(2)
        try:  # the generator outlives the measurement whatever the app's start-up time; stopped after it
            r = _child(["--child-follow", str(rd), "--follow-seconds", str(a.follow_seconds)])
        finally:
            gen.terminate()
            gen.wait()
        print(f"following {a.steps_per_s:g} steps/s for {a.follow_seconds:g} s: TUI CPU {r['cpu_percent']:.1f}% of one "
              f"core, {r['redraws_per_s']:.1f} redraws/s, display lag mean {r['lag_mean_s']:.2f} s max "
              f"{r['lag_max_s']:.2f} s, RSS {r['rss_mb']:.0f} MB, {r['steps_shown']} steps shown")
        print(f"following costs {r['cpu_percent'] - b['cpu_percent']:.1f} percentage points of one core over idling")


if __name__ == "__main__":
    main()
