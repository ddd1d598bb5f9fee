"""The decoder families people fine-tune (issue 16), as tiny random-weight builds from transformers' config classes:
each trains SFT with LoRA through the real engine under its own chat template, and its checkpoint reloaded with
plain transformers + PEFT, and through compare's loader, gives the eval loss the engine measured at its last step
(the same logits); Mistral in full, Llama in 4-bit (QLoRA) and DPO on Qwen3 beside; Phi-3 naming its shipped code
launches without trust_remote_code, a type only shipped code defines is refused before a run. The encoders and
GPT-2 are in test_families.py."""
from __future__ import annotations

import json

import pytest

from tests.methods_support import WORDS, config, train, write_jsonl

# model_type: (the data.chat_template tunebench names for the family, config values beyond the shared shape)
FAMILIES = {
    "llama": ("llama3", {}),
    "mistral": ("mistral", {"sliding_window": None}),
    "qwen3": ("qwen2.5", {}),  # Qwen3 chats in ChatML with Qwen's default system turn, as qwen2.5 renders it
    # one sliding-window layer narrower than the rows and one global layer, as Gemma 3 interleaves them
    "gemma3_text": ("gemma", {"query_pre_attn_scalar": 16, "sliding_window": 8,
                              "layer_types": ["sliding_attention", "full_attention"]}),
    # Gemma 3 4B and up ship as the image-text model (Gemma3ForConditionalGeneration), trained here on text
    "gemma3": ("gemma", {"query_pre_attn_scalar": 16}),
    "phi3": ("phi3", {}),
    "olmo2": ("chatml", {}),  # tunebench names no OLMo template
}
# the code a published checkpoint's config.json names beside a type transformers knows (Phi-3-mini's); the files
# are not written here, so a load that tried them would fail
SHIPPED_CODE = {"phi3": {"AutoConfig": "configuration_phi3.Phi3Config",
                         "AutoModelForCausalLM": "modeling_phi3.Phi3ForCausalLM"}}
EVAL_ROWS = 4  # one eval batch (training.batch_size 4): the engine's eval loss is one token-mean, reproducible
MAX_LENGTH = 128  # no row is cut (qwen2.5's default system turn is 106 tokens with this tokenizer)


def build_tiny_decoder(out, model_type: str, **extra):
    """A 2-layer causal LM of `model_type` (hidden 32, 2 query heads sharing 1 key/value head) with the byte-level
    BPE tokenizer engine.demo.tinymodel trains, both written with save_pretrained."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from engine.demo.tinymodel import build_tokenizer

    tok = build_tokenizer(out)
    shape = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=256,
                 bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    if model_type == "gemma3":  # a one-layer SigLIP tower beside the text model; its image token ids stay the
        # defaults, beyond this vocabulary, so no text token is taken for an image
        text = AutoConfig.for_model("gemma3_text", **shape, **extra).to_dict()
        cfg = AutoConfig.for_model("gemma3", text_config=text,
                                   vision_config=dict(model_type="siglip_vision_model", hidden_size=32,
                                                      intermediate_size=64, num_hidden_layers=1,
                                                      num_attention_heads=2, image_size=28, patch_size=14),
                                   mm_tokens_per_image=4)
    else:
        cfg = AutoConfig.for_model(model_type, **shape, **extra)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).save_pretrained(out)
    if model_type in SHIPPED_CODE:
        saved = json.loads((out / "config.json").read_text())
        (out / "config.json").write_text(json.dumps({**saved, "auto_map": SHIPPED_CODE[model_type]}))
    return out


@pytest.fixture(scope="module")
def matrix(tmp_path_factory, chat_jsonl):
    """Every family's model, the chat data, a held-out eval file and conversational preference pairs."""
    from engine.demo.tinymodel import build_tiny_llama

    base = tmp_path_factory.mktemp("family-matrix")
    rows = [json.loads(line) for line in chat_jsonl.read_text().splitlines()]
    # Llama for QLoRA: every linear layer's width a multiple of 32 and its input a multiple of 64, as in published
    # models; bitsandbytes' CPU 4-bit kernel fails on others at a plain reload (the engine steers round it:
    # engine.training.modeling.cpu_4bit_safe), and the session's tiny Llama has 84 MLP units
    out = {"llama": build_tiny_llama(base / "llama", hidden=64, heads=4, kv_heads=2, intermediate=128,
                                     max_positions=256),
           "train": chat_jsonl, "eval": write_jsonl(base / "eval.jsonl", rows[:EVAL_ROWS]),
           # conversations, so the family's template renders the preference pairs
           "pref": write_jsonl(base / "pref.jsonl", [
               {"prompt": [{"role": "user", "content": f"say {w}"}],
                "chosen": [{"role": "assistant", "content": f"{w} {w}"}],
                "rejected": [{"role": "assistant", "content": "no"}]} for w in WORDS * 2])}
    for family, (_, extra) in FAMILIES.items():
        if family not in out:
            out[family] = build_tiny_decoder(base / family, family, **extra)
    return out


