"""Data mixing and curriculum (engine.data.mixture, engine.training.sampling): the rows each epoch draws from
each source, their order, and the same rows again for a resumed run."""
from __future__ import annotations

import pytest

from engine import config as cfgmod
from engine.data import mixture
from tests.methods_support import batches, config, write_jsonl


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("mixing")
    return {"a": write_jsonl(d / "a.jsonl", [{"text": f"apple {i}", "difficulty": (i * 7) % 10} for i in range(40)]),
            "b": write_jsonl(d / "b.jsonl", [{"text": f"river stone {i} " * (1 + i % 5)} for i in range(200)]),
            "dir": d}


def build(cfg):
    from engine.training import modeling
    from engine.training.methods import sft

    job = {"trainer_dir": str(cfg.data.train if isinstance(cfg.data.train, str) else cfg.data.train[0]) + ".tr"}
    return sft.build(cfg, modeling.resolve(cfg), job, []), job


def epoch_texts(trainer, epoch: int) -> list[str]:
    s = trainer._get_train_sampler()
    s.set_epoch(epoch)
    return [trainer.processing_class.decode(trainer.train_dataset[i]["input_ids"]) for i in s]


def test_a_3_to_1_mixture_draws_that_ratio_each_epoch(tiny_model, files):
    cfg = config(tiny_model, files["a"], data={"train": [{"path": str(files["a"]), "weight": 3}, f"{files['b']}:1"],
                                               "cache": False})
    assert cfg.data.train == [f"{files['a']}:3", f"{files['b']}:1"]  # mappings kept as path:weight
    trainer, job = build(cfg)
    seen = []
    for epoch in range(3):
        texts = epoch_texts(trainer, epoch)
        apple, river = sum("apple" in t for t in texts), sum("river" in t for t in texts)
        assert (len(texts), apple, river) == (240, 180, 60)  # epoch = 40 + 200 rows; a (40 rows) up-sampled
        seen.append(texts)
    assert seen[0] != seen[1]  # drawn again each epoch
    mix = job["mixture"]
    assert [(s["rows"], s["drawn"], s["weight"]) for s in mix["sources"]] == [(40, 180, 3.0), (200, 60, 1.0)]
    assert mix["epoch_rows"] == 240 and job["order"] == "shuffle"


def test_general_mix_is_that_share_of_each_epoch_and_task_rows_keep_their_count():
    srcs = [mixture.Source("task", 1.0), mixture.Source("general", 0.1, general=True)]
    assert mixture.counts([900, 50], srcs, 0.1) == [900, 100]
    idx = mixture.epoch_indices([range(900), range(900, 950)], [900, 100], seed=3, epoch=0)
    assert len(idx) == 1000 and (idx >= 900).sum() == 100 and len(set(idx[idx < 900].tolist())) == 900


def test_length_curriculum_holds_for_its_epochs_then_shuffles(tiny_model, files):
    cfg = config(tiny_model, files["b"], data={"order": "length", "curriculum_epochs": 2, "cache": False})
    trainer, job = build(cfg)
    s = trainer._get_train_sampler()
    lengths = [[len(trainer.train_dataset[i]["input_ids"]) for i in s.indices(e)] for e in range(3)]
    for e in (0, 1):
        assert lengths[e] == sorted(lengths[e]) and len(lengths[e]) == 200
    assert lengths[2] != sorted(lengths[2]) and sorted(lengths[2]) == sorted(lengths[0])
    assert (job["order"], job["curriculum_epochs"]) == ("length", 2)


def test_column_curriculum_orders_by_the_column_ascending(tiny_model, files):
    cfg = config(tiny_model, files["a"], data={"order": "column:difficulty", "cache": False})
    trainer, _ = build(cfg)
    texts = epoch_texts(trainer, 0)
    difficulty = [(int(t.split()[1].replace("</s>", "")) * 7) % 10 for t in texts]
    assert difficulty == sorted(difficulty) and len(difficulty) == 40


def test_a_resumed_run_draws_the_same_rows(tiny_model, files):
    """A new trainer (as a resumed engine builds) skips the batches already trained and gets the rest of the
    same epoch: set_epoch reaches the sampler through accelerate's skip wrapper."""
    cfg = config(tiny_model, files["a"], data={"train": [f"{files['a']}:3", f"{files['b']}:1"], "cache": False})

    first, _ = build(cfg)
    full = batches(first, 1)
    again, _ = build(cfg)
    assert batches(again, 1, skip=7) == full[7:]
    assert batches(again, 0) != full


