"""Headless A/B comparison: model references, seeded generation (the same twice), eval loss, the CLI, prompts files."""
from __future__ import annotations

import json

import pytest

from engine.checkpoints.display import word_diff
from engine.checkpoints.prompts import read_prompts
from engine.checkpoints.refs import device_advice, resolve_ref
from engine.data.errors import DataError
from tests.compare_support import trained_run
from tests.conftest import tunebench

GIB = 2**30


@pytest.fixture(scope="session")
def ab(tmp_path_factory, tiny_model, chat_jsonl):
    return trained_run(tmp_path_factory.getbasetemp() / "compare", tiny_model, chat_jsonl)


def test_references_resolve_to_checkpoints_final_and_base(ab):
    run, runs_dir = ab["run"], ab["runs_dir"]
    final = resolve_ref(run.id, runs_dir)
    assert final.path.endswith("checkpoint-6") and final.adapter and "final" in final.label
    assert resolve_ref(run.id[:12], runs_dir).path == final.path  # a unique prefix
    assert resolve_ref(str(run.path), runs_dir).path == final.path  # a run directory
    two = resolve_ref(f"{run.id}@2", runs_dir)
    assert two.path.endswith("checkpoint-2") and two.meta["step"] == 2 and two.run.id == run.id
    by_dir = resolve_ref(str(run.checkpoints_dir / "checkpoint-4"), runs_dir)
    assert by_dir.meta["step"] == 4 and by_dir.base_model == str(ab["model"]) and by_dir.run.id == run.id
    base = resolve_ref(str(ab["model"]), runs_dir)
    assert base.kind == "base" and not base.adapter
    with pytest.raises(LookupError, match=r"steps: 2, 4, 6"):
        resolve_ref(f"{run.id}@3", runs_dir)
    with pytest.raises(LookupError, match="no such run"):
        resolve_ref("nosuchrun", runs_dir)


def test_same_seed_gives_the_same_outputs_twice_cli_and_in_process(ab):
    """Two checkpoints, sampled decoding with seed 3: the CLI's --json and an in-process run agree token for token."""
    from engine.checkpoints.compare import run_comparison
    from engine.checkpoints.prompts import default_prompts
    from engine.checkpoints.settings import Decoding

    run, runs_dir = ab["run"], ab["runs_dir"]
    res = tunebench("compare", f"{run.id}@2", run.id, "--json", "--sample", "--temperature", "1.0", "--seed", "3",
                    "--max-new-tokens", "8", "--limit", "4", runs_dir=runs_dir)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    assert len(out["prompts"]) == 4 and {"prompt", "a", "b"} <= set(out["prompts"][0])
    a, b = resolve_ref(f"{run.id}@2", runs_dir), resolve_ref(run.id, runs_dir)
    dec = Decoding(max_new_tokens=8, sample=True, temperature=1.0, seed=3)
    prompts = default_prompts(a, b, 4)[0]
    again = run_comparison(a, b, prompts, dec, metrics=False)
    assert [(r["a"], r["b"]) for r in again["prompts"]] == [(r["a"], r["b"]) for r in out["prompts"][:4]]
    assert out["metrics"]["shared_base"] is True  # two adapters of one run: one base in memory
    # The eval split is the run's own: B's loss on it is the eval loss the trainer recorded at step 6.
    recorded = run.checkpoints()[-1].meta["eval_loss"]
    assert out["metrics"]["b"]["eval_loss"] == pytest.approx(recorded, abs=2e-3)
    assert out["metrics"]["b"]["perplexity"] == pytest.approx(2.718281828 ** out["metrics"]["b"]["eval_loss"], rel=1e-3)
    other = run_comparison(a, b, prompts, Decoding(max_new_tokens=8, sample=True, temperature=1.0, seed=4), metrics=False)
    assert [r["a"] for r in other["prompts"]] != [r["a"] for r in again["prompts"]]  # the seed matters


