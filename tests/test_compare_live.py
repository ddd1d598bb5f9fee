"""A comparison while a training run trains on the CPU: both progress, the run is untouched, the device pick is the CPU."""
from __future__ import annotations

import pytest

from engine.checkpoints.compare import run_comparison
from engine.checkpoints.refs import busy_runs, resolve_ref
from engine.rundir.runs import Run
from tests.compare_support import trained_run
from tests.conftest import tunebench, wait_for, write_config


@pytest.fixture(scope="session")
def ab(tmp_path_factory, tiny_model, chat_jsonl):
    return trained_run(tmp_path_factory.getbasetemp() / "compare", tiny_model, chat_jsonl)


def test_compare_while_a_run_trains_on_the_cpu(ab, tmp_path, tiny_model, chat_jsonl):
    from engine.checkpoints.settings import Decoding
    from tunebench.commands.compare import pick_device

    runs = tmp_path / "runs"
    cfg = write_config(tmp_path / "long.yaml", tiny_model, chat_jsonl,
                       training={"max_steps": 100000, "save_steps": 0}, hardware={"device": "cpu"})
    res = tunebench("train", cfg, "--detach", runs_dir=runs)
    assert res.returncode == 0, res.stderr[-2000:]
    live = Run(runs / res.stdout.split()[-1])
    try:
        wait_for(lambda: live.status().get("state") == "running" and (live.status().get("step") or 0) >= 1, timeout=300)
        assert busy_runs(runs) == [live.id]
        a, b = resolve_ref(ab["run"].id, ab["runs_dir"]), resolve_ref(f"{ab['run'].id}@2", ab["runs_dir"])
        from engine.system.telemetry import Nvml

        if not Nvml().devices():  # no GPU (as on CI): the comparison goes to the CPU without asking
            assert pick_device("auto", a, b) == "cpu"
        during = []
        step_before = live.status().get("step") or 0
        result = run_comparison(a, b, None, Decoding(max_new_tokens=6), device="cpu", max_eval=4,
                                on_token=lambda i, side, text, full: during.append(live.state()) if not during else None)
        assert during == ["running"]
        assert len(result["prompts"]) == 8 and all(r["a_tokens"] and r["b_tokens"] for r in result["prompts"])
        assert result["metrics"]["a"]["eval_loss"] is not None
        # The engine went on training while the comparison ran (two processes on two shared cores).
        wait_for(lambda: (live.status().get("step") or 0) > step_before, timeout=60)
        assert live.state() == "running"
    finally:
        live.send("stop")
        wait_for(lambda: live.state() in ("stopped", "completed", "failed", "lost"), timeout=300)
    assert live.state() == "stopped" and live.last_checkpoint() is not None  # stopped cleanly, checkpoint saved
