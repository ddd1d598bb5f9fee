"""Concurrency: two runs at once, two readers of one run, listing while runs come and go, and a helper
process whose workbench dies mid-comparison."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time

import psutil

from engine import config as C
from engine.rundir.events import EventTail
from engine.rundir.runs import create_run, list_runs
from tests.conftest import ROOT, write_config
from tests.test_engine_train import detached, wait_for
from tunebench.commands.runs import summary


def test_listing_while_runs_are_created_and_deleted(tmp_path):
    runs = tmp_path / "runs"
    cfg = C.load_config(None, ["model.name_or_path=m", "data.train=d.jsonl"])
    stop = threading.Event()
    errors = []

    def churn():
        while not stop.is_set():
            r = create_run(runs, cfg)
            r.write_status(state="running", pid=os.getpid())
            shutil.rmtree(r.path)

    t = threading.Thread(target=churn)
    t.start()
    try:
        deadline = time.monotonic() + 2.0
        listed = 0
        while time.monotonic() < deadline:
            try:
                for r in list_runs(runs):
                    summary(r)  # what `tunebench runs` and the Runs pane read
                    listed += 1
            except Exception as e:  # noqa: BLE001 - the finding
                errors.append(repr(e))
    finally:
        stop.set()
        t.join()
    assert not errors, errors[:3]


def test_two_runs_at_once_and_two_readers_of_one_run(tiny_model, chat_jsonl, runs_dir, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tiny_model, chat_jsonl, training={"max_steps": 8})
    a, b = detached(cfg, runs_dir), detached(cfg, runs_dir)
    assert a.id != b.id
    readers = [EventTail(a.events_path), EventTail(a.events_path)]
    seen = [[], []]
    while a.state() not in ("completed", "failed", "lost") or b.state() not in ("completed", "failed", "lost"):
        for i, rd in enumerate(readers):
            seen[i] += [e["seq"] for e in rd.read()]
        time.sleep(0.05)
    for i, rd in enumerate(readers):
        seen[i] += [e["seq"] for e in rd.read()]
    assert a.status()["state"] == b.status()["state"] == "completed"
    assert seen[0] == seen[1] == list(range(len(seen[0])))  # each reader saw every event once, in order
    for r in (a, b):
        assert [c.step for c in r.checkpoints()] == [8]
        assert all(e.get("step") in (None, *range(9)) for e in EventTail(r.events_path).read())


def test_helper_process_ends_when_its_workbench_is_killed_mid_comparison(tiny_model, tmp_path):
    """The TUI (here a stand-in parent) is SIGKILLed while the helper generates: the helper sees its
    stdin close and exits, discarding the comparison; nothing is left holding the model in memory."""
    request = {"id": 1, "op": "compare", "args": {
        "a": str(tiny_model), "b": str(tiny_model), "prompts": [{"text": f"count {i}"} for i in range(50)],
        "decoding": {"max_new_tokens": 200}, "device": "cpu", "metrics": False}}
    parent = subprocess.Popen([sys.executable, "-c", f"""
import subprocess, sys, time
p = subprocess.Popen([sys.executable, "-m", "engine.helper"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
p.stdin.write({(json.dumps(request) + chr(10))!r}.encode()); p.stdin.flush()
print(p.pid, flush=True)
for line in p.stdout:
    if b'"token"' in line or b'"phase"' in line:
        print("generating", flush=True)
        break
time.sleep(600)
"""], cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True)
    helper_pid = int(parent.stdout.readline())
    assert parent.stdout.readline().strip() == "generating"
    helper = psutil.Process(helper_pid)
    parent.kill()  # only the parent: the helper must notice its stdin closing
    parent.wait()
    wait_for(lambda: not helper.is_running() or helper.status() == psutil.STATUS_ZOMBIE, timeout=30,
             what="the orphaned helper to exit")
