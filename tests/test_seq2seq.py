"""method seq2seq: encoder-decoder models (tiny T5 and BART built here) through Seq2SeqTrainer, LoRA and full.

Data and truncation rules are unit tests; the runs are real engine runs on the tiny models (built once per module,
each run shared by the tests that read it); checkpoints reload with plain transformers/PEFT; compare streams and
export merges them; what cannot take an encoder-decoder is refused with one line before a run (or file) exists.
"""
from __future__ import annotations

import json

import pytest

from tests.methods_support import config, train, write_jsonl
from tests.tinyseq2seq import build_tiny_seq2seq, summary_corpus, summary_rows

METRICS = ["rouge1", "rougeL"]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    base = tmp_path_factory.getbasetemp() / "seq2seq"
    corpus = summary_corpus()
    return {"t5": build_tiny_seq2seq(base / "t5", "t5", corpus), "bart": build_tiny_seq2seq(base / "bart", "bart", corpus),
            "train": write_jsonl(base / "train.jsonl", summary_rows(48, seed=1)),
            "eval": write_jsonl(base / "eval.jsonl", summary_rows(8, seed=2)), "base": base}


RUNS: dict = {}


def run_of(assets, runs_dir_factory, family: str, kind: str):
    """One engine run per (family, adapter kind), trained the first time a test asks for it."""
    key = (family, kind)
    if key not in RUNS:
        cfg = config(assets[family], assets["train"], method="seq2seq", adapter={"kind": kind, "r": 4},
                     data={"eval": str(assets["eval"]), "max_length": 48, "truncation": "right"},
                     training={"max_steps": 4, "eval_steps": 2, "save_steps": 2},
                     eval={"metrics": METRICS, "max_rows": 4, "max_new_tokens": 6})
        RUNS[key] = train(runs_dir_factory(), cfg)
    return RUNS[key]


@pytest.fixture(scope="module")
def runs(assets, tmp_path_factory):
    return lambda family, kind: run_of(assets, lambda: tmp_path_factory.mktemp("runs"), family, kind)


# -- data ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("columns", [("document", "summary"), ("source", "target"), ("input", "target"),
                                     ("article", "highlights"), ("text", "summary"), ("prompt", "completion")])
def test_two_column_data_is_detected_for_seq2seq(tmp_path, columns):
    from engine.config import Config
    from engine.data.prepare import prepare

    path = write_jsonl(tmp_path / "d.jsonl", summary_rows(6, columns=columns))
    train_rows, _, info = prepare(Config().replace(method="seq2seq", data={"train": str(path)}))
    assert info["format"] == "prompt_completion"
    first = json.loads(path.read_text().splitlines()[0])
    assert train_rows[0] == {"prompt": first[columns[0]], "completion": first[columns[1]]}


def test_alpaca_and_one_exchange_become_source_and_target_and_conversations_are_refused_by_row(tmp_path):
    from engine.config import Config
    from engine.data.errors import DataError
    from engine.data.prepare import prepare

    alpaca = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Summarise.", "input": "anna from oslo bought tea.",
                                                 "output": "anna bought tea"}])
    rows, _, info = prepare(Config().replace(method="seq2seq", data={"train": str(alpaca)}))
    assert info["format"] == "alpaca" and rows == [{"prompt": "Summarise.\n\nanna from oslo bought tea.",
                                                     "completion": "anna bought tea"}]
    one = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi there"},
                        {"role": "assistant", "content": "hi"}]}
    two = {"messages": one["messages"][1:] * 2}
    chats = write_jsonl(tmp_path / "m.jsonl", [one, two])
    with pytest.raises(DataError) as e:
        prepare(Config().replace(method="seq2seq", data={"train": str(chats)}))
    text = str(e.value)
    assert "m.jsonl:2" in text and "not one exchange" in text and "method sft" in text
    rows, _, _ = prepare(Config().replace(method="seq2seq", data={"train": str(chats), "skip_invalid": True}))
    assert rows == [{"prompt": "Be brief.\n\nhi there", "completion": "hi"}]


def test_each_side_is_bounded_by_max_length_inside_its_special_tokens():
    from engine.data.seq2seq import encode_pair

    special = {0, 1}
    src, tgt = [0, 10, 11, 12, 13, 14, 1], [20, 21, 22, 23, 1]  # BART-like source (<s> .. </s>), T5-like target
    right = encode_pair(src, tgt, 4, "right", special)
    assert right.verdict == "cut" and right.input_ids == [0, 10, 11, 1] and right.labels == [20, 21, 22, 1]
    left = encode_pair(src, tgt, 4, "prompt_left", special)
    assert left.input_ids == [0, 13, 14, 1] and left.labels == [20, 21, 22, 1]  # targets always keep their start
    assert encode_pair(src, tgt, 4, "drop", special).verdict == "dropped"
    assert encode_pair(src, tgt, 4, "refuse", special).verdict == "refused"
    assert encode_pair(src, tgt, 8, "refuse", special).verdict == "kept"
    assert encode_pair(src[:3] + [1], tgt, 4, "refuse", special).verdict == "cut"  # only the target is over


