"""`tunebench train --slurm` on a real single-node Slurm cluster (slurmctld + slurmd from Debian's packages, started
by .ci/slurm-up.sh): a run seen queued, running and completed in `tunebench runs`; a pending one cancelled by
`tunebench stop`; one killed at its time limit failing with Slurm's reason; a requeued (preempted) one resuming
from its checkpoint. The script itself (`--slurm-print`) is checked without a cluster."""
from __future__ import annotations

import json
import stat
import subprocess

import pytest

from engine.rundir.events import read_events
from engine.rundir.runs import resolve_run
from tests.conftest import tunebench, wait_for, write_config


def sh(*argv: str) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"{' '.join(argv)}: {r.stderr}"
    return r.stdout.strip()


@pytest.fixture(scope="module")
def cluster():
    """The local cluster, or a skip saying why it is not there; cancels every job the tests submitted."""
    from engine.rundir.slurm import available

    why = available()
    if why:
        pytest.skip(f"no Slurm here: {why}; .ci/slurm-up.sh (as root) installs and starts a local cluster")
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    if "UP" not in ping.stdout:
        pytest.skip(f"slurmctld does not answer ({(ping.stdout + ping.stderr).strip()}): run .ci/slurm-up.sh as root")
    state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30).stdout.split()
    if not any(s.startswith(("idle", "mixed", "alloc")) for s in state):
        pytest.skip(f"no Slurm node takes jobs (sinfo: {' '.join(state) or 'nothing'}): run .ci/slurm-up.sh as root")
    jobs: list[str] = []
    yield jobs
    for job in jobs:
        subprocess.run(["scancel", job], capture_output=True, timeout=30)


def blocker(cluster) -> str:
    """A job holding the whole node, so the next ones wait in the queue (Slurm's reason: Resources/Priority)."""
    job = sh("sbatch", "--parsable", "--exclusive", "--job-name=tunebench-test-blocker", "--output=/dev/null",
             "--wrap", "sleep 600")
    cluster.append(job)
    wait_for(lambda: sh("squeue", "-h", "-j", job, "-o", "%T") == "RUNNING", timeout=120, what="the blocker running")
    return job


def runs_json(runs_dir) -> dict:
    r = tunebench("runs", "--json", runs_dir=runs_dir, timeout=120)
    assert r.returncode == 0, r.stderr
    return {row["id"]: row for row in json.loads(r.stdout)}


def submit(cluster, cfg, runs_dir, *flags) -> str:
    r = tunebench("train", cfg, "--slurm", "--detach", *flags, runs_dir=runs_dir, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "submitted Slurm job" in r.stdout
    run_id = r.stdout.split()[-1]
    cluster.append(resolve_run(runs_dir, run_id).status()["slurm"]["job_id"])
    return run_id


def test_slurm_print_writes_the_script_and_creates_nothing(tiny_model, chat_jsonl, runs_dir, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tiny_model, chat_jsonl, hardware={"device": "cpu"})
    r = tunebench("train", cfg, "--slurm-print", "--partition", "gpu", "--nodes", "2", "--gpus-per-node", "4",
                  "--time", "1:30", "--account", "proj7", "--requeue", "--sbatch=--mem=64G", runs_dir=runs_dir)
    assert r.returncode == 0, r.stderr
    text = r.stdout
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=4",
                 "#SBATCH --partition=gpu", "#SBATCH --account=proj7", "#SBATCH --time=01:30:00",
                 "#SBATCH --requeue", "#SBATCH --mem=64G"):
        assert line in text.splitlines(), line
    srun = next(line for line in text.splitlines() if line.startswith("srun "))
    assert "-m torch.distributed.run" in srun and "--nproc_per_node=4" in srun
    assert '"--nnodes=${SLURM_JOB_NUM_NODES}"' in srun and '"--rdzv_endpoint=${HEAD_NODE}:${RDZV_PORT}"' in srun
    assert srun.endswith("$RESUME") and "--rdzv_backend=c10d" in srun
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0  # the script parses
    assert not runs_dir.exists() or not any(runs_dir.iterdir())  # printing creates no run

    bad = tunebench("train", cfg, "--slurm-print", "--time", "90 minutes", runs_dir=runs_dir)
    assert bad.returncode == 2 and "--time '90 minutes': give HH:MM" in bad.stderr
    two = write_config(tmp_path / "two.yaml", tiny_model, chat_jsonl, hardware={"device": "cpu", "nnodes": 3})
    bad = tunebench("train", two, "--slurm-print", "--nodes", "2", runs_dir=runs_dir)
    assert bad.returncode == 2 and "--nodes 2 contradicts hardware.nnodes 3" in bad.stderr


