"""The multi-node and Slurm pieces that need no cluster: the hardware keys and their rules, the launch commands,
what a run's status says about where it runs, `queued`, and the refusals of the CLI and the workbench."""
from __future__ import annotations

import socket
import sys

import pytest

from engine import config as cfgmod
from engine.rundir import launch, slurm
from engine.rundir.runs import ACTIVE, FINAL, LIVE, STATES, WAITING, create_run, placement
from tests.conftest import tunebench, write_config
from tui.launching import launch_run


def problems_of(**hardware) -> dict:
    _, problems = cfgmod.validate({"model": {"name_or_path": "m"}, "data": {"train": "d.jsonl"}, "hardware": hardware})
    return {p.path: p for p in problems}


def cfg_with(**hardware) -> cfgmod.Config:
    return cfgmod.Config().with_values({"model.name_or_path": "m", "data.train": "train.jsonl", **{f"hardware.{k}": v for k, v in hardware.items()}})


def test_hardware_keys_and_their_rules():
    assert problems_of(nnodes=2, nproc_per_node=4, rdzv_endpoint="node001:29500") == {}
    for bad in ("node001", ":29500", "node001:http", "node001:70000", "node001:0"):
        p = problems_of(nnodes=2, rdzv_endpoint=bad)["hardware.rdzv_endpoint"]
        assert p.message == f"{bad!r} is not host:port" and "first node's address" in p.fix
    p = problems_of(nproc_per_node=2, num_processes=4)["hardware.nproc_per_node"]
    assert "contradicts hardware.num_processes 4" in p.message and p.keys() == ("hardware.nproc_per_node",
                                                                                   "hardware.num_processes")
    assert problems_of(nnodes=0)["hardware.nnodes"].message == "0 is below the minimum 1"
    _, problems = cfgmod.validate({"model": {"name_or_path": "m"}, "adapter": {"kind": "none"},
                                   "training": {"freeze": ["*embed*"], "unfreeze_every": 5}, "hardware": {"nnodes": 2}})
    assert any(p.path == "training.unfreeze_every" and "single-process" in p.message for p in problems)


def test_launch_commands_for_one_node_and_for_several():
    args = ["-m", "engine.worker", "/runs/r1"]
    assert launch.command(cfg_with().hardware, args) == [sys.executable, *args]
    assert launch.command(cfg_with(num_processes=2).hardware, args)[2:5] == [
        "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    two = cfg_with(nnodes=2, nproc_per_node=4, rdzv_endpoint="node001:29500").hardware
    assert launch.command(two, args, rdzv_id="r1") == [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=4", "--rdzv_backend=c10d",
        "--rdzv_endpoint=node001:29500", "--rdzv_id=r1", *args]
    acc = launch.command(two.replace(accelerate_config="fsdp.yaml"), args, rdzv_id="r1")
    assert acc[2:] == ["accelerate.commands.launch", "--config_file", "fsdp.yaml", "--num_machines", "2",
                       "--num_processes", "8", "--machine_rank", "0", "--main_process_ip", "node001",
                       "--main_process_port", "29500", "--rdzv_backend", "c10d", *args]
    assert launch.local_problems(cfg_with(nnodes=2).hardware)[0].path == "hardware.rdzv_endpoint"
    assert launch.local_problems(two) == []


def test_queued_is_one_state_for_every_scheduler():
    assert "queued" in STATES and WAITING == ("queued",) and not set(WAITING) & set(ACTIVE)
    assert set(LIVE) == set(WAITING) | set(ACTIVE) and not set(LIVE) & set(FINAL)


def test_placement_says_where_a_run_runs():
    me = socket.gethostname()
    assert placement({"host": me}) == "local" and placement({}) == "local"
    assert placement({"host": "gpu-07"}) == "gpu-07"
    assert placement({"nnodes": 2}) == "2 nodes"
    assert placement({"nodes": [{"host": "a"}, {"host": "b"}, {"host": "b"}]}) == "3 nodes (a, b)"
    assert placement({"slurm": {"job_id": "7", "state": "PENDING"}}) == "slurm 7 PENDING"
    assert placement({"slurm": {"job_id": "7", "state": "RUNNING", "nodelist": "gpu[1-2]"}}) == "slurm 7 RUNNING gpu[1-2]"
    assert placement({"slurm": {"job_id": "7", "state": "TIMEOUT", "nodelist": "gpu1"}}) == "slurm 7 TIMEOUT"


def test_queued_run_is_never_lost(tmp_path):
    run = create_run(tmp_path / "runs", cfg_with())
    run.write_status(state="queued", pid=2 ** 22 + 7, slurm={"job_id": "9", "state": "PENDING"})
    assert run.state() == "queued"  # no engine yet: nothing to find dead


def test_slurm_time_and_reasons(tmp_path):
    assert slurm.parse_time("1:30") == "01:30:00" and slurm.parse_time("00:01") == "00:01:00"
    assert slurm.parse_time("45") == "45" and slurm.parse_time("2-12:00") == "2-12:00"
    assert slurm.parse_time("12:00:00") == "12:00:00"
    with pytest.raises(ValueError, match="give HH:MM"):
        slurm.parse_time("1h")
    run = create_run(tmp_path / "runs", cfg_with())
    msg = slurm.ended_message(run, "12", {"state": "NODE_FAIL", "reason": "NodeDown"}, 40)
    assert msg == (f"Slurm job 12 lost a node (NODE_FAIL) (JobState=NODE_FAIL, Reason=NodeDown) at step 40; no "
                   f"checkpoint was saved. Resubmit: tunebench train --resume {run.id}.")
    msg = slurm.ended_message(run, "12", {"state": "OUT_OF_MEMORY", "exit_code": "0:125"}, None)
    assert "exceeded its memory limit" in msg and "ExitCode=0:125" in msg


def test_multi_node_launch_refused_before_a_run_exists(tiny_model, chat_jsonl, runs_dir, tmp_path):
    cfg = write_config(tmp_path / "two.yaml", tiny_model, chat_jsonl, hardware={"device": "cpu", "nnodes": 2})
    r = tunebench("train", cfg, runs_dir=runs_dir, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "hardware.rdzv_endpoint: a run on 2 nodes needs the rendezvous address" in r.stderr
    assert "or submit with --slurm" in r.stderr
    assert not runs_dir.exists() or not any(runs_dir.iterdir())
    with pytest.raises(cfgmod.ConfigError, match="hardware.rdzv_endpoint"):  # the workbench refuses the same
        launch_run(runs_dir, cfgmod.load_config(cfg))
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_join_and_stop_refusals(tiny_model, chat_jsonl, runs_dir, tmp_path):
    one = create_run(runs_dir, cfgmod.load_config(write_config(tmp_path / "one.yaml", tiny_model, chat_jsonl)))
    r = tunebench("join", one.id, runs_dir=runs_dir)
    assert r.returncode == 2 and "runs on one node (hardware.nnodes is 1); there is nothing to join" in r.stderr
    r = tunebench("join", "no-such-run", runs_dir=runs_dir)
    assert r.returncode == 2 and "must be on a shared filesystem at the same path" in r.stderr
    one.write_status(state="queued")  # queued by something that is not Slurm (a local queue)
    r = tunebench("stop", one.id, runs_dir=runs_dir)
    assert r.returncode == 2 and "is queued, but not by Slurm" in r.stderr
    r = tunebench("runs", runs_dir=runs_dir)
    assert r.returncode == 0 and "WHERE" in r.stdout.splitlines()[0] and " queued " in r.stdout
