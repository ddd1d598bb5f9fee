"""Layer-wise learning rates, label smoothing and NEFTune (issue 18, item 3) on the tiny Llama.

The optimizer's parameter groups are checked against the declared decay by parameter name (full fine-tuning
and LoRA, for sft and for dpo: the hook is the trainer's, shared by every method); label smoothing is checked
against the smoothed cross-entropy computed here from the logits; a real run with all three keys records the
rates in its resolved config, and its eval loss is the plain (unsmoothed) loss of its final model.
"""
from __future__ import annotations

import json

import pytest

from engine import config as cfgmod
from tests.methods_support import config, train, write_jsonl

TEXTS = [f"the quick brown fox {i} jumps over the lazy dog {i % 3}" for i in range(24)]


@pytest.fixture(scope="session")
def texts(tmp_path_factory):
    d = tmp_path_factory.mktemp("practices")
    return {"train": write_jsonl(d / "train.jsonl", [{"text": t} for t in TEXTS[:20]]),
            "eval": write_jsonl(d / "eval.jsonl", [{"text": t} for t in TEXTS[20:]]),
            "pref": write_jsonl(d / "pref.jsonl", [{"prompt": f"say {i}: ", "chosen": f"{i} {i}", "rejected": "no"}
                                                   for i in range(8)])}


def expected_scale(name: str, decay: float) -> float:
    """The declared rule for the 2-layer tiny Llama, written out by name: top layer, norm and head at the full
    rate, layer 0 one step down, the embeddings two."""
    if ".layers.1." in name:
        return 1.0
    if ".layers.0." in name:
        return decay
    if "embed_tokens" in name:
        return decay ** 2
    assert name.endswith(("model.norm.weight", "lm_head.weight")), name
    return 1.0


def built_trainer(method_module, cfg):
    from engine.training import layerwise, modeling

    resolved = modeling.resolve(cfg)
    trainer = method_module.build(cfg, resolved, {"trainer_dir": str(cfg.data.train) + ".trainer"}, [])
    layerwise.attach(trainer, cfg.training.layer_lr_decay)
    return trainer, resolved


@pytest.mark.parametrize("method,kind", [("sft", "none"), ("sft", "lora"), ("dpo", "lora")])
def test_layer_decay_sets_the_optimizer_groups_as_declared(method, kind, tiny_model, texts):
    import importlib

    decay, lr, wd = 0.5, 1e-3, 0.1
    cfg = config(tiny_model, texts["pref"] if method == "dpo" else texts["train"], method=method,
                 adapter={"kind": kind}, data={"loss_on": "all"},
                 training={"learning_rate": lr, "weight_decay": wd, "layer_lr_decay": decay})
    trainer, resolved = built_trainer(importlib.import_module(f"engine.training.methods.{method}"), cfg)
    opt = trainer.create_optimizer()
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    seen = []
    for group in opt.param_groups:
        for p in group["params"]:
            name = names[id(p)]
            seen.append(name)
            assert group["lr"] == pytest.approx(lr * expected_scale(name, decay)), name
            norm_or_bias = "norm" in name or name.endswith("bias")
            assert group["weight_decay"] == (0.0 if norm_or_bias else wd), name
    assert sorted(seen) == sorted(trainable)  # every trainable tensor once, nothing frozen
    rates = {round(g["lr"], 12) for g in opt.param_groups}
    if kind == "none":
        assert rates == {lr, lr * decay, lr * decay ** 2}
    else:  # LoRA matrices sit in layers 0 and 1: grouped by the layer they are in, no embeddings train
        assert rates == {lr, lr * decay} and any(".layers.0." in n and "lora_A" in n for n in seen)
    # the resolved record declares the same rates, by depth
    assert resolved["layer_lrs"] == pytest.approx({"head": lr, "layer_1": lr, "layer_0": lr * decay,
                                                  "embeddings": lr * decay ** 2})


def test_gradual_unfreezing_adds_each_layer_at_its_decayed_rate(tiny_model, texts, tmp_path):
    from transformers import TrainerControl, TrainerState

    from engine.rundir.events import EventWriter, read_events
    from engine.training.methods import freezing, sft

    decay, lr = 0.5, 1e-3
    cfg = config(tiny_model, texts["train"], adapter={"kind": "none"}, data={"loss_on": "all"},
                 training={"learning_rate": lr, "layer_lr_decay": decay, "unfreeze_every": 1,
                           "freeze": ["model.layers.*", "model.embed_tokens.*"]})
    trainer, _ = built_trainer(sft, cfg)
    events = EventWriter(tmp_path / "events.jsonl")
    freezing.apply(trainer, cfg, events)
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    assert {g["lr"] for g in trainer.optimizer.param_groups} == {lr}  # the head and the final norm
    unfreezer = next(c for c in trainer.callback_handler.callbacks if isinstance(c, freezing.Unfreezer))
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    for step, (layer, rate) in enumerate([(".layers.1.", lr), (".layers.0.", lr * decay),
                                          ("embed_tokens", lr * decay ** 2)], 1):
        unfreezer.on_step_end(trainer.args, TrainerState(global_step=step, max_steps=10), TrainerControl(),
                              optimizer=trainer.optimizer, lr_scheduler=trainer.lr_scheduler)
        new = trainer.optimizer.param_groups[-1]
        assert all(layer in names[id(p)] for p in new["params"]) and new["lr"] == pytest.approx(rate)
        assert trainer.lr_scheduler.base_lrs[-1] == pytest.approx(rate)  # the schedule scales it from there on
    events.close()
    assert sum("unfroze" in e.get("message", "") for e in read_events(tmp_path / "events.jsonl")) == 3


