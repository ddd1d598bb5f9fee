"""A run's final model: its newest complete checkpoint, unless a completed run recorded another
(engine.checkpoints.refs.final_checkpoint), in `tunebench export`, compare references and the Checkpoints pane."""
from __future__ import annotations

import json

from engine import config as cfgmod
from engine.checkpoints.refs import final_ref, resolve_ref
from engine.rundir.runs import META, Run, create_run, list_runs
from tests.conftest import tunebench, wait_for, write_config
from tui.panes.checkpoints import entries


def fabricated(runs_dir, steps, **status) -> Run:
    """A run directory as the engine leaves it: complete checkpoints (their meta file) and a status."""
    run = create_run(runs_dir, cfgmod.Config().with_values({"model.name_or_path": "org/base", "data.train": "train.jsonl"}))
    for step in steps:
        d = run.checkpoints_dir / f"checkpoint-{step}"
        d.mkdir()
        (d / "config.json").write_text("{}")
        (d / META).write_text(json.dumps({"step": step, "base_model": "org/base"}))
    run.write_status(**status)
    return run


def test_a_stale_final_checkpoint_from_an_earlier_stop_is_not_the_final_model(runs_dir):
    # stopped at 7 (which recorded checkpoint-7), resumed, saved at 164, then the engine died
    lost = fabricated(runs_dir, (7, 164), state="running", pid=2 ** 22 + 7, final_checkpoint="checkpoint-7")
    assert lost.state() == "lost"
    ref = final_ref(lost)
    assert ref.meta["step"] == 164 and "(last, step 164)" in ref.label
    assert resolve_ref(lost.id, runs_dir).meta["step"] == 164
    finals = [e for e in entries(runs_dir) if e.kind == "final"]
    assert [e.step for e in finals] == [164]


def test_a_completed_run_keeps_the_model_it_recorded(runs_dir):
    done = fabricated(runs_dir, (2, 4, 6), state="completed", final_checkpoint="checkpoint-4")
    assert final_ref(done).meta["step"] == 4 and "(final, step 4)" in final_ref(done).label
    gone = fabricated(runs_dir, (2, 6), state="completed", final_checkpoint="checkpoint-4")  # rotated away
    assert final_ref(gone).meta["step"] == 6
    stopped = fabricated(runs_dir, (3, 9), state="stopped", final_checkpoint="checkpoint-3")
    assert final_ref(stopped).meta["step"] == 9


def test_export_of_a_resumed_run_that_was_lost_exports_its_newest_checkpoint(tmp_path, tiny_model, chat_jsonl,
                                                                              runs_dir):
    """The issue's afternoon, for real: stop a run, resume it, it saves again and dies; export takes the newest."""
    cfg = write_config(tmp_path / "c.yaml", tiny_model, chat_jsonl, training={"max_steps": 300, "save_steps": 3})
    r = tunebench("train", cfg, "--detach", runs_dir=runs_dir)
    assert r.returncode == 0, r.stderr
    run = Run(runs_dir / r.stdout.strip().splitlines()[-1])
    wait_for(lambda: run.status().get("step", 0) >= 1, what="the first step")
    assert tunebench("stop", run.id, runs_dir=runs_dir).returncode == 0
    wait_for(lambda: run.state() == "stopped", what="the stop")
    stopped_at = run.last_checkpoint().step
    assert run.status()["final_checkpoint"] == f"checkpoint-{stopped_at}"
    # The resumed engine saves once more (the next multiple of 3), then is killed inside its second save.
    r = tunebench("train", "--resume", run.id, runs_dir=runs_dir, env={"TUNEBENCH_FAULTS": "kill_during_save=2"})
    wait_for(lambda: run.state() == "lost", timeout=120, what="the engine killed")
    newest = run.last_checkpoint().step
    assert newest > stopped_at, (stopped_at, newest)
    assert run.status().get("final_checkpoint") is None  # the resumed engine forgot the stop's choice
    out = tmp_path / "exported"
    r = tunebench("export", run.id, "--out", out, "--json", runs_dir=runs_dir)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["step"] == newest and json.loads((out / "tunebench_export.json").read_text())["step"] == newest
    assert len(list_runs(runs_dir)) == 1
