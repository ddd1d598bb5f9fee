"""Task metrics in a comparison: both answers scored against the prompts' references, and each checkpoint's own
eval metrics at its step, in the engine, the CLI and the Compare screen."""
from __future__ import annotations

import asyncio

import pytest

from engine import config as cfgmod
from engine.checkpoints.answer_scores import DEFAULT_METRICS, metric_names, run_eval_at, score_answers
from engine.checkpoints.refs import ModelRef
from engine.rundir.events import EventWriter
from engine.rundir.runs import create_run
from engine.training.textmetrics import text_scores
from tests.compare_support import trained_run
from tests.conftest import tunebench


@pytest.fixture(scope="session")
def ab(tmp_path_factory, tiny_model, chat_jsonl):
    return trained_run(tmp_path_factory.getbasetemp() / "compare", tiny_model, chat_jsonl)


def test_both_answers_are_scored_against_the_references_that_exist():
    prompts = [{"text": "2+2=", "reference": "4"}, {"text": "no answer here"}, {"text": "capital of France?",
                                                                                 "reference": "Paris"}]
    rows = [{"a": "4", "b": "5"}, {"a": "x", "b": "y"}, {"a": "Paris ", "b": "It is Paris"}]
    out = score_answers(rows, prompts, ["exact_match", "rouge1"])
    assert out["rows"] == 2 and out["a"]["exact_match"] == 1.0 and out["b"]["exact_match"] == 0.0
    assert out["b"]["rouge1"] == pytest.approx(text_scores(["5", "It is Paris"], ["4", "Paris"], ["rouge1"])["rouge1"])
    assert rows[0]["scores"] == {"a": {"exact_match": 1.0, "rouge1": 1.0}, "b": {"exact_match": 0.0, "rouge1": 0.0}}
    assert "scores" not in rows[1] and rows[2]["reference"] == "Paris"
    assert score_answers([{"a": "x", "b": "y"}], [{"text": "p"}], ["rouge1"]) is None  # nothing to score against


def test_each_checkpoint_gets_its_runs_eval_at_its_step(runs_dir):
    cfg = cfgmod.Config().with_values({"model.name_or_path": "/m", "data.train": "/d.jsonl",
                                       "eval.metrics": ["rouge1", "bleu"], "data.eval_fraction": 0.1})
    run = create_run(runs_dir, cfg)
    w = EventWriter(run.events_path)
    w.write("eval", step=0, general_loss=3.0)
    w.write("eval", step=2, loss=2.0, runtime=0.1, rouge1=0.2, bleu=4.0)
    w.write("eval", step=4, loss=1.5, runtime=0.1, rouge1=0.5, bleu=9.0)
    w.close()
    at = lambda step: ModelRef("x", "/x", "checkpoint", run=run, meta={"step": step})  # noqa: E731
    assert run_eval_at(at(4)) == {"step": 4, "loss": 1.5, "rouge1": 0.5, "bleu": 9.0}  # bookkeeping left out
    assert run_eval_at(at(3))["step"] == 2  # no eval at 3: the last one before it
    assert run_eval_at(ModelRef("base", "/b", "base")) is None  # a base model has no run
    assert metric_names(at(4), ModelRef("base", "/b", "base")) == (["rouge1", "bleu"], f"eval.metrics of {run.id}")
    base = ModelRef("base", "/b", "base")
    assert metric_names(base, base)[0] == list(DEFAULT_METRICS)


def test_compare_scores_both_sides_and_shows_the_runs_own_eval(ab):
    from engine.checkpoints.compare import run_comparison
    from engine.checkpoints.prompts import default_prompts
    from engine.checkpoints.refs import resolve_ref
    from engine.checkpoints.settings import Decoding

    run, runs_dir = ab["run"], ab["runs_dir"]
    a, b = resolve_ref(f"{run.id}@2", runs_dir), resolve_ref(run.id, runs_dir)
    prompts = default_prompts(a, b, 4)[0]
    assert all(p["reference"] for p in prompts)  # the eval rows' final assistant turns ("w w")
    res = run_comparison(a, b, prompts, Decoding(max_new_tokens=6), metrics=False)
    ans = res["metrics"]["answers"]
    assert ans["rows"] == 4 and ans["metrics"] == list(DEFAULT_METRICS)  # the run chose no eval.metrics
    for side in ("a", "b"):
        rows = res["prompts"]
        assert ans[side] == text_scores([r[side] for r in rows], [p["reference"] for p in prompts], ans["metrics"])
        assert all(0 <= v <= 1 for v in ans[side].values())
    assert res["models"]["a"]["run_eval"] is None  # the run evaluated only at its last step (6)
    final = res["models"]["b"]["run_eval"]
    assert final["step"] == 6 and final["loss"] == pytest.approx(run.checkpoints()[-1].meta["eval_loss"])


def test_cli_prints_the_task_metrics_table(ab, tmp_path):
    run, runs_dir = ab["run"], ab["runs_dir"]
    (tmp_path / "qa.jsonl").write_text('{"prompt": "say apple", "completion": "apple apple"}\n'
                                       '{"prompt": "say river", "completion": "river river"}\n')
    res = tunebench("compare", f"{run.id}@2", run.id, "--prompts", tmp_path / "qa.jsonl", "--max-new-tokens", "4",
                    "--no-metrics", runs_dir=runs_dir)
    assert res.returncode == 0, res.stderr[-2000:]
    out = res.stdout
    assert "reference: apple apple" in out and "rougeL vs reference (2 prompts)" in out
    assert "(run eval @ 6)" in out and "loss at the run's eval" in out


def test_compare_screen_shows_scores_beside_the_answers(tmp_path):
    from tests.tui_support import settled, until
    from tui.app import TuneBench
    from tui.screens.compare import CompareScreen

    prompts = [{"messages": [{"role": "user", "content": "write 37 in words"}], "reference": "thirty-seven"}]
    rows = [{"a": "thirty-seven", "b": "thirty seven", "messages": prompts[0]["messages"]}]
    answers = score_answers(rows, prompts, ["exact_match", "rouge1"])
    result = {"prompts": rows, "metrics": {"a": {}, "b": {}, "eval": "x", "device": "cpu",
                                           "answers": {**answers, "chosen_by": "default"}},
              "models": {"a": {"run_eval": {"step": 400, "loss": 0.2, "rouge1": 0.81}}, "b": {"run_eval": None}}}

    async def source():
        yield {"type": "data", "event": "prompts", "prompts": prompts}
        yield {"type": "done", "result": result}

    async def body():
        app = TuneBench(runs_dir=tmp_path / "runs", workdir=str(tmp_path))
        async with app.run_test(size=(120, 36)) as pilot:
            await until(pilot, lambda: settled(app), what="the workbench up")  # its panes mount after the first paint
            screen = CompareScreen({"decoding": {}, "runs_dir": str(tmp_path / "runs")}, "A run", "B base",
                                   source=source)
            await app.push_screen(screen)
            await until(pilot, lambda: screen.result is not None and settled(app), what="the comparison shown")
            text = str(screen.query_one("#compare-metrics").render())
            assert "vs reference (1 prompts): A exact_match 1.000, rouge1 1.000   B exact_match 0.000" in text
            assert "A @ step 400: loss 0.200, rouge1 0.810" in text and "B: none" in text
            assert screen.query_one("#left-box").border_subtitle == "exact_match 1.000, rouge1 1.000"

    asyncio.run(body())
