"""Security on a shared server: owner-only files, foreign control files ignored, safe loaders, no secrets kept."""
from __future__ import annotations

import os
import re
import stat

import pytest

from engine import config as C
from engine.rundir.lock import Refused
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
            # Unpickling runs code: never on a file or anything a user or another process could write. The one
            # allowed use says why on its line (the data workers' job, pickled by their own parent process).
            if "pickle.load" in code and "# trusted pickle: the bytes our own parent pickled" not in line:
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


# -- issue 14: a shared server ------------------------------------------------------------------------------------
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a directory owned by another user")
def test_a_run_owned_by_another_user_is_never_read(tmp_path, runs_dir):
    mine = create_run(runs_dir, _cfg())
    theirs = create_run(runs_dir, _cfg())
    os.chown(theirs.path, 12345, 12345)  # as if another user had swapped one of my runs for theirs
    os.chown(theirs.config_path, 12345, 12345)
    assert [r.id for r in list_runs(runs_dir)] == [mine.id]
    for args in (("status", theirs.id), ("train", "--resume", theirs.id), ("status", str(theirs.path))):
        r = tunebench(*args, runs_dir=runs_dir, timeout=60)
        assert r.returncode == 2 and "belongs to uid 12345" in r.stderr and "Traceback" not in r.stderr, r.stderr
    with pytest.raises(Refused):
        theirs.config()  # the engine's own read of config.yaml refuses too
    os.chown(runs_dir, 12345, 12345)
    r = tunebench("runs", runs_dir=runs_dir, timeout=60)
    assert r.returncode == 2 and "the runs directory belongs to uid 12345" in r.stderr


def test_a_runs_dir_others_may_write_needs_the_sticky_bit(tmp_path, runs_dir):
    create_run(runs_dir, _cfg())
    os.chmod(runs_dir, 0o777)
    r = tunebench("runs", runs_dir=runs_dir, timeout=60)
    assert r.returncode == 2 and "writable by every user without the sticky bit" in r.stderr
    os.chmod(runs_dir, 0o1777)  # as /tmp: others may add entries but not rename or delete mine
    assert tunebench("runs", runs_dir=runs_dir, timeout=60).returncode == 0


def test_a_new_runs_dir_and_the_votes_folder_are_owner_only(tmp_path):
    from engine.checkpoints.votes import VoteBook, default_path

    run = create_run(tmp_path / "runs", _cfg())
    assert stat.S_IMODE(run.path.parent.stat().st_mode) == 0o700
    book = VoteBook(default_path(tmp_path / "runs", "a", "b"), {"a": "a", "b": "b"})
    book.cast(0, {"text": "p"}, {"a": "x", "b": "y"}, "a")
    for p in (book.path.parent, book.path, book.summary_path):
        assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, f"{p} is {oct(stat.S_IMODE(p.stat().st_mode))}"


def test_code_that_did_not_come_with_tunebench_is_named():
    from engine.rundir.trust import code_warnings

    cfg = C.load_config(None, ["model.name_or_path=m", "data.train=d.jsonl", "method=grpo",
                               f"rl.reward_file={ROOT / 'presets' / 'sft-lora-small.yaml'}",
                               "model.trust_remote_code=true"])
    lines = code_warnings(cfg)
    assert len(lines) == 2 and "trust_remote_code" in lines[0] and "rl.reward_file" in lines[1]


def test_run_refs_and_file_names_print_with_control_characters_escaped(runs_dir):
    r = tunebench("status", "\x1b]0;owned\x07evil", runs_dir=runs_dir, timeout=60)
    assert r.returncode == 2 and "\x1b" not in r.stderr and "\x07" not in r.stderr
    assert "\\x1b]0;owned\\x07evil" in r.stderr
