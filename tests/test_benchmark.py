"""`tunebench eval`: lm-evaluation-harness on local tasks, a checkpoint beside its base (issue 18, item 4).

The accuracies lm-eval reports are checked against scoring by hand here: the log-likelihood of each choice
computed with the model directly (the LoRA checkpoint through PEFT, and the base), and for a generation task
the greedy answers generated here. Tasks whose data is not local fail at once, naming what they need.
"""
from __future__ import annotations

import asyncio
import json
import re
import string

import pytest

from tests.conftest import tunebench
from tests.methods_support import config, train, write_jsonl

# Each question ends in a key word that tells its answer (a bigram a LoRA learns in a few steps); the choices are
# one token each in the tiny tokenizer, so the random base does not just prefer the shortest.
KEYS, CHOICES = ["quick", "over", "model", "short"], ["dog", "lazy", "text", "idea"]
QUESTIONS = [(f"fox {i} jumps {KEYS[i % 4]}", CHOICES, i % 4) for i in range(16)]


@pytest.fixture(scope="module")
def lora_run(tiny_model, tmp_path_factory):
    """A LoRA SFT run on the tiny Llama, trained in this process: the final checkpoint answers unlike its base."""
    d = tmp_path_factory.mktemp("bench")
    # each question's right answer, as text: the tuned model leans to it, the random base does not
    data = write_jsonl(d / "train.jsonl", [{"text": f"{q} {c[a]}"} for q, c, a in QUESTIONS] * 2)
    cfg = config(tiny_model, data, data={"loss_on": "all"},
                 training={"max_steps": 8, "learning_rate": 3e-2, "batch_size": 8, "lr_scheduler": "constant"})
    run, _ = train(d / "runs", cfg)
    return {"run": run, "runs_dir": d / "runs", "dir": d, "model": tiny_model}


def choice_logprob(model, tok, context: str, continuation: str) -> float:
    """log P(continuation | context), summed over its tokens: the continuation's tokens are those the whole
    string has beyond the context's."""
    import torch

    ctx = tok(context)["input_ids"]
    whole = tok(context + continuation)["input_ids"]
    ids = torch.tensor([whole])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].float(), -1)
    return float(sum(logp[i - 1, whole[i]] for i in range(len(ctx), len(whole))))


def hand_accuracy(model, tok) -> tuple[float, list[int]]:
    picks = []
    for q, choices, _ in QUESTIONS:
        scores = [choice_logprob(model, tok, q, " " + c) for c in choices]
        picks.append(max(range(len(choices)), key=scores.__getitem__))
    return sum(p == gold for p, (_, _, gold) in zip(picks, QUESTIONS)) / len(QUESTIONS), picks


def greedy(model, tok, prompt: str, n: int) -> str:
    import torch

    ids = torch.tensor([tok(prompt)["input_ids"]])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                             pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).split("\n")[0]


def norm(s: str) -> str:
    """lm-eval's exact_match with ignore_case, ignore_punctuation and the surrounding whitespace ignored."""
    s = re.sub(r"\s+$", "", re.sub(r"^\s+", "", s)).lower()
    return s.translate(str.maketrans("", "", string.punctuation))


