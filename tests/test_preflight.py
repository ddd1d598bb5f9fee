"""The launch preflight (engine.planning.preflight): the same checks, and messages, in `tunebench train` and the
workbench's Launch, before anything is created."""
from __future__ import annotations

import json

import pytest

from engine import config as cfgmod
from engine.data.prepare import prepare
from engine.planning.preflight import looks_like_path, model_check
from engine.planning.preflight import preflight as check
from engine.rundir.runs import list_runs
from tests.conftest import tunebench, write_config
from tests.tui_support import text, until
from tui.app import TuneBench


def cfg_with(**values) -> cfgmod.Config:
    return cfgmod.Config().with_values(values)


@pytest.mark.parametrize("value", ["/models/no-such-model", "./no-such", "../no-such", "~/no-such-model-here",
                                   "models/org/name", "."])
def test_a_value_that_looks_like_a_path_is_a_path_never_a_hub_id(value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert looks_like_path(value) or value == "models/org/name"
    info = model_check(value)
    assert not info.get("hub_id")
    assert info["problem"] and ("no such directory" in info["problem"] or "no config.json" in info["problem"])


@pytest.mark.parametrize("value", ["Qwen/Qwen2.5-0.5B-Instruct", "gpt2"])
def test_hub_ids_pass_to_the_engine(value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert model_check(value)["hub_id"] and model_check(value)["problem"] is None


def test_shipped_code_needs_trust_only_for_a_type_transformers_lacks(tmp_path):
    """Phi-3-mini's config.json names its own modeling_phi3.py; transformers loads its own phi3 classes unless
    trust_remote_code is on, so that model needs no trust. An unknown model_type does."""
    shipped = {"AutoConfig": "configuration_x.XConfig", "AutoModelForCausalLM": "modeling_x.XForCausalLM"}
    for name, mtype in (("phi3", "phi3"), ("custom", "tunebench_custom_lm")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"model_type": mtype, "auto_map": shipped}))
    known, custom = model_check(str(tmp_path / "phi3")), model_check(str(tmp_path / "custom"))
    assert known["ships_code"] and not known["needs_remote_code"]
    assert custom["ships_code"] and custom["needs_remote_code"]
    problems = check(cfg_with(**{"model.name_or_path": str(tmp_path / "custom")}), prepare).problems
    assert "model.trust_remote_code" in {p.path for p in problems}


def test_problems_name_the_key_and_the_fix(tmp_path, chat_jsonl):
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "config.json").write_text(json.dumps({"architectures": ["X"], "auto_map": {"AutoModel": "m.X"}}))
    pf = check(cfg_with(**{"model.name_or_path": str(remote), "data.train": str(chat_jsonl),
                               "data.general_eval": "completion"}), prepare)
    assert not pf.ok and pf.data_error is None
    by_key = {p.path: p for p in pf.problems}
    assert set(by_key) == {"model.trust_remote_code", "data.general_eval"}
    assert "auto_map" in by_key["model.trust_remote_code"].message
    assert "set model.trust_remote_code: true" in by_key["model.trust_remote_code"].fix
    assert "'completion' is not a data file" in by_key["data.general_eval"].message
    trusted = check(cfg_with(**{"model.name_or_path": str(remote), "model.trust_remote_code": True,
                                    "data.train": str(chat_jsonl)}), prepare)
    assert trusted.ok and trusted.info["train_rows"] == 64


def test_general_eval_rows_must_read(tmp_path, tiny_model, chat_jsonl):
    bad = tmp_path / "general.jsonl"
    bad.write_text('{"messages": [\n')
    pf = check(cfg_with(**{"model.name_or_path": str(tiny_model), "data.train": str(chat_jsonl),
                               "data.general_eval": str(bad)}), prepare)
    assert [p.path for p in pf.problems] == ["data.general_eval"] and f"{bad}:1" in pf.problems[0].message
    ok = check(cfg_with(**{"model.name_or_path": str(tiny_model), "data.train": str(chat_jsonl),
                               "data.general_eval": str(chat_jsonl)}), prepare)
    assert ok.ok


def test_cli_refuses_a_missing_model_and_a_general_eval_that_is_no_file(tmp_path, chat_jsonl, runs_dir):
    cfg = write_config(tmp_path / "c.yaml", "/models/no-such-model", chat_jsonl, data={"general_eval": "completion"})
    r = tunebench("train", cfg, runs_dir=runs_dir, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "model.name_or_path: /models/no-such-model: no such directory" in r.stderr
    assert "data.general_eval: 'completion' is not a data file" in r.stderr
    assert not list_runs(runs_dir) and not (runs_dir.exists() and any(runs_dir.iterdir()))


async def launch_refused(tmp_path, runs_dir, values: dict) -> tuple[str, str]:
    """Launch from the Hyperparameters pane with `values`; returns (the problems panel, the notification)."""
    app = TuneBench(runs_dir=runs_dir, workdir=tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        pane = await app.ensure_pane("hyperparams")
        pane.apply(values)
        await until(pilot, lambda: "ready to launch" in text(app, "#problems"), what="a valid form")
        await pilot.press("3", "escape", "ctrl+l")
        await until(pilot, lambda: "not launched" in text(app, "#problems"), timeout=120, what="the refusal")
        shown = text(app, "#problems")
        notes = " ".join(str(n.message) for n in app._notifications)
    assert not list_runs(runs_dir) and not (runs_dir.exists() and any(runs_dir.iterdir()))
    return shown, notes


@pytest.mark.asyncio
async def test_tui_launch_refuses_what_the_cli_refuses(tmp_path, runs_dir, tiny_model, chat_jsonl):
    shown, notes = await launch_refused(tmp_path, runs_dir, {
        "model.name_or_path": "/models/no-such-model", "data.train": str(chat_jsonl),
        "data.general_eval": "completion"})
    for message in ("model.name_or_path: /models/no-such-model: no such directory",
                    "data.general_eval: 'completion' is not a data file"):
        assert message in shown and message in notes


@pytest.mark.asyncio
async def test_tui_launch_checks_every_data_row_as_the_cli_does(tmp_path, runs_dir, tiny_model, chat_jsonl):
    data = tmp_path / "d.jsonl"
    data.write_text(chat_jsonl.read_text() + '{"messages": [\n')
    shown, _ = await launch_refused(tmp_path, runs_dir, {"model.name_or_path": str(tiny_model),
                                                         "data.train": str(data)})
    cli = tunebench("train", write_config(tmp_path / "c.yaml", tiny_model, data), runs_dir=runs_dir, timeout=120)
    assert cli.returncode == 2 and "1 invalid row(s) of 65" in cli.stderr and f"{data}:65" in cli.stderr
    assert "1 invalid row(s) of 65" in shown and f"{data}:65" in shown and "data.skip_invalid" in shown