def test_refuse_names_the_row_whose_source_is_too_long(assets, tmp_path):
    from transformers import AutoTokenizer

    from engine.config import Config
    from engine.data.errors import DataError
    from engine.data.prepare import prepare

    rows = summary_rows(3)
    rows[1]["document"] = " ".join(["the market opened early that week ."] * 20)
    path = write_jsonl(tmp_path / "long.jsonl", rows)
    cfg = Config().replace(method="seq2seq", data={"train": str(path), "max_length": 32, "truncation": "refuse"})
    with pytest.raises(DataError) as e:
        prepare(cfg, AutoTokenizer.from_pretrained(assets["t5"]))
    assert "long.jsonl:2" in str(e.value) and "more than data.max_length 32" in str(e.value)


def test_inspect_measures_each_side_as_the_engine_bounds_it(assets, tmp_path):
    from transformers import AutoTokenizer

    from engine.data.inspect import fitting_methods, report
    from engine.data.seq2seq import ids

    rows = summary_rows(12)
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    assert fitting_methods(str(path)) == ("prompt_completion", ["seq2seq"])  # document/summary: seq2seq's alone
    tok = AutoTokenizer.from_pretrained(assets["bart"])
    out = report(str(path), "seq2seq", max_length=16, tokenizer=tok)
    longest = max(max(len(a), len(b)) for a, b in zip(ids(tok, [r["document"] for r in rows]),
                                                      ids(tok, [r["summary"] for r in rows])))
    assert out["format"] == "prompt_completion" and out["invalid_count"] == 0
    assert out["token_lengths"]["max"] == longest > 16 and out["truncation"]["rows_cut"] == 12
    assert out["ends_with_eot_fraction"] == 1.0  # every target ends with </s> (the model learns to stop)
    segs = out["example"]["segments"]  # the source as cut (untrained), then the target (trained), each in bounds
    assert [x["trained"] for x in segs] == [False, True] and not any(x["truncated"] for x in segs)
    assert len(tok(segs[0]["text"], add_special_tokens=False)["input_ids"]) <= 16
    assert rows[0]["summary"] in segs[1]["text"] and segs[1]["text"].endswith("</s>")


# -- validation and preflight ------------------------------------------------------------------------------------
@pytest.mark.parametrize("sets,key", [({"data": {"packing": True}}, "data.packing"),
                                      ({"adapter": {"kind": "prompt_tuning"}}, "adapter.kind"),
                                      ({"data": {"loss_on": "all"}}, "data.loss_on"),
                                      ({"data": {"chat_template": "chatml"}}, "data.chat_template"),
                                      ({"training": {"neftune_noise_alpha": 5}}, "training.neftune_noise_alpha")])
def test_validation_refuses_what_seq2seq_cannot_do(sets, key):
    from engine.config.validate import validate

    raw = {"method": "seq2seq", "model": {"name_or_path": "x"}, "data": {"train": "d.jsonl"}, **sets}
    _, problems = validate(raw)
    assert [p.path for p in problems] == [key], problems
    _, ok = validate({"method": "seq2seq", "model": {"name_or_path": "x"}, "data": {"train": "d.jsonl", "eval_fraction": 0.1},
                      "training": {"label_smoothing": 0.1}, "eval": {"metrics": METRICS}})
    assert ok == []


def _refused(r, runs_dir):
    from engine.rundir.runs import list_runs

    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert not list_runs(runs_dir) and not (runs_dir.exists() and any(runs_dir.iterdir()))
    return [x for x in r.stderr.splitlines() if x.strip().startswith("method")]


def test_sft_on_t5_is_refused_with_the_fix_method_seq2seq(assets, tmp_path, runs_dir):
    from tests.conftest import tunebench, write_config

    r = tunebench("train", write_config(tmp_path / "c.yaml", assets["t5"], assets["train"]), runs_dir=runs_dir,
                  timeout=120)
    lines = _refused(r, runs_dir)
    assert len(lines) == 1 and "t5 model, which method sft cannot train; it can train: seq2seq" in lines[0]
    assert "set method: seq2seq" in lines[0]


def test_seq2seq_on_a_causal_model_is_refused_naming_sft(tiny_model, assets, tmp_path, runs_dir):
    from tests.conftest import tunebench, write_config

    r = tunebench("train", write_config(tmp_path / "c.yaml", tiny_model, assets["train"], method="seq2seq"),
                  runs_dir=runs_dir, timeout=120)
    lines = _refused(r, runs_dir)
    assert len(lines) == 1 and "which method seq2seq cannot train; it can train: sft" in lines[0]
    assert "set method: sft" in lines[0]


