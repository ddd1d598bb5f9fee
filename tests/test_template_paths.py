"""data.chat_template as a path: a relative Jinja file is read from the directory tunebench runs in (as data.train)
and recorded absolute in the run; a missing one is refused before a run exists, by the CLI and the workbench alike."""
from __future__ import annotations

import os

import pytest

from engine.config import Config
from engine.data import chat_templates as ct
from engine.rundir.paths import absolute_paths
from engine.rundir.runs import list_runs
from tests.conftest import write_config
from tests.test_preflight import launch_refused
from tests.test_rundir_runs import cli


def _template(cfg: Config, value: str, cwd) -> str:
    return absolute_paths(cfg.with_values({"data.chat_template": value}), cwd).data.chat_template


def test_template_paths_become_absolute_and_names_stay(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "mine.jinja").write_text(ct.NAMED["chatml"][0])
    (tmp_path / "chatml").write_text("a file named like a template")
    (tmp_path / "m").mkdir()
    cfg = Config()
    assert _template(cfg, "t/mine.jinja", tmp_path) == str(tmp_path / "t" / "mine.jinja")
    assert _template(cfg, "mine.jinja", tmp_path) == str(tmp_path / "mine.jinja")  # missing: the path tried
    assert _template(cfg, "from:m", tmp_path) == f"from:{tmp_path / 'm'}"
    for name in ("chatml", "auto", "qwen2.5", "/abs/x.jinja"):
        assert _template(cfg, name, tmp_path) == name  # a name never becomes a file, even one lying here
    assert ct.resolve("chatml", tmp_path).template == ct.NAMED["chatml"][0]
    (tmp_path / "mytemplate").write_text(ct.NAMED["chatml"][0])
    with pytest.raises(ct.TemplateError, match=rf"'mytemplate' is not a known template; to use the file "
                                               rf"{tmp_path}/mytemplate give its path, ./mytemplate"):
        ct.resolve("mytemplate", tmp_path)
    assert ct.resolve("./mytemplate", tmp_path).template == ct.NAMED["chatml"][0]
    with pytest.raises(ct.TemplateError, match=rf"'nope.jinja': no such file \({tmp_path}/nope.jinja tried: a "):
        ct.resolve("nope.jinja", tmp_path)
    assert ct.resolve("t/mine.jinja", tmp_path).name == str(tmp_path / "t" / "mine.jinja")


def test_cli_reads_a_relative_template_from_where_it_runs_and_records_it_absolute(tiny_model, chat_jsonl, runs_dir,
                                                                                   tmp_path):
    from engine.rundir.events import read_events

    work = tmp_path / "work"
    (work / "templates").mkdir(parents=True)
    (work / "templates" / "mine.jinja").write_text(ct.NAMED["chatml"][0])
    write_config(work / "c.yaml", tiny_model, chat_jsonl, data={"chat_template": "templates/mine.jinja"},
                 training={"max_steps": 2})
    r = cli("train", "c.yaml", runs_dir=runs_dir, cwd=work)
    assert r.returncode == 0, r.stdout + r.stderr
    (run,) = list_runs(runs_dir)
    recorded = str(work / "templates" / "mine.jinja")
    assert run.config()["data"]["chat_template"] == recorded and run.status()["state"] == "completed"
    (done,) = [e["chat_template"] for e in read_events(run.events_path, ("data",)) if e.get("chat_template")]
    assert done["name"] == recorded and "<|im_start|>" in done["special_tokens"]


def test_cli_refuses_a_missing_template_file_before_a_run_exists(tiny_model, chat_jsonl, runs_dir, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    write_config(work / "c.yaml", tiny_model, chat_jsonl, data={"chat_template": "templates/missing.jinja"})
    r = cli("train", "c.yaml", runs_dir=runs_dir, cwd=work, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    (line,) = [x for x in r.stderr.splitlines() if "data.chat_template" in x]
    assert f"{work / 'templates' / 'missing.jinja'}': no such file" in line and "set data.chat_template to" in line
    assert not (runs_dir.exists() and any(runs_dir.iterdir()))


@pytest.mark.asyncio
async def test_tui_launch_refuses_a_missing_template_file_naming_the_path(tmp_path, runs_dir, tiny_model, chat_jsonl,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the workbench runs: relative paths are read from here
    shown, notes = await launch_refused(tmp_path, runs_dir, {
        "model.name_or_path": str(tiny_model), "data.train": str(chat_jsonl),
        "data.chat_template": "templates/missing.jinja"})
    message = f"data.chat_template: '{tmp_path / 'templates' / 'missing.jinja'}': no such file"
    assert message in shown and message in notes
    assert os.getcwd() == str(tmp_path)