def sft_config(matrix, family: str, **sections):
    return config(matrix[family], matrix["train"], data={"eval": str(matrix["eval"]), "max_length": MAX_LENGTH,
                                                         "chat_template": FAMILIES[family][0]},
                  training={"max_steps": 2, "batch_size": 4, "learning_rate": 1e-2}, **sections)


def reload_loss(model, tok, eval_file) -> float:
    """The token-mean loss of `model` over the eval rows' trained tokens (engine.data.encode's mask), batched as
    the trainer's one eval batch: right-padded, padding ignored."""
    import torch

    from engine.data.encode import IGNORE, SFTEncoder

    enc = [SFTEncoder(tok).encode(json.loads(line)) for line in eval_file.read_text().splitlines()]
    n = max(len(e["input_ids"]) for e in enc)
    assert n <= MAX_LENGTH  # the engine trained and evaluated these rows whole
    ids = torch.tensor([e["input_ids"] + [tok.pad_token_id] * (n - len(e["input_ids"])) for e in enc])
    labels = torch.tensor([e["labels"] + [IGNORE] * (n - len(e["labels"])) for e in enc])
    mask = torch.tensor([[1] * len(e["input_ids"]) + [0] * (n - len(e["input_ids"])) for e in enc])
    model.eval()
    with torch.no_grad():
        return float(model(input_ids=ids, attention_mask=mask, labels=labels).loss)


