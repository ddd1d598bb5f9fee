"""Two torchrun "nodes" on this machine (gloo on the CPU, c10d rendezvous on 127.0.0.1), started the way a user
starts them: `tunebench train` on one, `tunebench join RUN` on the other. Rank 0 alone writes; stop, pause and
resume reach both nodes; a node killed mid-run fails the run by name and `--resume` continues it; a node that
sees another run directory fails the run before anything trains."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections import Counter

import psutil

from engine.rundir.events import read_events
from engine.rundir.runs import placement, resolve_run
from tests.conftest import ROOT, tunebench, wait_for, write_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_node_config(path, tiny_model, chat_jsonl, **training):
    return write_config(path, tiny_model, chat_jsonl,
                        training={"batch_size": 2, "learning_rate": 1e-3, **training},
                        hardware={"device": "cpu", "nnodes": 2, "nproc_per_node": 1,
                                  "rdzv_endpoint": f"127.0.0.1:{free_port()}"})


def join(run_ref, runs_dir) -> subprocess.Popen:
    """`tunebench join RUN` in the foreground, as on the second node: it exits with that node's status."""
    env = {**os.environ, "TUNEBENCH_RUNS_DIR": str(runs_dir)}
    return subprocess.Popen([sys.executable, "-m", "tunebench", "join", str(run_ref)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def workers(run) -> list[psutil.Process]:
    """The engine ranks of this run (not their torchrun agents)."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "engine.worker" in cmd and str(run.path) in cmd and "torch.distributed.run" not in cmd:
            out.append(p)
    return out


def launchers(run) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        if str(run.path) in " ".join(p.info["cmdline"] or []):
            out.append(p)
    return out


def status_is(run, *states, step=0, since=0.0):
    """A wait_for predicate: the status once it is in one of `states` at `step` or later (a launch after `since`)."""
    def check():
        st = run.status()
        if (st.get("started") or 0) <= since:
            return None  # the launch before: its final state is not this launch's
        assert st.get("state") != "failed" or "failed" in states, st.get("error")
        return st if st.get("state") in states and (st.get("step") or 0) >= step else None
    return check


def test_two_nodes_rank0_writes_controls_reach_both_and_a_killed_node_resumes(tiny_model, chat_jsonl, runs_dir,
                                                                                tmp_path):
    cfg = two_node_config(tmp_path / "two.yaml", tiny_model, chat_jsonl, max_steps=400, save_steps=2)
    r = tunebench("train", cfg, "--detach", runs_dir=runs_dir)
    assert r.returncode == 0, r.stderr
    assert "tunebench join" in r.stdout  # says how to start the other node
    run = resolve_run(runs_dir, r.stdout.split()[-1])
    assert placement(run.status()) == "2 nodes"  # before the rendezvous: what was launched
    second = join(run.id, runs_dir)
    st = wait_for(status_is(run, "running", step=2), timeout=300, what="both nodes training")

    # two nodes, one rank each, rank 0 on either; the status says where each rank runs
    ranks = workers(run)
    assert sorted(int(p.environ()["GROUP_RANK"]) for p in ranks) == [0, 1]
    assert sorted(int(p.environ()["RANK"]) for p in ranks) == [0, 1]
    assert [(n["node"], n["ranks"]) for n in st["nodes"]] in ([(0, [0]), (1, [1])], [(0, [1]), (1, [0])])
    assert st["nnodes"] == 2 and placement(st) == f"2 nodes ({socket.gethostname()})"
    rank0 = next(p for p in ranks if p.environ()["RANK"] == "0")
    assert st["pid"] == rank0.pid  # the writer is rank 0, on whichever node it landed

    # controls reach both nodes: DDP would break (a collective against a pause) if one node missed one
    run.send("pause")
    paused = wait_for(status_is(run, "paused"), timeout=120, what="paused")
    run.send("resume")
    wait_for(status_is(run, "running", step=paused["step"] + 2), timeout=120, what="stepping again after resume")

    # a node dies (its launcher and its rank, SIGKILL): the run fails naming it; the other node exits
    victim = next(p for p in ranks if p.environ()["RANK"] != "0")
    node = int(victim.environ()["GROUP_RANK"])
    agent = victim.parent()
    for p in (agent, victim):
        p.send_signal(signal.SIGKILL)
    failed = wait_for(status_is(run, "failed"), timeout=120, what="the run failed")
    assert f"lost node {node} (host {socket.gethostname()}, rank 1)" in failed["error"], failed["error"]
    assert f"tunebench train --resume {run.id}" in failed["error"] and "tunebench join" in failed["error"]
    second.wait(timeout=120)
    wait_for(lambda: not launchers(run), timeout=120, what="every process of the run gone")
    last = run.last_checkpoint()
    assert last is not None and last.step >= 2

    # resume: the first node with --resume, the second joins plainly; both continue from the checkpoint
    r = tunebench("train", "--resume", run.id, "--detach", runs_dir=runs_dir)
    assert r.returncode == 0, r.stderr
    second = join(run.id, runs_dir)
    wait_for(status_is(run, "running", step=last.step + 1, since=failed["started"]), timeout=300,
             what="the resumed run stepping")
    assert run.status()["resumed"] is True

    # now the node of rank 0 (the writer) dies: the surviving rank writes the failure in its place
    ranks = workers(run)
    victim = next(p for p in ranks if p.environ()["RANK"] == "0")
    node = int(victim.environ()["GROUP_RANK"])
    for p in (victim.parent(), victim):
        p.send_signal(signal.SIGKILL)
    failed2 = wait_for(status_is(run, "failed", since=failed["started"]), timeout=120, what="the run failed again")
    assert f"lost node {node} (host {socket.gethostname()}, rank 0)" in failed2["error"], failed2["error"]
    second.wait(timeout=120)
    wait_for(lambda: not launchers(run), timeout=120, what="every process of the run gone")
    last2 = run.last_checkpoint()

    # resume again and stop: the stop reaches both nodes, the joined node's share ends cleanly
    r = tunebench("train", "--resume", run.id, "--detach", runs_dir=runs_dir)
    assert r.returncode == 0, r.stderr
    second = join(run.id, runs_dir)
    wait_for(status_is(run, "running", step=last2.step + 1, since=failed2["started"]), timeout=300,
             what="the run resumed a second time")
    run.send("stop")
    final = wait_for(status_is(run, "stopped", since=failed2["started"]), timeout=180, what="stopped on both nodes")
    assert second.wait(timeout=120) == 0, second.stdout.read()  # the other node's rank stopped at the same step
    wait_for(lambda: not launchers(run), timeout=120, what="every process of the run gone")

    events = read_events(run.events_path)
    starts = [i for i, e in enumerate(events) if e["kind"] == "state" and e["state"] == "starting" and "pid" in e]
    assert len(starts) == 3  # one writer per launch: rank 0
    launches = [events[a:b] for a, b in zip(starts, starts[1:] + [len(events)])]
    for part in launches:
        steps = Counter(e["step"] for e in part if e["kind"] == "metrics")
        assert steps and max(steps.values()) == 1  # no rank but rank 0 wrote a metrics line
    for part, ckpt in ((launches[1], last), (launches[2], last2)):
        assert any(e["kind"] == "log" and e["message"] == f"resuming from {ckpt.name}" for e in part)
        assert min(e["step"] for e in part if e["kind"] == "metrics") == ckpt.step + 1
    assert [e["state"] for e in launches[0] if e["kind"] == "state"][-1] == "failed"
    # the survivor appended the failure after the dead rank 0's last line
    assert [(e["state"], e.get("error")) for e in launches[1] if e["kind"] == "state"][-1] == ("failed",
                                                                                             failed2["error"])
    assert final["step"] > last2.step >= last.step


def test_a_node_seeing_another_run_directory_fails_the_run_by_name(tiny_model, chat_jsonl, runs_dir, tmp_path):
    cfg = two_node_config(tmp_path / "two.yaml", tiny_model, chat_jsonl, max_steps=4)
    r = tunebench("train", cfg, "--detach", runs_dir=runs_dir)
    assert r.returncode == 0, r.stderr
    run = resolve_run(runs_dir, r.stdout.split()[-1])
    copy = tmp_path / "node-local" / run.id  # what a node whose runs directory is not the shared one would see
    shutil.copytree(run.path, copy)
    second = join(copy, runs_dir)
    failed = wait_for(status_is(run, "failed"), timeout=300, what="the run failed at the handshake")
    err = failed["error"]
    assert err.startswith("the run directory is not shared by every node: node "), err
    assert "sees a different directory there" in err and ("at " + str(copy) in err or "at " + str(run.path) in err)
    assert f"tunebench train --resume {run.id}" in err
    assert second.wait(timeout=120) != 0
    assert not run.checkpoints()  # nothing trained
    wait_for(lambda: not launchers(run), timeout=120, what="every process of the run gone")
    shutil.rmtree(copy)
