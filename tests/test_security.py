"""Security on a shared server: owner-only files, foreign control files ignored, safe loaders, no secrets kept."""
from __future__ import annotations

import os
import re
import stat

import pytest

from engine import config as C
from engine.rundir.runs import create_run, list_runs
from tests.conftest import ROOT, tunebench, write_config


def _cfg() -> C.Config:
    return C.load_config(None, ["model.name_or_path=m", "data.train=d.jsonl"])


def test_trust_remote_code_is_off_by_default():
    assert C.defaults()["model"]["trust_remote_code"] is False and C.Config().model.trust_remote_code is False


def test_run_files_are_owner_only(tmp_path):
    run = create_run(tmp_path / "runs", _cfg())
    run.send("save")
    for p in [run.path, run.control_dir, run.checkpoints_dir, run.config_path, run.status_path,
              *run.control_dir.iterdir()]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode & 0o077 == 0, f"{p} is {oct(mode)}: others must not read or write it"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a file owned by another user")
def test_control_commands_from_another_user_are_ignored(tmp_path):
    run = create_run(tmp_path / "runs", _cfg())
    foreign = run.send("stop")
    os.chown(foreign, 12345, 12345)  # as if another user on the server had dropped it
    run.send("save")
    assert run.take_controls() == ["save"]
    assert not foreign.exists(), "a foreign control file is consumed, not left to be retried"


def test_source_uses_safe_loaders_and_no_shell_strings():
    offenders = []
    for path in list((ROOT / "engine").rglob("*.py")) + list((ROOT / "tui").rglob("*.py")):
        text = path.read_text()
        for n, line in enumerate(text.splitlines(), 1):
            code = line.split("#")[0]
            if re.search(r"yaml\.(load|unsafe_load|full_load)\(", code):
                offenders.append(f"{path}:{n}: YAML without the safe loader")
            if "shell=True" in code or re.search(r"os\.(system|popen)\(", code):
                offenders.append(f"{path}:{n}: a shell string")
            if "torch.load(" in code and "weights_only=True" not in code:
                offenders.append(f"{path}:{n}: torch.load without weights_only=True")
            if "pickle.load" in code:
                offenders.append(f"{path}:{n}: pickle")
    assert not offenders, "\n".join(offenders)


def test_hub_tokens_never_reach_the_run_directory(tiny_model, chat_jsonl, runs_dir, tmp_path):
    secret = "hf_tunebenchSecretToken0123456789"
    cfg = write_config(tmp_path / "c.yaml", tiny_model, chat_jsonl, training={"max_steps": 1})
    r = tunebench("train", cfg, runs_dir=runs_dir, env={"HF_TOKEN": secret, "HUGGING_FACE_HUB_TOKEN": secret})
    assert r.returncode == 0, r.stderr
    (run,) = list_runs(runs_dir)
    for p in run.path.rglob("*"):
        if p.is_file():
            assert secret.encode() not in p.read_bytes(), f"the token leaked into {p}"
    assert secret not in r.stdout + r.stderr


def test_trust_remote_code_warns(tiny_model, chat_jsonl, runs_dir, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tiny_model, chat_jsonl, model={"trust_remote_code": True},
                       training={"max_steps": 1})
    r = tunebench("train", cfg, "--detach", runs_dir=runs_dir)
    assert r.returncode == 0 and "trust_remote_code is on" in r.stderr
