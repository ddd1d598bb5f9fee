"""Real runs on a tiny model through the real CLI: events, checkpoints, control, resume, lost terminals."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from engine.monitor import snapshot
from engine.monitor.history import load_run_data
from engine.rundir.events import read_events
from engine.rundir.runs import Run, list_runs
from tests.conftest import ROOT, tunebench, wait_for, write_config


def detached(cfg_path, runs_dir, *extra) -> Run:
    r = tunebench("train", cfg_path, "--detach", *extra, runs_dir=runs_dir)
    assert r.returncode == 0, r.stdout + r.stderr
    run_id = r.stdout.strip().splitlines()[-1]
    return Run(runs_dir / run_id)


def kinds(run: Run) -> list[str]:
    return [e["kind"] for e in read_events(run.events_path)]


def test_sft_lora_run_writes_events_and_a_checkpoint_plain_peft_loads(tiny_model, chat_jsonl, runs_dir, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tiny_model, chat_jsonl,
                       data={"eval_fraction": 0.125}, training={"max_steps": 4, "save_steps": 2})
    r = tunebench("train", cfg, runs_dir=runs_dir)
    assert r.returncode == 0, r.stdout + r.stderr
    (run,) = list_runs(runs_dir)
    assert run.status()["state"] == "completed"
    events = read_events(run.events_path)
    metrics = [e for e in events if e["kind"] == "metrics"]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    assert {"loss", "learning_rate", "grad_norm", "epoch", "num_tokens"} <= set(metrics[0])
    assert all("tokens_per_s" in m for m in metrics[1:])
    assert [e["step"] for e in events if e["kind"] == "eval"] == [4]
    assert [e["step"] for e in events if e["kind"] == "checkpoint"] == [2, 4]
    (summary,) = [e for e in events if e["kind"] == "summary"]
    assert summary["step"] == 4 and summary["num_tokens"] > 0 and summary["tokens_per_s"] > 0
    assert 0 < summary["train_wall_s"] <= summary["wall_s"] and summary["peak_rss_bytes"] > 0
    assert events[-1]["kind"] == "state" and events[-1]["state"] == "completed"
    assert [e["seq"] for e in events] == list(range(len(events)))
    # the engine's last history snapshot covers the finished run, and a monitor attaching from it gets what
    # reading every event gives
    offset, _ = snapshot.load(run.events_path)
    assert offset == run.events_path.stat().st_size
    restored = load_run_data(run.events_path, by_tokens=True)
    full = load_run_data(run.events_path, by_tokens=True, use_snapshot=False)
    assert restored.to_state() == full.to_state() and restored.step == 4 and restored.state == "completed"

    # the checkpoint loads with plain PEFT, no tunebench code, and generates
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ckpt = run.checkpoints_dir / "checkpoint-4"
    assert run.last_checkpoint().path == ckpt and run.last_checkpoint().meta["base_model"] == str(tiny_model)
    tok = AutoTokenizer.from_pretrained(ckpt)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), ckpt)
    ids = tok.apply_chat_template([{"role": "user", "content": "say apple"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]


def test_full_fine_tuning_learns_and_saves_a_plain_transformers_model(tiny_model, chat_jsonl, runs_dir, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tiny_model, chat_jsonl, adapter={"kind": "none"},
                       data={"loss_on": "all"}, training={"max_steps": 24, "learning_rate": 3e-3})
    r = tunebench("train", cfg, runs_dir=runs_dir)
    assert r.returncode == 0, r.stdout + r.stderr
    (run,) = list_runs(runs_dir)
    losses = [e["loss"] for e in read_events(run.events_path, ("metrics",))]
    assert len(losses) == 24
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4, losses  # it learns the pattern
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(run.last_checkpoint().path)
    assert model.config.num_hidden_layers == 2
    (note,) = [e for e in read_events(run.events_path, ("log",)) if e.get("message") == "model ready"]
    assert note["trainable_share"] == 1.0


def test_qlora_4bit_trains_on_the_cpu(tiny_model, chat_jsonl, runs_dir, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tiny_model, chat_jsonl, model={"quantization": "4bit"},
                       training={"max_steps": 2})
    r = tunebench("train", cfg, runs_dir=runs_dir)
    assert r.returncode == 0, r.stdout + r.stderr
    (run,) = list_runs(runs_dir)
    (note,) = [e for e in read_events(run.events_path, ("log",)) if e.get("message") == "model ready"]
    assert 0 < note["trainable_share"] < 0.5
    assert run.last_checkpoint().meta["quantization"] == "4bit"
    assert (run.last_checkpoint().path / "adapter_model.safetensors").exists()


def test_pause_resume_save_and_stop_through_control_files(tiny_model, chat_jsonl, runs_dir, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tiny_model, chat_jsonl, training={"max_steps": 100000})
    run = detached(cfg, runs_dir)
    wait_for(lambda: run.status().get("step", 0) >= 3, what="3 steps")
    assert tunebench("pause", run.id, runs_dir=runs_dir).returncode == 0
    wait_for(lambda: run.status()["state"] == "paused", what="paused")
    step = run.status()["step"]
    time.sleep(1.5)
    assert run.status()["step"] == step and run.state() == "paused"
    assert tunebench("save", run.id, runs_dir=runs_dir).returncode == 0  # save works while paused
    wait_for(lambda: run.last_checkpoint(), what="checkpoint while paused")
    assert run.last_checkpoint().step == step
    assert tunebench("resume", run.id, runs_dir=runs_dir).returncode == 0
    wait_for(lambda: run.status().get("step", 0) > step + 2, what="steps after resume")
    assert tunebench("stop", run.id, runs_dir=runs_dir).returncode == 0
    wait_for(lambda: run.status()["state"] == "stopped", what="stopped")
    final = run.status()
    assert run.last_checkpoint().step == final["step"] > step
    states = [e["state"] for e in read_events(run.events_path, ("state",))]
    assert states[-5:] == ["paused", "running", "stopping", "stopped"][-5:] or "paused" in states
    assert states[-1] == "stopped" and "stopping" in states
    assert tunebench("stop", run.id, runs_dir=runs_dir).returncode == 2  # not live any more: clear error


def test_sigkill_of_the_engine_is_lost_and_resume_reaches_the_final_step(tiny_model, chat_jsonl, runs_dir, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tiny_model, chat_jsonl, training={"max_steps": 30, "save_steps": 5})
    run = detached(cfg, runs_dir)
    wait_for(lambda: (run.last_checkpoint() or None) and run.last_checkpoint().step >= 10, what="a checkpoint")
    os.kill(run.status()["pid"], signal.SIGKILL)
    wait_for(lambda: run.state() == "lost", timeout=10, what="lost")
    r = tunebench("runs", runs_dir=runs_dir)
    assert "lost" in r.stdout
    resumed_from = run.last_checkpoint().step
    r = tunebench("train", "--resume", run.id, runs_dir=runs_dir)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"checkpoint-{resumed_from}" in r.stdout
    st = run.status()
    assert st["state"] == "completed" and st["step"] == 30
    steps = [e["step"] for e in read_events(run.events_path, ("metrics",))]
    after = steps[steps.index(resumed_from + 1, len(steps) - (30 - resumed_from)):]
    assert after == list(range(resumed_from + 1, 31))  # the resumed engine continued from the checkpoint
    # the killed engine's history and the resumed one's, as a monitor attaching now sees them
    full = load_run_data(run.events_path, by_tokens=True, use_snapshot=False)
    assert load_run_data(run.events_path, by_tokens=True).to_state() == full.to_state() and full.step == 30
    assert tunebench("train", "--resume", run.id, runs_dir=runs_dir).returncode == 2  # completed: nothing to resume


def test_lost_terminal_does_not_stop_the_engine(tiny_model, chat_jsonl, runs_dir, tmp_path):
    """SIGHUP to the launching terminal's process group, then SIGKILL of the launcher: the run completes."""
    cfg = write_config(tmp_path / "c.yaml", tiny_model, chat_jsonl, training={"max_steps": 25})
    env = dict(os.environ, TUNEBENCH_RUNS_DIR=str(runs_dir))
    cli = subprocess.Popen([sys.executable, "-m", "tunebench", "train", str(cfg)], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    run = wait_for(lambda: (list_runs(runs_dir) or [None])[0], what="run created")
    wait_for(lambda: run.status().get("state") == "running", what="running")
    os.killpg(cli.pid, signal.SIGHUP)  # what the terminal does when the SSH connection drops
    if cli.poll() is None:
        os.kill(cli.pid, signal.SIGKILL)
    cli.wait()
    engine = psutil.Process(run.status()["pid"])
    assert engine.is_running() and os.getsid(engine.pid) == engine.pid  # it leads a session of its own
    wait_for(lambda: run.status()["state"] in ("completed", "failed"), what="run end")
    assert run.status()["state"] == "completed" and run.status()["step"] == 25


def test_ctrl_c_in_the_foreground_stops_gracefully(tiny_model, chat_jsonl, runs_dir, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tiny_model, chat_jsonl, training={"max_steps": 100000, "logging_steps": 7})
    env = dict(os.environ, TUNEBENCH_RUNS_DIR=str(runs_dir))
    cli = subprocess.Popen([sys.executable, "-m", "tunebench", "train", str(cfg)], cwd=ROOT, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run = wait_for(lambda: (list_runs(runs_dir) or [None])[0], what="run created")
    wait_for(lambda: run.status().get("step", 0) >= 2, what="steps")
    cli.send_signal(signal.SIGINT)
    out, _ = cli.communicate(timeout=600)
    assert cli.returncode == 0, out
    assert run.status()["state"] == "stopped"
    assert run.last_checkpoint().step == run.status()["step"]
    assert "stopped at step" in out
    # the bar ends at the step the run stopped at, not at the last logged one (a multiple of 7)
    assert f"{run.status()['step']}/100000" in out, out[-600:]


def test_data_error_is_reported_before_a_run_exists(tiny_model, runs_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    good = '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}'
    bad.write_text(good + '\n{not json\n' + good + '\n')
    cfg = write_config(tmp_path / "c.yaml", tiny_model, bad)
    r = tunebench("train", cfg, runs_dir=runs_dir, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{bad}:2" in r.stderr
    assert not list_runs(runs_dir)


@pytest.mark.parametrize("torn", [b'{"seq": 999, "kind": "metr'])
def test_status_and_runs_read_a_run_with_a_torn_event_line(tiny_model, chat_jsonl, runs_dir, tmp_path, torn):
    cfg = write_config(tmp_path / "c.yaml", tiny_model, chat_jsonl, training={"max_steps": 1})
    assert tunebench("train", cfg, runs_dir=runs_dir).returncode == 0
    (run,) = list_runs(runs_dir)
    n = len(read_events(run.events_path))
    with open(run.events_path, "ab") as f:
        f.write(torn)
    assert len(read_events(run.events_path)) == n
    r = tunebench("status", run.id, "--json", runs_dir=runs_dir)
    assert r.returncode == 0 and '"completed"' in r.stdout
