"""Data mixing and data.order beyond sft: dpo, kto, reward and classification hand their rows to the trainer as
one table, grpo/rloo keep TRL's repeat structure over the mixture's prompt sequence. Each trainer is built on a
tiny model and its sampler read epoch by epoch; a real run per family (preference, classification, online RL)
records the mixture in its `data` event."""
from __future__ import annotations

from collections import Counter

import pytest

from engine import config as cfgmod
from tests.methods_support import batches, build_assets, config, train, write_jsonl

LEVELS = ["cloud", "green", "seven", "light", "table"]  # difficulty 0..4 as a word both tiny tokenizers know


@pytest.fixture(scope="module")
def mix(tmp_path_factory, tiny_model):
    d = tmp_path_factory.mktemp("mixmethods")
    assets = build_assets(tmp_path_factory.getbasetemp() / "methods")

    def rows(word, n, shape):
        return [shape(f"{word} {LEVELS[i % 5]}", i % 5, i) for i in range(n)]

    shapes = {
        "pref": lambda t, k, i: {"prompt": f"say {t}: ", "chosen": "yes yes", "rejected": "no", "difficulty": k},
        "kto": lambda t, k, i: {"prompt": f"say {t}: ", "completion": "yes" if i % 2 else "no", "label": bool(i % 2),
                                "difficulty": k},
        "cls": lambda t, k, i: {"text": f"{t} good fun" if i % 2 else f"{t} bad and dull",
                                "label": ["negative", "positive"][i % 2], "difficulty": k},
        "prompt": lambda t, k, i: {"prompt": f"say {t}: ", "word": t.split()[0], "difficulty": k},
    }
    out = {"llama": tiny_model, "bert": assets["bert"], "rewards": assets["rewards"]}
    for name, shape in shapes.items():  # source a: 20 rows, source b: 60 rows; 3:1 makes a 60 / 20 epoch of 80
        out[name] = (write_jsonl(d / f"{name}_a.jsonl", rows("apple", 20, shape)),
                     write_jsonl(d / f"{name}_b.jsonl", rows("river", 60, shape)))
    out["chat_pref"] = write_jsonl(d / "chat_pref.jsonl", [
        {"prompt": [{"role": "user", "content": "say river"}], "chosen": [{"role": "assistant", "content": "river"}],
         "rejected": [{"role": "assistant", "content": "no"}]}] * 10)
    return out


METHODS = {"dpo": ("llama", "pref"), "kto": ("llama", "kto"), "reward": ("bert", "pref"),
           "classification": ("bert", "cls")}


def mixed_config(mix, method, **data):
    model, files = METHODS[method]
    a, b = mix[files]
    extra = {"adapter": {"kind": "none"}} if model == "bert" else {}
    return config(mix[model], a, method=method, data={"train": [f"{a}:3", f"{b}:1"], **data}, **extra)


def build(cfg):
    import importlib

    from engine.training import modeling

    job = {"trainer_dir": str(cfg.data.train[0]).split(":")[0] + f".{cfg.method}.tr"}
    module = importlib.import_module(f"engine.training.methods.{cfg.method}")
    return module.build(cfg, modeling.resolve(cfg), job, []), job


def row_text(trainer, i: int) -> str:
    ds = trainer.train_dataset
    col = next(c for c in ("prompt_ids", "chosen_ids", "input_ids") if c in ds.column_names)
    return trainer.processing_class.decode(ds[int(i)][col])


@pytest.mark.parametrize("method", list(METHODS))
def test_a_3_to_1_mixture_and_a_column_curriculum_for(method, mix):
    cfg = mixed_config(mix, method, order="column:difficulty", curriculum_epochs=1)
    trainer, job = build(cfg)
    sampler = trainer._get_train_sampler()
    dl = trainer.get_train_dataloader()
    assert dl.batch_sampler.sampler is sampler  # the dataloader the trainer trains from draws through it
    epochs = []
    for epoch in range(3):
        texts = [row_text(trainer, i) for i in sampler.indices(epoch)]
        words = Counter("apple" if "apple" in t else "river" if "river" in t else "?" for t in texts)
        assert (len(texts), words["apple"], words["river"]) == (80, 60, 20), (epoch, words)
        epochs.append([next(k for k, w in enumerate(LEVELS) if w in t) for t in texts])
    assert epochs[0] == sorted(epochs[0])  # the curriculum epoch: difficulty ascending
    assert epochs[1] != sorted(epochs[1]) and epochs[2] != epochs[1]  # then shuffled, drawn again each epoch
    m = job["mixture"]
    assert [(s["rows"], s["drawn"]) for s in m["sources"]] == [(20, 60), (60, 20)]
    assert (job["order"], job["curriculum_epochs"], m["formats"][0]) == ("column:difficulty", 1, METHODS[method][1]
                                                                         .replace("pref", "preference")
                                                                         .replace("cls", "classification"))