@pytest.mark.parametrize("data, method, key, words", [
    ({"train": [{"path": "a.jsonl", "weight": -1}]}, "sft", "data.train", "positive"),
    ({"train": [{"file": "a.jsonl"}]}, "sft", "data.train", "path"),
    ({"order": "easy_first"}, "reward", "data.order", "easy_first"),
    ({"order": "column:"}, "sft", "data.order", "column:NAME"),
    ({"train": ["a.jsonl:3", "b.jsonl:1"], "packing": True}, "sft", "data.train", "packing"),
    ({"order": "length"}, "classification", "data.order", "group_by_length"),
])
def test_mixing_keys_are_refused_where_they_cannot_work(data, method, key, words):
    raw = {"method": method, "model": {"name_or_path": "m"}, "data": {"train": "a.jsonl", **data},
           "rl": {"reward_file": __file__}, "training": {"group_by_length": method == "classification"}}
    _, problems = cfgmod.validate(raw)
    hits = [p for p in problems if p.path == key]
    assert hits and words in str(hits[0]), problems


def test_a_general_mix_without_general_data_is_refused_before_a_run():
    raw, problems = cfgmod.validate({"model": {"name_or_path": "m"}, "data": {"train": "a.jsonl", "general_mix": 0.1}})
    assert not problems  # a preset may leave the file to the user
    assert "general data" in str(cfgmod.run_rules(raw)[0])


def test_preflight_reads_every_source_and_names_the_one_that_fails(files, tmp_path):
    from engine.data.check import streamed_reader
    from engine.data.errors import DataError

    cfg = config(files["dir"] / "m", files["a"], data={"train": [f"{files['a']}:3", f"{files['b']}:1"]})
    _, _, info = streamed_reader()(cfg)
    assert [(s["rows"], s["drawn"]) for s in info["mixture"]["sources"]] == [(40, 180), (200, 60)]
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"nothing": 1}])
    with pytest.raises(DataError, match="data.train source 2"):
        streamed_reader()(cfg.replace(data={"train": [f"{files['a']}:3", f"{bad}:1"]}))


def test_easy_first_orders_by_the_base_models_loss_and_reuses_its_scores(tiny_model, files, tmp_path, monkeypatch):
    """A real run scores every row (data events of phase score), the scores land in the cache; a second build
    reads them back, and its first epoch is ascending in losses this test computes on its own."""
    import torch
    from transformers import AutoModelForCausalLM

    from tests.methods_support import train

    monkeypatch.setenv("TUNEBENCH_CACHE_DIR", str(tmp_path / "cache"))
    cfg = config(tiny_model, files["b"], data={"order": "easy_first", "curriculum_epochs": 1, "eval_fraction": 0.1},
                 training={"max_steps": 2})
    run, ev = train(tmp_path / "runs", cfg)
    phases = [e.get("phase") for e in ev["data"]]
    assert "score" in phases and "scored" in phases, phases
    report = next(e for e in ev["data"] if "order" in e)
    assert report["order"] == "easy_first" and report["scoring"]["cached"] is False and report["scoring"]["rows"] == 200
    trainer, job = build(cfg)
    assert job["scoring"]["cached"] is True and job["scoring"]["rows"] == 200  # every prepared row, eval ones too
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    ds = trainer.train_dataset

    def loss(i):  # transformers' own causal-LM loss: the mean over the shifted trained tokens
        with torch.no_grad():
            return float(model(input_ids=torch.tensor([ds[i]["input_ids"]]), labels=torch.tensor([ds[i]["labels"]])).loss)

    sampler = trainer._get_train_sampler()
    first = [loss(i) for i in sampler.indices(0)]
    assert len(first) == 180 and all(b >= a - 1e-4 for a, b in zip(first, first[1:]))  # easy (low loss) first
    assert first[-1] - first[0] > 0.05  # the rows do differ, so the order says something
    later = [loss(i) for i in sampler.indices(1)]
    assert later != sorted(later)  # after curriculum_epochs, shuffled