def test_lm_eval_accuracy_matches_scoring_by_hand_for_the_checkpoint_and_its_base(lora_run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run, d = lora_run["run"], lora_run["dir"]
    ckpt = run.last_checkpoint().path
    tok = AutoTokenizer.from_pretrained(lora_run["model"])
    base = AutoModelForCausalLM.from_pretrained(lora_run["model"]).eval()
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(lora_run["model"]), ckpt).eval()
    # the generation task: half the targets are the checkpoint's own greedy answers, half cannot be
    prompts = [f"fox {i}" for i in range(8)]
    answers = [greedy(tuned, tok, p, 6) if i % 2 == 0 else f"nothing-like-it {i}" for i, p in enumerate(prompts)]
    base_answers = [greedy(base, tok, p, 6) for p in prompts]
    mc = write_jsonl(d / "mc.jsonl", [{"question": q, "choices": c, "answer": a if i % 2 else c[a]}
                                      for i, (q, c, a) in enumerate(QUESTIONS)])  # index or text: both kinds
    gen = write_jsonl(d / "gen.jsonl", [{"prompt": p, "answer": a} for p, a in zip(prompts, answers)])
    res = tunebench("eval", run.id, "--tasks", f"{mc},{gen}", "--max-new-tokens", "6", "--device", "cpu", "--json",
                    runs_dir=lora_run["runs_dir"], timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    acc_tuned, picks_tuned = hand_accuracy(tuned, tok)
    with tuned.disable_adapter():
        acc_base_switched, _ = hand_accuracy(tuned, tok)
    acc_base, picks_base = hand_accuracy(base, tok)
    assert acc_base == acc_base_switched
    assert picks_tuned != picks_base  # the two sides differ: the check tells a checkpoint from its base
    acc = out["tasks"]["mc"]["metrics"]["acc"]
    assert (acc["model"], acc["base"]) == (acc_tuned, acc_base)
    assert out["tasks"]["mc"]["samples"] == len(QUESTIONS) and out["tasks"]["mc"]["kind"] == "multiple_choice"
    em = out["tasks"]["gen"]["metrics"]["exact_match"]
    assert em["model"] == 0.5
    assert em["base"] == sum(norm(b) == norm(a) for b, a in zip(base_answers, answers)) / len(prompts)
    # recorded: a `benchmark` event of the run (the run has ended) and a report beside the runs
    from engine.checkpoints.bench_results import for_step, run_benchmarks, summary_line
    from engine.rundir.verify import verify_run

    event = for_step(run_benchmarks(run), run.last_checkpoint().step)
    assert event["tasks"]["mc"]["metrics"]["acc"] == acc and event["checkpoint"] == ckpt.name
    assert out["recorded"]["event"] and json.loads(open(out["recorded"]["report"]).read())["tasks"] == out["tasks"]
    assert verify_run(run, load_weights=False) == []  # seq numbers still strictly increasing
    assert summary_line(event).startswith(f"mc acc {acc_tuned:.3f} (base {acc_base:.3f})")


def test_checkpoints_pane_shows_the_highlighted_checkpoints_benchmark(lora_run):
    """After the test above (same module, same run): the final model's row shows its benchmark line."""
    from engine.checkpoints.bench_results import run_benchmarks
    from tests.tui_support import until
    from tui.app import TuneBench

    run = lora_run["run"]
    if not run_benchmarks(run):
        pytest.skip("needs the benchmark event the test above records")

    async def body():
        app = TuneBench(runs_dir=lora_run["runs_dir"])
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("5")
            await pilot.pause()
            pane = app.pane("checkpoints")
            table = pane.query_one("#models")
            table.move_cursor(row=list(pane.entries).index(str(run.path)) + 1)  # a checkpoint row first ...
            table.move_cursor(row=list(pane.entries).index(str(run.path)))  # ... then the final model's
            label = pane.query_one("#ckpt-status")
            await until(pilot, lambda: "benchmark: mc acc" in str(label.render()), what="the benchmark line")

    asyncio.run(body())


def test_a_task_whose_data_is_on_the_hub_fails_at_once_naming_it(tmp_path):
    from engine.checkpoints.benchmark import BenchmarkError, check_data, resolve_tasks, task_manager

    task = tmp_path / "hubtask.yaml"
    task.write_text("task: hubtask\ndataset_path: some-org/some-benchmark\ndataset_name: main\n"
                    "output_type: multiple_choice\ntest_split: test\ndoc_to_text: '{{q}}'\n"
                    "doc_to_choice: '{{c}}'\ndoc_to_target: 0\nmetric_list: [{metric: acc}]\n")
    specs = resolve_tasks([str(task)], tmp_path)
    assert specs[0].needs == ["some-org/some-benchmark (subset main)"]
    with pytest.raises(BenchmarkError) as e:
        check_data(specs, task_manager(specs), offline=True)
    assert "task hubtask" in str(e.value) and "needs the hub data set some-org/some-benchmark (subset main)" in str(e.value)


def test_registry_task_offline_names_its_hub_data(tmp_path):
    """hellaswag from lm-eval's registry, with no cached data: it says which data set to fetch, no download."""
    from engine.checkpoints.benchmark import BenchmarkError, check_data, resolve_tasks, task_manager

    specs = resolve_tasks(["hellaswag"], tmp_path)
    with pytest.raises(BenchmarkError) as e:
        check_data(specs, task_manager(specs), offline=True)
    assert "Rowan/hellaswag" in str(e.value)
    with pytest.raises(BenchmarkError) as e:
        resolve_tasks(["hellaswagg"], tmp_path)
    assert "did you mean hellaswag" in str(e.value)


@pytest.mark.parametrize("rows,expected", [
    ([{"question": "q", "choices": ["a", "b"], "answer": 2}], "mc.jsonl:1: `answer` must be the index"),
    ([{"question": "q", "choices": ["a", "b"], "answer": 0}, {"choices": ["a", "b"], "answer": 0}],
     "mc.jsonl:2: no prompt"),
    ([{"question": "q", "choices": "a b", "answer": 0}], "mc.jsonl:1: `choices` must be a list"),
    ([{"prompt": "q"}], "mc.jsonl:1: no target"),
])
def test_bad_task_rows_name_the_file_and_line(rows, expected, tmp_path):
    from engine.checkpoints.benchmark import BenchmarkError, resolve_tasks

    path = write_jsonl(tmp_path / "mc.jsonl", rows)
    with pytest.raises(BenchmarkError) as e:
        resolve_tasks([str(path)], tmp_path)
    assert str(e.value).startswith(f"{tmp_path}/{expected}")


def test_yaml_task_with_a_missing_local_file_is_one_cli_line(tiny_model, tmp_path):
    task = tmp_path / "local.yaml"
    task.write_text(f"task: local\ndataset_path: json\ndataset_kwargs: {{data_files: {{test: {tmp_path}/gone.jsonl}}}}\n"
                    "output_type: multiple_choice\ntest_split: test\n")
    res = tunebench("eval", tiny_model, "--tasks", task, runs_dir=tmp_path / "runs")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"tunebench: eval: {task}: task local reads {tmp_path}/gone.jsonl, which is not there" in res.stderr
    assert not (tmp_path / "runs").exists()  # nothing recorded for a benchmark that did not run
