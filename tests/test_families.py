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


def build_tiny_gpt2(out):
    """A GPT-2-style base model (tied embeddings) whose tokenizer has no chat template, as base checkpoints ship."""
    import json

    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from engine.demo.tinymodel import build_tokenizer

    if (out / "config.json").exists():
        return out
    tok = build_tokenizer(out)
    (out / "chat_template.jinja").unlink(missing_ok=True)
    tc = json.loads((out / "tokenizer_config.json").read_text())
    tc.pop("chat_template", None)
    (out / "tokenizer_config.json").write_text(json.dumps(tc))
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=128)).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    return build_tiny_gpt2(tmp_path_factory.getbasetemp() / "families" / "gpt2")


def test_base_model_without_template_and_chat_data_is_refused_before_a_run(tmp_path, runs_dir, gpt2, chat_jsonl):
    from engine.data.chat_templates import model_template
    from engine.rundir.runs import list_runs
    from tests.conftest import tunebench, write_config

    assert model_template(gpt2) is None
    r = tunebench("train", write_config(tmp_path / "c.yaml", gpt2, chat_jsonl), runs_dir=runs_dir, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = [x for x in r.stderr.splitlines() if "data.chat_template" in x]
    assert len(lines) == 1 and "has no chat template" in lines[0] and "chatml" in lines[0]
    assert not list_runs(runs_dir) and not (runs_dir.exists() and any(runs_dir.iterdir()))


def test_a_method_the_architecture_cannot_train_is_refused_naming_what_it_can(tmp_path, runs_dir, encoders,
                                                                               chat_jsonl):
    from tests.conftest import tunebench, write_config

    r = tunebench("train", write_config(tmp_path / "c.yaml", encoders["distilbert"], chat_jsonl), runs_dir=runs_dir,
                  timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip().startswith("method")]
    assert len(lines) == 1 and "data.chat_template" not in r.stderr
    line = lines[0]
    assert "distilbert model, which method sft cannot train; it can train: classification, reward" in line
    assert not (runs_dir.exists() and any(runs_dir.iterdir()))


def test_base_model_trains_with_chatml_and_its_checkpoint_carries_it(runs_dir, gpt2, chat_jsonl):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.data.chat_templates import NAMED

    cfg = config(gpt2, chat_jsonl, data={"chat_template": "chatml", "max_length": 64}, adapter={"kind": "lora", "r": 4})
    run, ev = train(runs_dir, cfg)
    done = ev["data"][-1]["chat_template"]
    assert done["added_tokens"] == ["<|im_start|>", "<|im_end|>"] and done["resized_embeddings"]["to"] == done["vocab_size"]
    assert any("data.chat_template chatml: added <|im_start|>, <|im_end|>" in e["message"] for e in ev["log"])
    ckpt = run.last_checkpoint().path
    tok = AutoTokenizer.from_pretrained(ckpt)
    assert tok.chat_template == NAMED["chatml"][0] and "<|im_end|>" in tok.get_vocab()
    base = AutoModelForCausalLM.from_pretrained(gpt2)
    base.resize_token_embeddings(len(tok))  # the documented PEFT reload after a vocabulary resize
    model = PeftModel.from_pretrained(base, ckpt)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    fresh = AutoModelForCausalLM.from_pretrained(gpt2)
    fresh.resize_token_embeddings(len(tok))
    # the new rows trained and came back with the adapter
    assert not torch.equal(model.get_input_embeddings().weight[im_end], fresh.get_input_embeddings().weight[im_end])
    ids = tok.apply_chat_template([{"role": "user", "content": "say apple"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    assert model(input_ids=ids).logits.shape[-1] == len(tok)
    # compare, chat, eval and export apply the template the run trained with, not the base's (it has none)
    from engine.checkpoints.generate import load_tokenizer
    from engine.checkpoints.refs import resolve_ref

    used = load_tokenizer(resolve_ref(str(ckpt), runs_dir))
    assert used.chat_template == NAMED["chatml"][0] and len(used) == len(tok)
    from engine.checkpoints.generate import load_pair

    side, _ = load_pair(resolve_ref(str(ckpt), runs_dir), resolve_ref(str(gpt2), runs_dir))  # grown, as trained
    assert torch.equal(side.model.get_input_embeddings().weight[im_end], model.get_input_embeddings().weight[im_end])
