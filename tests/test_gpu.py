"""CUDA-only paths on a real tiny run: QLoRA through bitsandbytes on the GPU, NVML and torch memory in the
telemetry the monitor draws. Marked `gpu`: skipped where no CUDA GPU is visible (this CI has none)."""
from __future__ import annotations

import pytest

from engine.monitor.history import load_run_data
from engine.rundir.events import read_events
from engine.rundir.runs import list_runs
from tests.conftest import tunebench, write_config

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here")


def test_qlora_on_cuda_trains_and_reports_gpu_memory(tiny_model, chat_jsonl, runs_dir, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tiny_model, chat_jsonl, model={"quantization": "4bit"},
                       hardware={"device": "cuda"}, training={"max_steps": 30, "batch_size": 4})
    r = tunebench("train", cfg, runs_dir=runs_dir)
    assert r.returncode == 0, r.stdout + r.stderr
    (run,) = list_runs(runs_dir)
    st = run.status()
    assert st["state"] == "completed" and st["resolved"]["device"] == "cuda"
    assert run.last_checkpoint().meta["quantization"] == "4bit"
    (summary,) = read_events(run.events_path, ("summary",))
    assert summary["peak_cuda_bytes"] > 0 and summary["peak_cuda_reserved_bytes"] >= summary["peak_cuda_bytes"]
    tele = read_events(run.events_path, ("telemetry",))
    gpus = [g for e in tele for g in e.get("gpus") or ()]
    assert gpus and all(g["mem_total"] > 0 for g in gpus)  # NVML read on this machine
    assert any(e.get("torch_allocated") for e in tele)  # torch's counters once the model is on the GPU
    # (proc_mem, the engine's own GPU memory, is not asserted: in a container NVML often lists no processes.)
    d = load_run_data(run.events_path)  # the monitor's memory chart has the GPU's timeline
    assert d.gpu_indices and d.tele[f"gpu{d.gpu_indices[0]}.mem_used"].count > 0
