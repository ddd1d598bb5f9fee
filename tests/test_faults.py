"""Fault injection (short CI version; bench/faults.py is the long one): kills, full disks, resumes.

Invariants checked after every fault: every listed checkpoint is complete and loads, no partial save is
listed, the event log holds no corrupt line but a torn last one, and `--resume` reaches the planned final
step on the same trajectory (per-step losses equal to an uninterrupted run's).
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import time

import pytest

from engine.rundir.runs import Run, list_runs
from engine.rundir.verify import losses_by_step, verify_run
from tests.conftest import tunebench, write_config
from tests.test_engine_train import wait_for

STEPS = 12


def check_invariants(run: Run) -> None:
    problems = verify_run(run)
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def reference(tiny_model, chat_jsonl, tmp_path_factory):
    """An uninterrupted run: the trajectory that every resumed run must reproduce."""
    tmp = tmp_path_factory.mktemp("ref")
    cfg = write_config(tmp / "c.yaml", tiny_model, chat_jsonl, training={"max_steps": STEPS, "save_steps": 3})
    r = tunebench("train", cfg, runs_dir=tmp / "runs")
    assert r.returncode == 0, r.stderr
    (run,) = list_runs(tmp / "runs")
    return cfg, losses_by_step(run)


def start(cfg, runs_dir, faults: str = "", resume: str | None = None) -> subprocess.CompletedProcess:
    env = {"TUNEBENCH_FAULTS": faults} if faults else {}
    args = ["train", "--resume", resume] if resume else ["train", cfg]
    return tunebench(*args, runs_dir=runs_dir, env=env)


def test_kills_inside_checkpoint_saves_never_leave_a_partial_checkpoint(reference, runs_dir):
    cfg, ref = reference
    # SIGKILL after the weights of the 2nd save (step 6) are written, before the optimizer state
    start(cfg, runs_dir, "kill_during_save=2")
    (run,) = list_runs(runs_dir)
    assert run.state() == "lost"
    assert [c.step for c in run.checkpoints()] == [3]
    check_invariants(run)
    # SIGKILL after the next save is complete in staging but before it is renamed into place
    start(cfg, runs_dir, "kill_before_rename=1", resume=run.id)
    assert run.state() == "lost"
    assert [c.step for c in run.checkpoints()] == [3], "a save that was not renamed must not count"
    check_invariants(run)
    r = start(cfg, runs_dir, resume=run.id)
    assert r.returncode == 0, r.stderr
    assert run.status()["state"] == "completed" and run.status()["step"] == STEPS
    check_invariants(run)
    got = losses_by_step(run)
    assert sorted(got) == list(range(1, STEPS + 1))
    worst = max(abs(got[s] - ref[s]) for s in ref)
    assert worst < 1e-4, f"resumed trajectory drifted by {worst}"


def test_random_sigkills_then_resume_until_done(reference, runs_dir):
    cfg, ref = reference
    rng = random.Random(7)
    run, kills = None, 0
    while True:
        if run is None:
            r = tunebench("train", cfg, "--detach", runs_dir=runs_dir)
            run = Run(runs_dir / r.stdout.strip().splitlines()[-1])
        else:
            tunebench("train", "--resume", run.id, "--detach", runs_dir=runs_dir)
        if kills == 3:
            break
        # kill somewhere between the model load and the end of training (1 step is ~50 ms here)
        wait_for(lambda: run.status().get("state") == "running", what="running")
        time.sleep(rng.uniform(0.0, 0.6))
        try:
            os.kill(run.status()["pid"], signal.SIGKILL)
            kills += 1
        except ProcessLookupError:
            pass
        wait_for(lambda: run.state() in ("lost", "completed"), timeout=30, what="the kill to land")
        check_invariants(run)
        if run.state() == "completed":
            break
    wait_for(lambda: run.state() in ("completed", "failed", "lost"), timeout=600, what="completion")
    assert run.state() == "completed" and run.status()["step"] == STEPS
    check_invariants(run)
    got = losses_by_step(run)
    assert max(abs(got[s] - ref[s]) for s in ref) < 1e-4


def test_disk_full_during_a_save_fails_clearly_and_resumes(reference, runs_dir):
    cfg, ref = reference
    r = start(cfg, runs_dir, "enospc_during_save=2")
    assert r.returncode == 1
    (run,) = list_runs(runs_dir)
    st = run.status()
    assert st["state"] == "failed" and st["error"].startswith("Disk full while writing at step 6")
    assert "checkpoints up to step 3 are intact" in st["error"] and "--resume" in st["error"]
    assert not (run.path / ".trainer").exists(), "the partial save must be cleared"
    check_invariants(run)
    assert start(cfg, runs_dir, resume=run.id).returncode == 0
    assert run.status()["state"] == "completed" and run.status()["step"] == STEPS


def _mount_tmpfs(path, size):
    if os.geteuid() != 0:
        return False
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                       capture_output=True)
    return r.returncode == 0


def test_a_really_full_filesystem(reference, tmp_path):
    cfg, _ = reference
    mnt = tmp_path / "small"
    if not _mount_tmpfs(mnt, "1200k"):
        pytest.skip("cannot mount a small tmpfs here (needs root); the injected ENOSPC test covers the path")
    try:
        runs_dir = mnt / "runs"
        r = tunebench("train", cfg, "--set", "training.save_steps=1", runs_dir=runs_dir)
        assert r.returncode == 1, r.stdout + r.stderr
        (run,) = list_runs(runs_dir)
        st = run.status()
        assert st["state"] == "failed" and "Disk full" in st["error"], st
        check_invariants(run)
        n_before = len(run.checkpoints())
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)  # room again
        r = tunebench("train", "--resume", run.id, runs_dir=runs_dir)
        assert r.returncode == 0, r.stdout + r.stderr
        assert run.status()["state"] == "completed" and len(run.checkpoints()) > n_before
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