@pytest.mark.asyncio
async def test_the_workbench_launch_refuses_sft_on_bart_as_the_cli_does(assets, tmp_path, runs_dir):
    from tests.test_preflight import launch_refused

    data = write_jsonl(tmp_path / "pc.jsonl", summary_rows(8, columns=("prompt", "completion")))
    shown, notes = await launch_refused(tmp_path, runs_dir, {"model.name_or_path": str(assets["bart"]),
                                                             "data.train": str(data)})
    line = "bart model, which method sft cannot train; it can train: seq2seq, classification, reward"
    assert line in shown and line in notes and "set method: seq2seq" in shown


# -- runs -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family,kind", [("t5", "lora"), ("bart", "none"), ("t5", "none"), ("bart", "lora")])
def test_trains_and_the_checkpoint_reloads_with_plain_transformers(assets, runs, family, kind):
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    run, ev = runs(family, kind)
    assert [e["step"] for e in ev["eval"]] == [0, 2, 4]  # the baseline at step 0, then every eval_steps
    for e in ev["eval"]:  # ROUGE of generated answers arrives as numbers beside the loss
        assert isinstance(e["loss"], float) and all(isinstance(e[m], float) and 0 <= e[m] <= 1 for m in METRICS)
    from engine.rundir.evalkeys import metric_values

    assert list(metric_values(ev["eval"][-1])) == METRICS  # what the Monitor and status show: the metrics asked for
    samples = ev["eval_samples"]  # what the scores are made of, one event an evaluation, as sft writes it
    assert [s["step"] for s in samples] == [0, 2, 4] and all(s["rows"] == 4 for s in samples)
    eval_rows = [json.loads(x) for x in assets["eval"].read_text().splitlines()]
    assert [t["reference"] for t in samples[-1]["samples"]] == [r["summary"] for r in eval_rows[:3]]
    assert samples[-1]["scores"] == {m: ev["eval"][-1][m] for m in METRICS}
    assert ev["data"][-1]["format"] == "prompt_completion" and ev["data"][-1]["eval_rows"] == 8
    assert ev["summary"][-1]["num_tokens"] > 0 and all(m in ev["summary"][-1] for m in METRICS)
    ckpt = run.last_checkpoint()
    assert ckpt.step == 4 and json.loads((ckpt.path / "tunebench.json").read_text())["method"] == "seq2seq"
    tok = AutoTokenizer.from_pretrained(ckpt.path)
    base = AutoModelForSeq2SeqLM.from_pretrained(assets[family])
    fresh = dict(AutoModelForSeq2SeqLM.from_pretrained(assets[family]).named_parameters())
    if kind == "lora":
        from peft import PeftModel

        assert json.loads((ckpt.path / "adapter_config.json").read_text())["task_type"] == "SEQ_2_SEQ_LM"
        model = PeftModel.from_pretrained(base, ckpt.path)
        trained = [p for n, p in model.named_parameters() if "lora_B" in n]
        assert trained and any(bool(p.abs().sum() > 0) for p in trained)  # B starts at zero: it moved
    else:
        model = AutoModelForSeq2SeqLM.from_pretrained(ckpt.path)
        moved = [n for n, p in model.named_parameters() if n in fresh and not torch.equal(p, fresh[n])]
        assert moved
    model.eval()
    enc = tok(summary_rows(1, seed=9)[0]["document"], return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=5, do_sample=False)
    assert out.shape[0] == 1 and 1 < out.shape[1] <= 6


def test_a_weighted_mixture_in_length_order_trains(assets, tmp_path):
    other = write_jsonl(tmp_path / "other.jsonl", summary_rows(16, seed=7, columns=("source", "target")))
    cfg = config(assets["t5"], assets["train"], method="seq2seq", adapter={"kind": "none"},
                 data={"train": [f"{assets['train']}:3", f"{other}:1"], "order": "length", "max_length": 48,
                       "truncation": "right"}, training={"max_steps": 2})
    _, ev = train(tmp_path / "runs", cfg)
    data = ev["data"][-1]
    assert data["mixture"]["sources"][0]["weight"] == 3 and data["order"] == "length", data
    from engine.training import modeling, sampling
    from engine.training.methods import seq2seq

    trainer = seq2seq.build(cfg, modeling.resolve(cfg), {"trainer_dir": str(tmp_path / "t")}, [])
    drawn = trainer._get_train_sampler()  # the trainer draws its rows through the mixture's sampler
    assert isinstance(drawn, sampling.MixtureSampler) and drawn.size == len(trainer.train_dataset)
    assert sum(s["drawn"] for s in data["mixture"]["sources"]) == len(list(iter(drawn)))