def test_queued_running_completed_a_pending_job_cancelled_and_a_time_limit(cluster, tiny_model, chat_jsonl, runs_dir,
                                                                           tmp_path):
    """Three runs wait behind a job holding the node: one is cancelled while pending, then the node frees up and
    the other two run side by side (one CPU each): one completes, one is killed by its one-minute time limit."""
    short = write_config(tmp_path / "short.yaml", tiny_model, chat_jsonl, hardware={"device": "cpu"},
                         training={"max_steps": 20, "batch_size": 2, "save_steps": 10, "learning_rate": 1e-3})
    long = write_config(tmp_path / "long.yaml", tiny_model, chat_jsonl, hardware={"device": "cpu"},
                        training={"max_steps": 100000, "batch_size": 2, "save_steps": 10, "learning_rate": 1e-3})
    hold = blocker(cluster)
    done_id = submit(cluster, short, runs_dir, "--time", "00:10")
    cancel_id = submit(cluster, short, runs_dir)
    limit_id = submit(cluster, long, runs_dir, "--time", "1")  # one minute: Slurm's smallest limit
    rows = runs_json(runs_dir)
    for run_id in (done_id, cancel_id, limit_id):
        job = resolve_run(runs_dir, run_id).status()["slurm"]["job_id"]
        assert rows[run_id]["state"] == "queued" and rows[run_id]["where"] == f"slurm {job} PENDING", rows[run_id]

    # stop on a pending job takes it out of the queue: scancel, and the run says it never started
    r = tunebench("stop", cancel_id, runs_dir=runs_dir)
    assert r.returncode == 0 and "cancelled Slurm job" in r.stdout, r.stderr
    row = runs_json(runs_dir)[cancel_id]
    assert row["state"] == "stopped" and row["slurm"]["state"] == "CANCELLED", row
    assert "cancelled before it started" in row["note"]

    sh("scancel", hold)  # the node frees up: Slurm starts the queued runs
    seen = []

    def completed():
        row = runs_json(runs_dir)[done_id]
        if not seen or seen[-1] != row["state"]:
            seen.append(row["state"])
        assert row["state"] != "failed", row["error"]
        return row if row["state"] == "completed" and row["where"].endswith(" COMPLETED") else None
    row = wait_for(completed, timeout=600, every=0.5, what="the Slurm run completed, and its job")
    # queued until the node freed (asserted above); then the engine's own states, read from its events (a poll
    # every 0.5 s may miss a short `running` on a quiet machine)
    states = [e["state"] for e in read_events(resolve_run(runs_dir, done_id).events_path, ("state",))]
    assert [x for x in states if x in ("starting", "running", "completed")][-3:] == ["starting", "running",
                                                                                      "completed"], (states, seen)
    assert row["where"] == f"slurm {row['slurm']['job_id']} COMPLETED" and row["step"] == 20
    run = resolve_run(runs_dir, done_id)
    assert (run.path / "slurm.sh").is_file() and list(run.path.glob("slurm-*.out"))
    for p in [run.path / "slurm.sh", *run.path.glob("slurm-*.out")]:  # private like every file of a run
        assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, (p, oct(p.stat().st_mode))
    r = tunebench("status", done_id, runs_dir=runs_dir)
    assert "slurm            job_id=" in r.stdout and "state=COMPLETED" in r.stdout

    # the time limit: Slurm's SIGTERM, the engine saves and records Slurm's reason, then Slurm says TIMEOUT
    def over():
        st = runs_json(runs_dir)[limit_id]
        return st if st["state"] in ("failed", "completed", "stopped") and st["slurm"]["state"] == "TIMEOUT" else None
    row = wait_for(over, timeout=600, every=2, what="Slurm's time limit")
    assert row["state"] == "failed", row
    run = resolve_run(runs_dir, limit_id)
    job, err = row["slurm"]["job_id"], row["error"]
    assert err.startswith(f"Slurm job {job} reached its time limit of 00:01:00 (JobState=TIMEOUT, Reason=TimeLimit)"), err
    assert f"tunebench train --resume {limit_id} --time HH:MM" in err
    last = run.last_checkpoint()
    if last is not None:  # training had begun: the engine saved between Slurm's SIGTERM and SIGKILL, and said why
        assert f"at step {row['step']}; {last.name} is saved" in err and last.step == row["step"]
        assert any(e["kind"] == "state" and e["state"] == "failed" and e.get("error") == err
                   for e in read_events(run.events_path))
    else:  # a loaded machine was still loading the model: SIGKILLed, and the watcher wrote Slurm's reason
        assert "no checkpoint was saved" in err


def test_requeued_job_resumes_from_its_checkpoint(cluster, tiny_model, chat_jsonl, runs_dir, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tiny_model, chat_jsonl, hardware={"device": "cpu"},
                       training={"max_steps": 16, "batch_size": 2, "save_steps": 4, "learning_rate": 1e-3})
    run_id = submit(cluster, cfg, runs_dir, "--requeue")
    run = resolve_run(runs_dir, run_id)
    job = run.status()["slurm"]["job_id"]
    wait_for(lambda: run.last_checkpoint() is not None and run.status().get("state") == "running", timeout=600,
             what="a first checkpoint")
    sh("scontrol", "requeue", job)  # what preemption with PreemptMode=REQUEUE does: SIGTERM, then back in the queue
    queued = wait_for(lambda: (st := run.status()).get("state") == "queued" and st, timeout=300,
                      what="the run back in the queue")
    assert f"Slurm requeued job {job}" in queued["note"] or "preempted at step" in queued["note"], queued
    final = wait_for(lambda: (st := run.status()).get("state") in ("completed", "failed") and st, timeout=600,
                     what="the requeued run finishing")
    assert final["state"] == "completed", final.get("error")
    events = read_events(run.events_path)
    resumed = [e["message"] for e in events if e["kind"] == "log" and e["message"].startswith("resuming from")]
    assert resumed and resumed[-1].startswith("resuming from checkpoint-"), resumed
    assert final["slurm"]["restarts"] >= 1 and final["step"] == 16