def test_length_order_follows_the_tokens_the_trainer_sees(mix):
    cfg = config(mix["llama"], mix["pref"][1], method="dpo", data={"order": "length"})
    trainer, job = build(cfg)
    ds = trainer.train_dataset
    lengths = [len(ds[i]["prompt_ids"]) + max(len(ds[i]["chosen_ids"]), len(ds[i]["rejected_ids"]))
               for i in trainer._get_train_sampler().indices(0)]
    assert lengths == sorted(lengths) and len(lengths) == 60 and len(set(lengths)) > 1
    assert "mixture" not in job and job["order"] == "length"


def test_grpo_keeps_trls_repeat_structure_over_the_mixture(mix):
    a, b = mix["prompt"]
    cfg = config(mix["llama"], a, method="grpo", data={"train": [f"{a}:3", f"{b}:1"], "order": "column:difficulty"},
                 rl={"reward_file": str(mix["rewards"]), "reward_functions": ["reward"], "num_generations": 4,
                     "max_completion_length": 4}, training={"batch_size": 8, "grad_accum": 2})
    trainer, job = build(cfg)
    sampler = trainer._get_train_sampler()
    order = sampler.indices(0).tolist()
    flat = list(sampler)
    g, chunk = trainer.num_generations, trainer.args.generation_batch_size // trainer.num_generations
    reps = trainer.num_iterations * trainer.args.steps_per_generation
    assert (chunk, reps) == (4, 2)  # 16 completions a generation (8 x 2 accumulated), reused for 2 steps
    assert len(flat) == len(sampler) == (80 // chunk) * chunk * g * reps
    # each prompt num_generations times in a row, each chunk of prompts repeated, the prompts in the drawn order
    expect = [i for c in range(80 // chunk) for _ in range(reps) for i in order[c * chunk:(c + 1) * chunk] for _ in range(g)]
    assert flat == expect
    from trl.trainer.utils import RepeatSampler  # TRL's own structure, unshuffled, over the drawn sequence

    trl = RepeatSampler(order, mini_repeat_count=g, batch_size=chunk, repeat_count=reps, shuffle=False)
    assert flat == [order[j] for j in trl]
    texts = [trainer.train_dataset[i]["prompt"] for i in order]
    assert Counter("apple" in t for t in texts) == {True: 60, False: 20}
    levels = [next(k for k, w in enumerate(LEVELS) if w in t) for t in texts]
    assert levels == sorted(levels)


def test_sources_of_unlike_shapes_are_refused_naming_them(mix):
    from engine.data.check import streamed_reader
    from engine.data.errors import DataError

    a = mix["pref"][0]
    cfg = config(mix["llama"], a, method="dpo", data={"train": [f"{a}:1", f"{mix['chat_pref']}:1"]})
    with pytest.raises(DataError) as e:  # the preflight, before a run exists
        streamed_reader()(cfg)
    msg = str(e.value)
    assert "source 1" in msg and "source 2" in msg and "as conversations" in msg and "as text" in msg
    from engine.training.methods.rows import take_rows

    with pytest.raises(DataError, match="do not share a format"):  # and the engine's own preparation
        take_rows(cfg, {})


def test_classification_with_group_by_length_refuses_an_order():
    raw = {"method": "classification", "model": {"name_or_path": "m"}, "data": {"train": "a.jsonl", "order": "length"},
           "training": {"group_by_length": True}}
    _, problems = cfgmod.validate(raw)
    assert any(p.path == "data.order" and "group_by_length" in str(p) for p in problems), problems


def test_real_runs_record_the_mixture(mix, tmp_path):
    for method in ("dpo", "classification"):
        cfg = mixed_config(mix, method, order="length", eval_fraction=0.1)
        run, ev = train(tmp_path / method, cfg.replace(training={"max_steps": 2}))
        data = next(e for e in ev["data"] if "mixture" in e)
        shares = {s["path"].split("/")[-1]: s["drawn"] for s in data["mixture"]["sources"]}
        # 80 task rows, 8 held out for eval (from the task sources); the epoch keeps the 72 others' count
        assert (data["order"], data["train_rows"], data["eval_rows"]) == ("length", 72, 8)
        assert sum(shares.values()) == data["mixture"]["epoch_rows"] == 72
        assert shares[f"{METHODS[method][1]}_a.jsonl"] == 3 * shares[f"{METHODS[method][1]}_b.jsonl"]


def test_a_real_grpo_run_on_a_mixture(mix, tmp_path):
    a, b = mix["prompt"]
    cfg = config(mix["llama"], a, method="grpo", data={"train": [f"{a}:3", f"{b}:1"]},
                 rl={"reward_file": str(mix["rewards"]), "reward_functions": ["reward"], "num_generations": 4,
                     "max_completion_length": 4}, training={"max_steps": 2})
    run, ev = train(tmp_path, cfg)
    data = next(e for e in ev["data"] if "mixture" in e)
    assert [s["drawn"] for s in data["mixture"]["sources"]] == [60, 20]
    assert {s["step"] for s in ev.get("sample", [])} <= {1, 2} and ev["summary"]


def test_a_resumed_dpo_run_draws_the_same_rows(mix):
    """A new trainer (as a resumed engine builds) skips the batches already trained and gets the rest of the
    same epoch, as sft's does (tests/test_mixing.py): the draw is a pure function of (seed, epoch)."""
    cfg = mixed_config(mix, "dpo", order="length", curriculum_epochs=1)

    first, _ = build(cfg)
    full = batches(first, 1)
    again, _ = build(cfg)
    assert len(full) == 20 and batches(again, 1, skip=7) == full[7:]  # 80 rows a 4-row batch
    assert batches(again, 0) != full


@pytest.mark.parametrize("method", ["dpo", "kto"])
def test_easy_first_for_pairs_orders_by_the_answers_base_loss(method, mix, tmp_path, monkeypatch):
    """dpo scores the chosen answer given its prompt, kto the completion: lowest base-model loss first, the
    scores cached under the tokenised rows' content (a second build reads them)."""
    import torch
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("TUNEBENCH_CACHE_DIR", str(tmp_path / "cache"))
    words = ["apple", "river stone", "cloud green seven", "light", "table table table table"]
    if method == "dpo":
        rows = [{"prompt": f"say {w}: ", "chosen": f"{words[(i + 2) % 5]} {i}", "rejected": "no"}
                for i, w in enumerate(words * 6)]
    else:
        rows = [{"prompt": f"say {w}: ", "completion": f"{words[(i + 2) % 5]} {i}", "label": bool(i % 2)}
                for i, w in enumerate(words * 6)]
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    cfg = config(mix["llama"], data, method=method, data={"order": "easy_first", "curriculum_epochs": 1})
    trainer, job = build(cfg)
    assert job["scoring"]["cached"] is False and job["scoring"]["rows"] == 30
    model = AutoModelForCausalLM.from_pretrained(mix["llama"], dtype=torch.float32).eval()
    ds = trainer.train_dataset
    answer = "chosen_ids" if method == "dpo" else "completion_ids"

    def loss(i):  # transformers' causal-LM loss on the answer's tokens, the prompt masked, cut at max_length (32)
        p, a = ds[i]["prompt_ids"], ds[i][answer]  # from the start, as TRL's collator cuts (keep_start)
        ids, labels = (p + a)[:32], ([-100] * len(p) + a)[:32]
        with torch.no_grad():
            return float(model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss)

    sampler = trainer._get_train_sampler()
    first = [loss(i) for i in sampler.indices(0)]
    assert len(first) == 30 and all(b >= a - 1e-4 for a, b in zip(first, first[1:])) and first[-1] > first[0]
    assert [loss(i) for i in sampler.indices(1)] != sorted(first)  # shuffled after curriculum_epochs
    again, job2 = build(cfg)
    assert job2["scoring"]["cached"] is True and list(again._get_train_sampler().indices(0)) == list(sampler.indices(0))