def test_layer_decay_off_leaves_transformers_groups(tiny_model, texts):
    from engine.training.methods import sft

    cfg = config(tiny_model, texts["train"], adapter={"kind": "none"}, training={"learning_rate": 1e-3})
    trainer, resolved = built_trainer(sft, cfg)
    assert trainer.optimizer_cls_and_kwargs is None and "layer_lrs" not in resolved
    assert {g["lr"] for g in trainer.create_optimizer().param_groups} == {1e-3}


def test_label_smoothing_trains_on_the_smoothed_loss_and_evaluates_the_plain_one(tiny_model, texts):
    """TRL 1.16's SFTTrainer applies transformers' label_smoothing_factor to the causal-LM loss (with an
    extra forward pass for its metrics); the eval pass gets the plain loss (engine.training.methods.extras)."""
    import torch
    import torch.nn.functional as F

    from engine.training.methods import sft
    from engine.training.methods.extras import plain_eval_loss

    eps = 0.2
    cfg = config(tiny_model, texts["train"], adapter={"kind": "none"}, data={"loss_on": "all"},
                 training={"label_smoothing": eps, "neftune_noise_alpha": 5.0})
    trainer, _ = built_trainer(sft, cfg)
    assert trainer.args.label_smoothing_factor == eps and trainer.args.neftune_noise_alpha == 5.0
    plain_eval_loss(trainer)
    batch = next(iter(trainer.get_train_dataloader()))
    model = trainer.model
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        labels = batch["labels"][:, 1:]
        mask = labels != -100
        logp = F.log_softmax(logits.float(), -1)[mask]
        nll = -logp.gather(-1, labels[mask].unsqueeze(-1)).mean()
        smoothed = (1 - eps) * nll + eps * (-logp.mean(-1)).mean()  # transformers' LabelSmoother, written out
        model.train()
        got_train = trainer.compute_loss(model, dict(batch))
        model.eval()
        got_eval = trainer.compute_loss(model, dict(batch))
    assert float(got_train) == pytest.approx(float(smoothed), rel=1e-4)
    assert float(got_eval) == pytest.approx(float(nll), rel=1e-4)
    # a random model predicts near-uniformly, so the two are close, yet 20x apart from the tolerance above
    assert abs(float(smoothed) - float(nll)) > 0.005


def test_a_run_with_all_three_records_the_rates_and_reports_plain_eval_loss(tiny_model, texts, runs_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = config(tiny_model, texts["train"], adapter={"kind": "none"},
                 data={"eval": str(texts["eval"]), "loss_on": "all", "max_length": 32},
                 training={"max_steps": 3, "batch_size": 4, "learning_rate": 1e-3, "layer_lr_decay": 0.8,
                           "label_smoothing": 0.4, "neftune_noise_alpha": 5.0})
    run, ev = train(runs_dir, cfg)
    resolved = run.status()["resolved"]
    assert resolved["layer_lrs"]["embeddings"] == pytest.approx(1e-3 * 0.8 ** 2)
    first = next(e for e in ev["state"] if e.get("resolved"))
    assert first["resolved"]["layer_lrs"] == resolved["layer_lrs"]
    assert any("layer-wise learning rates (decay 0.8)" in e["message"] for e in ev["log"])
    # the 4 eval rows are one batch: eval_loss is the mean token NLL of the final model on them
    path = run.last_checkpoint().path
    tok = AutoTokenizer.from_pretrained(path if (path / "tokenizer.json").exists() else tiny_model)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    rows = [json.loads(line)["text"] + tok.eos_token for line in texts["eval"].read_text().splitlines()]
    enc = tok(rows, return_tensors="pt", padding=True, truncation=True, max_length=32)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    with torch.no_grad():
        plain = float(model(**enc, labels=labels).loss)
    assert ev["eval"][-1]["loss"] == pytest.approx(plain, rel=1e-3)


@pytest.mark.parametrize("overrides,expected", [
    (["method=dpo", "training.label_smoothing=0.1"], "training.label_smoothing: only for method sft, seq2seq or classification"),
    (["method=kto", "training.neftune_noise_alpha=5"], "training.neftune_noise_alpha: only for method sft"),
    (["adapter.kind=prompt_tuning", "training.layer_lr_decay=0.9"], "training.layer_lr_decay: prompt_tuning"),
    (["training.layer_lr_decay=0"], "training.layer_lr_decay: 0.0 is below the minimum 0.01"),
    (["training.label_smoothing=0.7"], "training.label_smoothing: 0.7 is above the maximum 0.5"),
])
def test_practice_keys_are_refused_where_they_mean_nothing(overrides, expected, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {name_or_path: m}\ndata: {train: t.jsonl}\n")
    with pytest.raises(cfgmod.ConfigError) as e:
        cfgmod.load_config(path, overrides)
    assert any(str(p).startswith(expected) for p in e.value.problems), e.value.problems


def test_every_practice_key_says_when_it_helps():
    for k in ("layer_lr_decay", "label_smoothing", "neftune_noise_alpha"):
        assert "help" in cfgmod.SCHEMA["training"][k].help
