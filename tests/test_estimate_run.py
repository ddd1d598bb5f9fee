"""The estimate against real measurements: activation bytes autograd saves, and a run's predicted vs measured peak.

Uses torch: the activation check builds small Llama layers in-process (a second or two); the run test trains
the session's tiny model for a few steps through the real CLI and reads what the run recorded.
"""
from __future__ import annotations

import json

import pytest

from engine import config as cfgmod
from engine.planning import estimate as E
from engine.rundir.events import read_events
from engine.rundir.runs import list_runs

from .conftest import tunebench, write_config


def saved_bytes(H, I, heads, kv_heads, layers, mode, batch, seq=32, vocab=128, attn="sdpa") -> int:
    """Bytes of the tensors autograd saves in one forward of the decoder stack (parameters excluded)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig

    cfg = LlamaConfig(vocab_size=vocab, hidden_size=H, intermediate_size=I, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv_heads, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16 if mode == "lora_bf16" else torch.float32,
                                             attn_implementation=attn)
    if mode.startswith("lora"):
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear"))
    model.train()
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()  # a storage saved twice counts once
        return t

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode in ("full_amp", "lora_bf16")):
            base.model(input_ids=torch.randint(0, vocab, (batch, seq)))
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(n for ptr, n in seen.items() if ptr not in params)


@pytest.mark.parametrize("mode,kind,act,wb", [("full_fp32", "full", 4, 4), ("full_amp", "full", 2, 4),
                                              ("lora_fp32", "lora", 4, 4), ("lora_bf16", "lora", 2, 2)])
def test_activation_coefficients_match_what_autograd_saves(mode, kind, act, wb):
    # A shape the coefficients were not measured on; the difference of 3 and 2 layers, and of 4 and 2 rows,
    # isolates one layer's bytes per token from the embedding and from per-forward constants.
    H, I, heads, kv = 192, 384, 6, 2
    d = lambda L, B: saved_bytes(H, I, heads, kv, L, mode, B)  # noqa: E731
    measured = ((d(3, 4) - d(2, 4)) - (d(3, 2) - d(2, 2))) / (2 * 32)
    shape = E.Shape("llama", 128, H, 3, heads, kv, H // heads, I, tied=False)
    predicted = E.activation_bytes_per_layer_token(shape, kind, act, wb, 8, True)
    assert predicted == pytest.approx(measured, rel=0.03), (mode, predicted, measured)


def test_run_records_predicted_and_measured_peak_and_teaches_the_step_time(tiny_model, chat_jsonl, runs_dir,
                                                                           tmp_path):
    cache = tmp_path / "cache"
    env = {"TUNEBENCH_CACHE_DIR": str(cache)}
    cfg = write_config(tmp_path / "c.yaml", tiny_model, chat_jsonl, training={"max_steps": 6, "batch_size": 4})
    before = tunebench("estimate", cfg, "--json", env=env)
    assert before.returncode == 0, before.stderr
    assert json.loads(before.stdout)["step_seconds"] is None  # a CPU with no measured run: no guess

    r = tunebench("train", cfg, runs_dir=runs_dir, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    run = list_runs(runs_dir)[0]
    status = run.status()
    assert status["state"] == "completed"
    expected = E.estimate(cfgmod.load_config(cfg), resolved=status["resolved"])
    assert status["predicted_peak_bytes"] == expected["peak_bytes"] > 0
    assert set(status["predicted_parts"]) >= {"weights_bytes", "activations_bytes", "overhead_bytes"}
    summary = status["summary"]
    assert summary["predicted_peak_bytes"] == status["predicted_peak_bytes"]
    # on a CPU the prediction is the process's peak RSS: the ML stack itself plus the training memory
    ratio = summary["predicted_peak_bytes"] / summary["peak_rss_bytes"]
    assert 0.7 < ratio < 1.4, ratio
    starting = [e for e in read_events(run.events_path, {"state"}) if e.get("resolved")]
    assert starting and starting[0]["predicted_peak_bytes"] == status["predicted_peak_bytes"]
    assert [e for e in read_events(run.events_path, {"summary"})][0]["predicted_peak_bytes"] > 0

    records = json.loads((cache / "efficiency.json").read_text())["records"]
    assert len(records) == 1 and records[0]["device"].startswith("cpu:") and records[0]["flops_per_s"] > 0
    after = json.loads(tunebench("estimate", cfg, "--json", env=env).stdout)
    assert after["efficiency"]["source"] == "measured" and after["step_seconds"] > 0
    assert after["efficiency"]["match"] == "this model" and after["efficiency"]["runs"] == 1
    assert records[0]["shape"] == E.shape_key(E.model_shape(str(tiny_model)))
    measured_step = summary["train_wall_s"] / summary["step"]
    # the same config on the same machine: the learned rate predicts the measured step time
    assert after["step_seconds"] == pytest.approx(measured_step, rel=0.5)


def test_fast_defaults_are_recorded_and_overridable_on_a_cpu(tiny_model):
    from engine.training.modeling import resolve

    base = [f"model.name_or_path={tiny_model}", "hardware.device=cpu"]
    r = resolve(cfgmod.load_config(overrides=base))
    # nothing that changes the math kicks in on a CPU: fp32, SDPA, no recompute, no Liger, padded batches
    assert (r["precision"], r["attn_implementation"], r["gradient_checkpointing"], r["liger_kernel"],
            r["padding_free"]) == ("fp32", "sdpa", False, False, False)
    assert resolve(cfgmod.load_config(overrides=[*base, "data.packing=true"]))["padding_free"] is True  # TRL's bfd
    assert resolve(cfgmod.load_config(overrides=[*base, "training.gradient_checkpointing=true"]))[
        "gradient_checkpointing"] is True
    with pytest.raises(RuntimeError, match="training.liger_kernel: true needs a CUDA GPU"):
        resolve(cfgmod.load_config(overrides=[*base, "training.liger_kernel=true"]))


def test_eager_attention_keeps_the_probabilities_the_estimate_counts():
    import copy

    d = lambda L, attn: saved_bytes(64, 128, 4, 2, L, "lora_bf16", 2, seq=96, attn=attn)  # noqa: E731
    measured = (d(3, "eager") - d(2, "eager")) - (d(3, "sdpa") - d(2, "sdpa"))  # one layer's extra
    cfg = cfgmod.load_config(overrides=["model.name_or_path=x", "training.batch_size=2", "data.max_length=96"])
    shape = E.Shape("llama", 128, 64, 1, 4, 2, 16, 128, tied=False)
    resolved = {"device": "cuda", "precision": "bf16", "dtype": "bfloat16", "gradient_checkpointing": False,
                "optimizer": "adamw_torch_fused", "attn_implementation": "sdpa"}
    sdpa = E.estimate(cfg, shape=shape, resolved=resolved)["activations_bytes"]
    eager = E.estimate(copy.deepcopy(cfg), shape=shape,
                       resolved={**resolved, "attn_implementation": "eager"})["activations_bytes"]
    assert eager - sdpa == pytest.approx(measured, rel=0.05)
