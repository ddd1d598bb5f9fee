"""Shared fixtures: a tiny Llama-style model built once per session, small datasets, a runs dir."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# pytest-xdist workers run with COLUMNS=80 LINES=24; shutil.get_terminal_size (and so Textual) reads them first,
# which made the apps the tmux tests start draw at 80x24 inside a 140x40 window.
for _var in ("COLUMNS", "LINES"):
    os.environ.pop(_var, None)
if "TUNEBENCH_CACHE_DIR" not in os.environ:  # runs teach the estimator's efficiency store: keep tests' out of ~/.cache
    import tempfile

    os.environ["TUNEBENCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="tunebench-test-cache-")


def wait_for(pred, timeout=600.0, every=0.1, what="condition", show=None):
    """Poll until `pred()` is truthy and return it; generous timeout: a loaded 2-core CI machine runs steps
    5x slower. On timeout the message carries show() (a tmux screen, say) to tell why."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f"; it shows:\n{show()}" if show else ""))


def shared_file(rel: str) -> Path:
    """A file under ../shared/data, or skip the test with the reason."""
    p = SHARED / "data" / rel
    if not p.exists():
        pytest.skip(f"../shared/data/{rel} is absent (the real-data tests need ../shared beside the project)")
    return p


@pytest.fixture(autouse=True)
def no_engine_outlives_its_test(request):
    """A test that fails while its run is paused or training would leave the engine (a session of its own, by
    design) running for good, loading the machine for every later test: kill what was started under the test's
    temporary directory. Cost: one process listing per test that has a tmp_path."""
    root = str(request.getfixturevalue("tmp_path")) if "tmp_path" in request.fixturenames else None
    yield
    if root is None:
        return
    import psutil

    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = proc.info["cmdline"] or []
        if proc.pid != os.getpid() and any(root in part for part in cmd) and any(
                m in cmd for m in ("engine.worker", "engine.scheduling", "engine.rundir.slurm", "torch.distributed.run")):
            try:
                proc.kill()
            except psutil.Error:
                pass


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-layer Llama with a BPE tokenizer trained here, saved with save_pretrained."""
    from engine.demo.tinymodel import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def chat_jsonl(tmp_path_factory) -> Path:
    """64 chat rows with a pattern a tiny model can learn (repeat the word)."""
    p = tmp_path_factory.mktemp("data") / "chat.jsonl"
    words = ["apple", "river", "stone", "cloud", "green", "seven", "light", "table"]
    with open(p, "w") as f:
        for i in range(64):
            w = words[i % len(words)]
            f.write(json.dumps({"messages": [{"role": "user", "content": f"say {w}"},
                                             {"role": "assistant", "content": f"{w} {w}"}]}) + "\n")
    return p


@pytest.fixture
def runs_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "runs"
    monkeypatch.setenv("TUNEBENCH_RUNS_DIR", str(d))
    return d


def write_config(path: Path, model_dir: Path, data_path: Path, **sections) -> Path:
    """A YAML config for a quick CPU run; `sections` override, e.g. training={"max_steps": 4}."""
    import yaml

    cfg = {"model": {"name_or_path": str(model_dir)},
           "data": {"train": str(data_path), "max_length": 64},
           "training": {"max_steps": 4, "batch_size": 4, "learning_rate": 1e-3}}
    for k, v in sections.items():
        if isinstance(v, dict):
            cfg.setdefault(k, {}).update(v)
        else:
            cfg[k] = v
    path.write_text(yaml.safe_dump(cfg))
    return path


def tunebench(*args, runs_dir: Path | None = None, timeout: float = 300, env: dict | None = None,
              **kw) -> subprocess.CompletedProcess:
    """Run the real CLI (`python -m tunebench`) and capture its output; `env` adds variables."""
    env = {**os.environ, **(env or {})}
    if runs_dir is not None:
        env["TUNEBENCH_RUNS_DIR"] = str(runs_dir)
    return subprocess.run([sys.executable, "-m", "tunebench", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env, **kw)