def test_resume_goes_on_from_the_checkpoint(assets, runs):
    from engine.rundir.events import read_events
    from engine.training.worker import run_engine

    import signal

    run, _ = runs("bart", "none")

    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        rc = run_engine(run, resume=True, from_step=2)
    finally:
        for s, h in saved.items():
            signal.signal(s, h)
    assert rc == 0 and run.status()["state"] == "completed", run.status().get("error")
    logs = [e["message"] for e in read_events(run.events_path, ("log",))]
    assert "resuming from checkpoint-2" in logs
    steps = [e["step"] for e in read_events(run.events_path, ("metrics",)) if "loss" in e]
    assert steps[-2:] == [3, 4]


def test_chat_and_lm_eval_refuse_an_encoder_decoder_before_loading_it(assets):
    from engine.checkpoints.benchmark import BenchmarkError, run_benchmark
    from engine.checkpoints.chat import ChatSession
    from engine.checkpoints.chats import Conversation
    from engine.checkpoints.refs import resolve_ref

    ref = resolve_ref(str(assets["bart"]))
    with pytest.raises(LookupError, match="encoder-decoder .seq2seq. model maps one source text to one target"):
        ChatSession(Conversation(models={"a": str(assets["bart"])}, labels={"a": ref.label}), ref)
    with pytest.raises(BenchmarkError, match="encoder-decoder .seq2seq. model; tunebench eval runs lm-eval"):
        run_benchmark(ref, [])


# -- compare and export ----------------------------------------------------------------------------------------
def test_compare_streams_what_generate_gives_and_scores_the_eval_split(assets, runs):
    from transformers import AutoModelForSeq2SeqLM

    from engine.checkpoints import generate
    from engine.checkpoints.compare import run_comparison
    from engine.checkpoints.refs import resolve_ref
    from engine.checkpoints.settings import Decoding

    run, _ = runs("t5", "lora")
    a, base = resolve_ref(str(run.path)), resolve_ref(str(assets["t5"]))
    assert a.seq2seq and base.seq2seq and a.adapter
    out = run_comparison(a, base, None, Decoding(max_new_tokens=6), device="cpu")
    assert out["metrics"]["shared_base"]  # the adapter switched on and off over one loaded T5
    assert len(out["prompts"]) == 8 and out["metrics"]["eval"].startswith("eval split of")
    for side in ("a", "b"):
        assert out["metrics"][side]["eval_loss"] > 0 and out["metrics"][side]["eval_tokens"] > 0
    # the streaming decoder loop gives the tokens transformers' own greedy generate gives
    side_a, side_b = generate.load_pair(a, a)
    prompt = {"text": summary_rows(1, seed=5)[0]["document"]}
    st = generate.Stream(side_a, side_a.prompt_ids(prompt), Decoding(max_new_tokens=6), 0)
    while not st.done:
        st.step()
    gen = side_a.model.generate(input_ids=st.source, max_new_tokens=6, do_sample=False, num_beams=1)[0].tolist()[1:]
    eos = side_a.tok.eos_token_id
    assert st.out == (gen[:gen.index(eos)] if eos in gen else gen)
    assert generate._auto_class(a) is AutoModelForSeq2SeqLM
    generate.unload(side_a, side_b)


def test_export_merges_for_auto_model_for_seq2seq_lm_and_refuses_decoder_only_formats(assets, runs, tmp_path,
                                                                                     runs_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from engine.checkpoints.export import export
    from engine.checkpoints.refs import resolve_ref
    from tests.conftest import tunebench

    run, _ = runs("t5", "lora")
    ref = resolve_ref(str(run.path))
    info = export(ref, tmp_path / "merged", merge=True)
    assert info["kind"] == "merged" and info["verified"]["passed"]
    merged = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "merged").eval()
    peft = PeftModel.from_pretrained(AutoModelForSeq2SeqLM.from_pretrained(assets["t5"]), ref.path).eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "merged")
    enc = tok(summary_rows(1, seed=3)[0]["document"], return_tensors="pt")
    labels = tok("anna bought tea in oslo", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(merged(**enc, labels=labels).logits, peft(**enc, labels=labels).logits, atol=1e-4)
    for fmt in ("gguf", "ollama", "vllm"):
        r = tunebench("export", str(run.path), "--out", str(tmp_path / fmt), "--format", fmt, runs_dir=runs_dir,
                      timeout=120)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        line = r.stderr.strip().splitlines()[-1]
        assert "encoder-decoder (seq2seq) model, which --format " + fmt in line and "--format safetensors" in line
        assert not (tmp_path / fmt).exists()