def test_shared_base_switching_matches_models_loaded_alone(ab):
    """A and B sharing one base (adapters switched per token) answer exactly as each loaded on its own."""
    from engine.checkpoints import generate

    run, runs_dir = ab["run"], ab["runs_dir"]
    a, _, base = (resolve_ref(f"{run.id}@2", runs_dir), resolve_ref(run.id, runs_dir),
                  resolve_ref(str(ab["model"]), runs_dir))
    prompts = [{"messages": [{"role": "user", "content": f"say {w}"}]} for w in ("apple", "stone")]
    dec = generate.Decoding(max_new_tokens=6)
    sa, sb = generate.load_pair(a, base, "cpu")
    assert sa.shared and sa.model is sb.model
    shared = generate.generate_pair(sa, sb, prompts, dec)
    generate.unload(sa, sb)
    alone = {}
    for name, ref in (("a", a), ("b", base)):
        x, y = generate.load_pair(ref, ref, "cpu")
        alone[name] = [r["a"] for r in generate.generate_pair(x, y, prompts, dec)]
        generate.unload(x, y)
    assert [r["a"] for r in shared] == alone["a"] and [r["b"] for r in shared] == alone["b"]
    assert alone["a"] != alone["b"]  # the fine-tuned adapter changed the answers


def test_prompts_files_in_the_formats_users_bring(tmp_path):
    (tmp_path / "p.txt").write_text("first prompt\n\nsecond prompt\n")
    assert [p["messages"][0]["content"] for p in read_prompts(tmp_path / "p.txt")] == ["first prompt", "second prompt"]
    (tmp_path / "chat.jsonl").write_text(json.dumps({"messages": [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"}]}) + "\n")
    (p,) = read_prompts(tmp_path / "chat.jsonl")
    assert [m["role"] for m in p["messages"]] == ["system", "user"] and p["reference"] == "hello"
    (tmp_path / "alpaca.json").write_text(json.dumps([{"instruction": "add", "input": "1 1", "output": "2"}]))
    (p,) = read_prompts(tmp_path / "alpaca.json")
    assert p["messages"][-1]["content"].startswith("add") and p["reference"] == "2"
    (tmp_path / "bad.jsonl").write_text('{"prompt": "ok"}\n{not json\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2"):
        read_prompts(tmp_path / "bad.jsonl")


def test_cli_errors_are_one_line(ab, tmp_path):
    res = tunebench("compare", "nosuchrun", ab["run"].id, runs_dir=ab["runs_dir"])
    assert res.returncode == 2 and "nosuchrun" in res.stderr and "Traceback" not in res.stderr
    res = tunebench("compare", ab["run"].id, ab["run"].id, "--max-new-tokens", "0", runs_dir=ab["runs_dir"])
    assert res.returncode == 2 and "max_new_tokens" in res.stderr


def test_word_diff_marks_only_the_words_that_differ():
    sa, sb = word_diff("the cat sat down", "the dog sat down")
    assert [s for s, d in sa if d] == [" cat"] and [s for s, d in sb if d] == [" dog"]
    assert "".join(s for s, _ in sa) == "the cat sat down"
    assert all(not d for _, d in word_diff("same", "same")[0])


def test_device_advice_decides_from_free_memory_and_busy_runs():
    assert device_advice([], 10 * GIB, ["r1"])["device"] == "cpu"  # no GPU: no question
    gpu = lambda used: [{"index": 0, "mem_total": 24 * GIB, "mem_used": used}]  # noqa: E731
    free = device_advice(gpu(2 * GIB), 4 * GIB, [])
    assert free == {**free, "device": "cuda", "ask": False}
    busy_short = device_advice(gpu(22 * GIB), 4 * GIB, ["run-7"])
    assert busy_short["ask"] and busy_short["options"] == ["wait", "cpu", "go"]
    assert "run-7" in busy_short["message"] and "2.0 GiB free" in busy_short["message"]
    busy_fits = device_advice(gpu(4 * GIB), 4 * GIB, ["run-7"])
    assert busy_fits["ask"] and "fits" in busy_fits["message"]  # it fits, but would slow the run: still asked
    stranger = device_advice(gpu(23 * GIB), 4 * GIB, [])
    assert stranger["ask"] and "another process" in stranger["message"]
    na = device_advice([{"index": 0, "mem_total": None, "mem_used": None}], GIB, [])
    assert na["device"] == "cuda" and not na["ask"]  # N/A memory and nothing training: go