def generates(model, tok) -> None:
    import torch

    ids = tok.apply_chat_template([{"role": "user", "content": "say apple"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]


def peft_reload(base_dir, ckpt, **load):
    """The documented reload of a LoRA checkpoint: the base, grown to the checkpoint tokenizer's vocabulary when
    the template added tokens, then PeftModel.from_pretrained."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ckpt)
    base = AutoModelForCausalLM.from_pretrained(base_dir, **load)
    if len(tok) > base.get_input_embeddings().weight.shape[0]:
        base.resize_token_embeddings(len(tok))
    return PeftModel.from_pretrained(base, ckpt), tok


@pytest.mark.parametrize("family", list(FAMILIES))
def test_sft_lora_trains_and_plain_peft_reload_gives_the_engines_eval_loss(matrix, runs_dir, family):
    from transformers import AutoConfig

    from engine.data.chat_templates import NAMED

    run, ev = train(runs_dir, sft_config(matrix, family, adapter={"kind": "lora", "r": 4}))
    assert [m["step"] for m in ev["metrics"]] == [1, 2]
    (ev_last,) = ev["eval"]
    ckpt = run.last_checkpoint().path
    assert json.loads((ckpt / "adapter_config.json").read_text())["base_model_name_or_path"] == str(matrix[family])
    model, tok = peft_reload(matrix[family], ckpt)
    assert model.config.model_type == AutoConfig.from_pretrained(matrix[family]).model_type == family
    assert tok.chat_template == NAMED[FAMILIES[family][0]][0]  # the checkpoint chats as it trained
    assert reload_loss(model, tok, matrix["eval"]) == pytest.approx(ev_last["loss"], rel=1e-4)
    with model.disable_adapter():  # ... and that is the adapter's doing: the base alone scores otherwise
        assert reload_loss(model, tok, matrix["eval"]) != pytest.approx(ev_last["loss"], rel=1e-3)
    generates(model, tok)
    # compare (the A/B view, chat and eval) loads it beside its base and scores it as training did
    from engine.checkpoints import generate
    from engine.checkpoints.refs import resolve_ref

    side, _ = generate.load_pair(resolve_ref(str(ckpt), runs_dir), resolve_ref(str(matrix[family]), runs_dir))
    rows = [json.loads(line) for line in matrix["eval"].read_text().splitlines()]
    assert generate.eval_loss(side, rows)["eval_loss"] == pytest.approx(ev_last["loss"], rel=1e-4)


def test_mistral_full_fine_tuning_reloads_with_auto_model(matrix, runs_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run, ev = train(runs_dir, sft_config(matrix, "mistral", adapter={"kind": "none"}))
    ckpt = run.last_checkpoint().path
    assert not (ckpt / "adapter_config.json").exists()
    model, tok = AutoModelForCausalLM.from_pretrained(ckpt), AutoTokenizer.from_pretrained(ckpt)
    base = AutoModelForCausalLM.from_pretrained(matrix["mistral"])
    assert model.config.model_type == "mistral" and not torch.equal(
        model.model.layers[0].mlp.down_proj.weight, base.model.layers[0].mlp.down_proj.weight)  # every weight trained
    assert reload_loss(model, tok, matrix["eval"]) == pytest.approx(ev["eval"][-1]["loss"], rel=1e-4)
    generates(model, tok)


def test_llama_qlora_4bit_reloads_on_its_4bit_base(matrix, runs_dir):
    pytest.importorskip("bitsandbytes", reason="QLoRA needs bitsandbytes")
    import torch
    from transformers import BitsAndBytesConfig

    cfg = sft_config(matrix, "llama", adapter={"kind": "lora", "r": 4}).replace(model={"quantization": "4bit"})
    run, ev = train(runs_dir, cfg)
    assert run.last_checkpoint().meta["quantization"] == "4bit"
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                           bnb_4bit_compute_dtype=torch.float32, bnb_4bit_quant_storage=torch.float32)
    model, tok = peft_reload(matrix["llama"], run.last_checkpoint().path, quantization_config=q)
    assert any(type(m).__name__ == "Linear4bit" for m in model.modules())
    # the same bitsandbytes kernels as the engine's own evaluation (every width here suits its CPU 4-bit kernel, so
    # the engine switched no layer to the portable path): the loss agrees as closely as in float32
    assert reload_loss(model, tok, matrix["eval"]) == pytest.approx(ev["eval"][-1]["loss"], rel=1e-4)
    generates(model, tok)


def test_dpo_on_qwen3_trains_and_reloads(matrix, runs_dir):
    cfg = config(matrix["qwen3"], matrix["pref"], method="dpo", adapter={"kind": "lora", "r": 4},
                 data={"chat_template": "qwen2.5", "max_length": MAX_LENGTH},
                 training={"max_steps": 2, "batch_size": 4})
    run, ev = train(runs_dir, cfg)
    assert {"rewards/chosen", "rewards/margins"} <= set(ev["metrics"][-1])
    model, tok = peft_reload(matrix["qwen3"], run.last_checkpoint().path)
    assert model.config.model_type == "qwen3"
    generates(model, tok)


def test_phi3_with_its_shipped_code_named_launches_without_trust_remote_code(matrix):
    """transformers loads phi3 with its own classes (the sft run above did, trust_remote_code off), so the
    preflight does not demand model.trust_remote_code for it: Phi-3-mini launches as it is."""
    from engine.data.prepare import prepare
    from engine.planning.preflight import preflight

    assert json.loads((matrix["phi3"] / "config.json").read_text())["auto_map"] == SHIPPED_CODE["phi3"]
    cfg = sft_config(matrix, "phi3")
    assert not cfg.model.trust_remote_code
    pf = preflight(cfg, prepare)
    assert pf.ok, pf.messages
    from tui.launching import check_model  # the workbench's model line says which code runs

    assert check_model(str(matrix["phi3"]), False) == (True, f"{matrix['phi3']}: Phi3ForCausalLM; transformers' own "
                                                             "phi3 classes (its shipped code is not run)")


def test_a_family_transformers_lacks_is_refused_before_a_run_until_its_code_is_trusted(matrix, tmp_path, runs_dir):
    """The other side: a checkpoint whose model_type only its shipped code defines exits 2 with one line naming
    model.trust_remote_code, and no run directory."""
    from tests.conftest import tunebench, write_config

    model = tmp_path / "acme"
    model.mkdir()
    saved = json.loads((matrix["phi3"] / "config.json").read_text())
    shipped = {"AutoModelForCausalLM": "modeling_acme.AcmeForCausalLM"}
    (model / "config.json").write_text(json.dumps({**saved, "model_type": "acme_lm", "auto_map": shipped,
                                                   "architectures": ["AcmeForCausalLM"]}))
    r = tunebench("train", write_config(tmp_path / "c.yaml", model, matrix["train"]), runs_dir=runs_dir, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = [x for x in r.stderr.splitlines() if "trust_remote_code" in x]
    assert len(lines) == 1 and "acme ships its own Python code" in lines[0], r.stderr
    assert not (runs_dir.exists() and any(runs_dir.iterdir()))
