"""Real runs on the tiny model through the real CLI, under accident: two resumers racing, status.json deleted
mid-run, controls batched between two steps, damaged and incomplete checkpoints, changed data, short writes."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from engine.rundir.events import read_events
from engine.rundir.lock import holder
from engine.rundir.runs import Run, list_runs
from engine.rundir.verify import verify_run
from tests.conftest import ROOT, tunebench, wait_for, write_config


def cli(*args, runs_dir, cwd=ROOT, env=None, timeout=600) -> subprocess.CompletedProcess:
    """The real command from any directory (tunebench() always runs from the project root)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TUNEBENCH_RUNS_DIR": str(runs_dir), **(env or {})}
    return subprocess.run([sys.executable, "-m", "tunebench", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


def sound(run: Run) -> None:
    problems = verify_run(run)
    assert not problems, "\n".join(problems)


def messages(run: Run) -> list[str]:
    return [e["message"] for e in read_events(run.events_path, ("log",))]


def lost_run(cfg, runs_dir, faults="kill_during_save=2") -> Run:
    """A run SIGKILLed inside a save: lost, with its earlier checkpoints complete."""
    r = tunebench("train", cfg, runs_dir=runs_dir, env={"TUNEBENCH_FAULTS": faults})
    assert r.returncode == 1, r.stdout + r.stderr
    (run,) = list_runs(runs_dir)
    assert run.state() == "lost"
    return run


# -- 1, 8, 9, 10, 11, 12: two resumers racing past a damaged checkpoint, then back to a step without optimizer state ------
def test_two_resumers_racing_past_a_damaged_checkpoint_then_back_to_a_step(tiny_model, chat_jsonl, runs_dir, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tiny_model, chat_jsonl, model={"trust_remote_code": True},
                       training={"max_steps": 12, "save_steps": 3})
    run = lost_run(cfg, runs_dir, "kill_during_save=4")  # checkpoints 3, 6, 9; killed inside the save at 12
    assert [c.step for c in run.checkpoints()] == [3, 6, 9]
    tokens = {c.step: c.meta["num_tokens"] for c in run.checkpoints()}
    weights = run.checkpoints_dir / "checkpoint-9" / "adapter_model.safetensors"
    weights.write_bytes(b"\xff" * 64)  # "SafetensorError: invalid header length" blocked every resume before
    run.send("stop")  # left behind by the killed engine's client: must not stop the resumed run
    before = len(read_events(run.events_path))

    env = {**os.environ, "TUNEBENCH_RUNS_DIR": str(runs_dir)}
    racers = [subprocess.Popen([sys.executable, "-m", "tunebench", "train", "--resume", run.id, "--detach"], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) + (p.returncode,) for p in racers]
    assert sorted(rc for _, _, rc in outs) == [0, 2], outs
    won = next(o for o in outs if o[2] == 0)
    refused = next(o for o in outs if o[2] == 2)[1].strip().splitlines()[-1]
    assert "held by engine pid" in refused and "Traceback" not in refused
    assert "checkpoint-6" in won[0] and "checkpoint-9 does not load" in won[1] and str(weights) in won[1]
    assert "trust_remote_code is on" in won[1]  # warned on --resume (and --detach), not only for a new run
    r = tunebench("train", "--resume", run.id, runs_dir=runs_dir)  # while the winner runs: refused early
    assert (r.returncode == 2 and "held by engine pid" in r.stderr) or run.state() == "completed", r.stderr
    wait_for(lambda: run.state() in ("completed", "stopped", "failed", "lost"), what="the resumed run to end")
    assert run.status()["state"] == "completed" and run.status()["step"] == 12
    sound(run)  # strictly increasing seq: one writer
    events = read_events(run.events_path)[before:]
    starts = [e for e in events if e["kind"] == "state" and e["state"] == "starting" and "pid" in e]
    assert len(starts) == 1, "one resumed engine; the loser wrote nothing"
    assert [e["step"] for e in events if e["kind"] == "checkpoint"] == [9, 12], "each checkpoint saved once"
    assert any("discarded 1 control file(s) sent before this engine started: stop" in m for m in messages(run))
    assert (run.checkpoints_dir / "damaged-checkpoint-9").is_dir()  # set aside, not deleted
    metrics = [e for e in events if e["kind"] == "metrics"]
    assert [m["step"] for m in metrics] == list(range(7, 13))
    assert metrics[0]["num_tokens"] > tokens[6] > 0, "num_tokens restarted at 0 after a resume"
    assert metrics[2]["num_tokens"] == tokens[9], "the same data order gives the same count"
    assert run.status()["last_loss"] == metrics[-1]["loss"], "status last_loss lagged the last step"
    loose = [f"{p.relative_to(run.path)} {oct(p.lstat().st_mode & 0o777)}" for p in [run.path, *run.path.rglob("*")]
             if p.lstat().st_mode & 0o077]
    assert not loose, loose  # optimizer.pt, training_args.bin, tokenizer files, .trainer/ included

    (run.checkpoints_dir / "checkpoint-6" / "optimizer.pt").unlink()
    r = tunebench("verify", run.id, runs_dir=runs_dir)
    assert r.returncode == 1 and "checkpoint-6: no optimizer.pt" in r.stdout
    r = tunebench("train", "--resume", f"{run.id}@6", runs_dir=runs_dir)
    assert r.returncode == 2 and "optimizer.pt" in r.stderr and "--resume-weights-only" in r.stderr
    r = tunebench("train", "--resume", f"{run.id}@6", "--set", "training.learning_rate=1", runs_dir=runs_dir)
    assert r.returncode == 2 and "training.learning_rate" in r.stderr
    r = tunebench("train", "--resume", f"{run.id}@6", "--resume-weights-only", "--set", "training.save_total_limit=2",
                  runs_dir=runs_dir)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "step 3: checkpoint saved" not in r.stdout, "a foreground resume shows only its own events"
    assert run.status()["state"] == "completed" and run.settings().training.save_total_limit == 2
    log = messages(run)
    assert any("resuming weights only from checkpoint-6" in m for m in log)
    assert any("settings changed on resume: training.save_total_limit 0 -> 2" in m for m in log)
    assert (run.checkpoints_dir / "superseded-checkpoint-12").is_dir()  # set aside, not deleted
    assert [c.step for c in run.checkpoints()] == [9, 12]  # save_total_limit 2 from now on


# -- 2, 8: status.json deleted mid-run; controls batched between two steps ------------------------------------------
def test_a_deleted_status_and_batched_controls_on_a_live_run(tiny_model, chat_jsonl, runs_dir, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tiny_model, chat_jsonl, training={"max_steps": 100000})
    r = tunebench("train", cfg, "--detach", runs_dir=runs_dir)
    assert r.returncode == 0, r.stderr
    run = Run(runs_dir / r.stdout.split()[-1])
    wait_for(lambda: run.status().get("step", 0) >= 2, what="2 steps")
    pid = run.status()["pid"]

    run.status_path.unlink()  # a careless `rm`: the run must not vanish, refuse stop or accept a second engine
    st = tunebench("status", run.id, "--json", runs_dir=runs_dir)
    assert st.returncode == 0 and json.loads(st.stdout)["state"] == "running", st.stdout + st.stderr
    assert run.id in tunebench("runs", runs_dir=runs_dir).stdout
    again = tunebench("train", "--resume", run.id, runs_dir=runs_dir)
    assert again.returncode == 2 and f"held by engine pid {pid}" in again.stderr
    back = wait_for(lambda: run.status_path.exists() and run.status(), what="the engine to rewrite its status")
    assert back["pid"] == pid and back["method"] == "sft" and back["model"] == str(tiny_model) and back["created"]
    run.status_path.write_text("{damaged")
    assert json.loads(tunebench("status", run.id, "--json", runs_dir=runs_dir).stdout)["state"] == "running"

    def between_steps(*commands):
        """Controls that reach the engine in one batch: it is stopped (SIGSTOP) while they are sent."""
        os.kill(pid, signal.SIGSTOP)
        try:
            for c in commands:
                assert tunebench(c, run.id, runs_dir=runs_dir).returncode == 0
        finally:
            os.kill(pid, signal.SIGCONT)

    step = wait_for(lambda: run.status().get("step"), what="a readable status again")
    between_steps("pause", "resume")  # left the run paused forever before (the resume was lost)
    wait_for(lambda: run.status().get("step", 0) > step + 2, what="steps after pause+resume")
    assert run.state() == "running"
    between_steps("pause", "save")  # the save happens while paused, and the run stays paused after it
    paused = wait_for(lambda: run.status().get("state") == "paused" and run.last_checkpoint() and run.status(),
                      what="a checkpoint saved while paused")
    assert run.last_checkpoint().step == paused["step"] and run.state() == "paused"
    between_steps("eval", "stop")  # no eval data: a warning; the stop ends it
    wait_for(lambda: run.state() == "stopped", what="stopped")
    assert run.status()["step"] == paused["step"], "no step ran between the pause and the stop"
    states = [e["state"] for e in read_events(run.events_path, ("state",))]
    assert states[-3:] == ["paused", "stopping", "stopped"]
    assert any(m.startswith("controls at step") and m.endswith("pause, resume") for m in messages(run))
    sound(run)
    assert holder(run.path) is None


# -- 3: a really full filesystem, at several sizes ------------------------------------------------------------------
def _mount_tmpfs(path, size) -> bool:
    if os.geteuid() != 0:
        return False
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.mark.parametrize("size", ["200k", "4m"])  # nothing fits / several checkpoints fit (bench/faults.py: more)
def test_a_full_filesystem_always_ends_failed_with_the_reason(tiny_model, chat_jsonl, tmp_path, size):
    """Before: `lost` with no message in 6 of 7 tries (the traceback was printed first, into the full disk)."""
    mnt = tmp_path / "small"
    if not _mount_tmpfs(mnt, size):
        pytest.skip("cannot mount a small tmpfs here (needs root); test_faults' injected ENOSPC covers the path")
    try:
        cfg = write_config(tmp_path / "c.yaml", tiny_model, chat_jsonl, training={"max_steps": 12, "save_steps": 1})
        r = tunebench("train", cfg, runs_dir=mnt / "runs")
        assert r.returncode in (1, 2), r.stdout + r.stderr
        runs = list_runs(mnt / "runs")
        if not runs:  # not even config.yaml fit: refused before a run existed
            assert "cannot create a run" in r.stderr and "No space left" in r.stderr, r.stderr
            return
        (run,) = runs
        st = run.status()
        assert st["state"] == "failed" and st["error"].startswith("Disk full while writing at step"), st
        assert "0 MiB free of 0.0 GiB" not in st["error"] and "--resume" in st["error"]
        assert not (run.path / ".trainer").exists() and not (run.path / ".reserve").exists()
        sound(run)
        last = read_events(run.events_path)[-1]
        assert last["kind"] == "state" and last["state"] == "failed", last
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# -- 4: short writes -------------------------------------------------------------------------------------------------
def test_a_short_write_leaves_whole_lines_and_a_visible_failure(tiny_model, chat_jsonl, runs_dir, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tiny_model, chat_jsonl, training={"max_steps": 12, "save_steps": 3})
    r = tunebench("train", cfg, runs_dir=runs_dir, env={"TUNEBENCH_FAULTS": "short_write=8"})
    assert r.returncode == 1, r.stdout + r.stderr
    (run,) = list_runs(runs_dir)
    assert run.status()["state"] == "failed" and "Disk full" in run.status()["error"]
    data = run.events_path.read_bytes()
    assert data.endswith(b"\n") and all(line.startswith(b'{"seq":') for line in data.splitlines())
    last = read_events(run.events_path)[-1]
    assert last["kind"] == "state" and last["state"] == "failed"
    sound(run)


# -- 5, 6, 18: relative paths, changed data, data.train required ---------------------------------------------------------
def test_relative_paths_and_changed_data(tiny_model, chat_jsonl, runs_dir, tmp_path):
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    data = work / "data" / "train.jsonl"
    shutil.copy(chat_jsonl, data)
    write_config(work / "c.yaml", tiny_model, "data/train.jsonl", training={"max_steps": 8, "save_steps": 2})
    r = cli("train", "c.yaml", runs_dir=runs_dir, cwd=work, env={"TUNEBENCH_FAULTS": "kill_during_save=2"})
    assert r.returncode == 1, r.stdout + r.stderr
    (run,) = list_runs(runs_dir)
    assert run.config()["data"]["train"] == str(data), "config.yaml keeps the path it was created with, absolute"
    assert json.loads((run.path / "data.json").read_text())["rows"] == 64

    with open(data, "a") as f:
        f.write(json.dumps({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}) + "\n")
    r = cli("train", "--resume", run.id, runs_dir=runs_dir, cwd=tmp_path)  # another directory
    assert r.returncode == 2 and "changed since" in r.stderr and "rows 64 -> 65" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    engine = subprocess.run([sys.executable, "-m", "engine.worker", str(run.path), "--resume"], cwd=tmp_path,
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert engine.returncode == 1 and run.status()["state"] == "failed"  # the engine refuses too
    assert "changed since" in run.status()["error"] and "traceback in engine.log" not in run.status()["error"]
    shutil.copy(chat_jsonl, data)  # the same bytes again (a new mtime): the same data
    r = cli("train", "--resume", run.id, runs_dir=runs_dir, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert run.status()["state"] == "completed"

    nodata = work / "nodata.yaml"
    nodata.write_text(f"model: {{name_or_path: {tiny_model}}}\n")
    r = cli("train", nodata, runs_dir=tmp_path / "other", cwd=work, timeout=120)
    assert r.returncode == 2 and "data.train: required" in r.stderr and not (tmp_path / "other").exists()


# -- 17: a run whose launcher died before its engine started ---------------------------------------------------------------
def test_a_never_started_run_shows_so_and_resumes(tiny_model, chat_jsonl, runs_dir, tmp_path):
    from engine import config as C
    from engine.rundir.runs import create_run

    run = create_run(runs_dir, C.load_config(write_config(tmp_path / "c.yaml", tiny_model, chat_jsonl,
                                                          training={"max_steps": 2})))
    run.launching.release()  # the workbench was killed right after Launch
    assert json.loads(tunebench("status", run.id, "--json", runs_dir=runs_dir).stdout)["state"] == "unstarted"
    r = tunebench("train", "--resume", run.id, runs_dir=runs_dir)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "from the start" in r.stdout and run.status()["state"] == "completed"
