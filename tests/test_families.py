"""The model families people fine-tune, as tiny random-weight builds: each trains the methods it supports for a
few steps, and its checkpoint reloads with plain transformers/PEFT."""
from __future__ import annotations

import pytest

from tests.methods_support import build_assets, config, train
from tests.tinybert import build_tiny_encoder

ENCODERS = ("bert", "distilbert", "roberta", "deberta-v2")
HEADS = {"bert": ["classifier"], "distilbert": ["pre_classifier", "classifier"], "roberta": ["classifier"],
         "deberta-v2": ["pooler", "classifier"]}


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    base = tmp_path_factory.getbasetemp() / "families"
    return {"data": build_assets(base / "assets")["cls"],
            **{f: build_tiny_encoder(base / f, f) for f in ENCODERS}}


@pytest.mark.parametrize("family", ENCODERS)
def test_head_is_read_from_the_model_class(encoders, family):
    from transformers import AutoModelForSequenceClassification

    from engine.training.modeling import head_modules

    assert head_modules(AutoModelForSequenceClassification.from_pretrained(encoders[family])) == HEADS[family]


@pytest.mark.parametrize("family", ENCODERS)
@pytest.mark.parametrize("adapter", ["lora", "none"])
def test_encoder_classification_trains_and_reloads(encoders, runs_dir, family, adapter):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    cfg = config(encoders[family], encoders["data"], method="classification", adapter={"kind": adapter, "r": 4},
                 training={"max_steps": 2, "batch_size": 4, "learning_rate": 1e-2})
    run, _ = train(runs_dir, cfg)
    ckpt = run.last_checkpoint().path
    base = AutoModelForSequenceClassification.from_pretrained(encoders[family])
    if adapter == "lora":
        from peft import PeftModel

        saved = load_file(ckpt / "adapter_model.safetensors")
        for head in HEADS[family]:  # the head trains in full and travels with the adapter
            assert any(k.startswith(f"base_model.model.{head}.") for k in saved), (head, sorted(saved)[:6])
        assert not any("lora_" in k and k.split(".")[2] in HEADS[family] for k in saved)
        model = PeftModel.from_pretrained(base, ckpt)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(ckpt)
    fresh = dict(AutoModelForSequenceClassification.from_pretrained(encoders[family]).named_parameters())
    head = HEADS[family][-1]
    trained = {n: p for n, p in model.named_parameters() if f"{head}." in n and n.endswith("weight")
               and "original_module" not in n}
    assert trained and any(not torch.equal(p, fresh[n.split("base_model.model.")[-1].replace(
        "modules_to_save.default.", "")]) for n, p in trained.items())  # the reloaded head is the trained one
    ids = torch.tensor([[2, 10, 11, 3]])
    assert model(input_ids=ids).logits.shape == (1, 2)
