"""A 2-process DDP run on the CPU (torchrun, gloo): rank 0 alone writes; pause and stop reach both ranks."""
from __future__ import annotations

import time
from collections import Counter

import psutil

from engine.rundir.events import read_events
from engine.rundir.runs import resolve_run
from tests.conftest import tunebench, write_config


def wait_for(run, pred, timeout=240.0, what=""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = run.status()
        if pred(status):
            return status
        assert status.get("state") not in ("failed",), status.get("error")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; status {run.status()}; log:\n"
                         + run.log_path.read_text(errors="replace")[-3000:])


def run_processes(run) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if str(run.path) in " ".join(p.info["cmdline"] or []):
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def test_two_rank_ddp_rank0_writes_and_controls_reach_both(tiny_model, chat_jsonl, runs_dir, tmp_path):
    cfg = write_config(tmp_path / "ddp.yaml", tiny_model, chat_jsonl,
                       training={"max_steps": 400, "batch_size": 2, "save_steps": 2, "learning_rate": 1e-3},
                       hardware={"num_processes": 2, "device": "cpu"})
    r = tunebench("train", cfg, "--detach", runs_dir=runs_dir)
    assert r.returncode == 0, r.stderr
    run = resolve_run(runs_dir, r.stdout.split()[-1])
    wait_for(run, lambda s: s.get("state") == "running" and s.get("step", 0) >= 2, what="step 2")
    ranks = [p for p in run_processes(run) if "torch.distributed.run" not in " ".join(p.cmdline())]
    assert len(ranks) == 2  # two engine ranks under torchrun
    assert sorted(int(p.environ()["RANK"]) for p in ranks) == [0, 1]

    run.send("pause")
    paused = wait_for(run, lambda s: s.get("state") == "paused", what="paused")
    time.sleep(1.5)
    assert run.status()["step"] == paused["step"]  # neither rank stepped on (DDP would hang if one had)
    run.send("resume")
    wait_for(run, lambda s: s.get("state") == "running" and s.get("step", 0) > paused["step"], what="resumed")
    run.send("stop")
    final = wait_for(run, lambda s: s.get("state") == "stopped", what="stopped")
    assert final["step"] < 400
    deadline = time.monotonic() + 30
    while run_processes(run) and time.monotonic() < deadline:  # both ranks and torchrun exit after the stop
        time.sleep(0.2)
    assert not run_processes(run)

    events = read_events(run.events_path)
    starting = [e for e in events if e["kind"] == "state" and e["state"] == "starting" and "pid" in e]
    assert len(starting) == 1 and final["pid"] == starting[0]["pid"]  # one writer: rank 0
    resolved = next(e["resolved"] for e in events if e["kind"] == "state" and "resolved" in e)
    assert resolved["world_size"] == 2
    steps = Counter(e["step"] for e in events if e["kind"] == "metrics")
    assert steps and max(steps.values()) == 1  # no rank wrote a duplicate line
    saved = [e["step"] for e in events if e["kind"] == "checkpoint"]
    assert len(saved) == len(set(saved)) and saved[-1] == final["step"]
    on_disk = sorted(c.step for c in run.checkpoints())
    assert on_disk == sorted(set(saved)) and not list(run.checkpoints_dir.glob(".*"))
    assert [e["state"] for e in events if e["kind"] == "state"].count("paused") == 1
