"""Small things a new user hit with the command: a closed pipe, --runs-dir after the subcommand, where "no runs"
looked, what the repository ignores."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT, tunebench


def many_runs(runs_dir, n: int) -> None:
    for i in range(n):
        d = runs_dir / f"20250301-101500-sft-run{i:04d}"
        d.mkdir(parents=True)
        (d / "status.json").write_text(json.dumps({"state": "completed", "step": 4, "max_steps": 4, "model": "m"}))


def test_runs_piped_into_head_ends_quietly(tmp_path):
    many_runs(tmp_path / "runs", 1200)  # more than a pipe holds: the writer meets the closed pipe
    r = subprocess.run(f"{sys.executable} -m tunebench --runs-dir {tmp_path / 'runs'} runs | head -2", shell=True,
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.stdout.splitlines()[0].startswith("RUN") and len(r.stdout.splitlines()) == 2
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr


def test_runs_dir_is_taken_after_the_subcommand_too(tmp_path):
    many_runs(tmp_path / "mine", 1)
    for args in (("--runs-dir", tmp_path / "mine", "runs", "--json"), ("runs", "--json", "--runs-dir", tmp_path / "mine"),
                 ("--runs-dir", tmp_path / "other", "runs", "--json", "--runs-dir", tmp_path / "mine")):
        r = tunebench(*args)
        assert r.returncode == 0, r.stderr
        assert [x["id"] for x in json.loads(r.stdout)] == ["20250301-101500-sft-run0000"], args
    status = tunebench("status", "run0000", "--runs-dir", tmp_path / "mine")
    assert status.returncode == 0 and "completed" in status.stdout


def test_no_runs_names_the_full_path():
    r = tunebench("runs", "--runs-dir", "no-such-runs-here")  # relative: to the working directory (ROOT)
    assert r.returncode == 0 and r.stdout.strip() == f"no runs in {ROOT / 'no-such-runs-here'}"


def test_the_demo_workspace_and_the_snapshot_report_are_ignored():
    names = ["tunebench-demo/model/config.json", "snapshot_report.html", "tests/snapshot_report.html"]
    r = subprocess.run(["git", "check-ignore", *names], capture_output=True, text=True, cwd=ROOT)
    assert r.stdout.split() == names, r.stdout + r.stderr
