"""The estimate's parts against hand-computed values for known shapes, the verdict, the GPU table, the CLI.

No torch here: these run in well under a second (the CLI test starts one light subprocess).
"""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from engine import config as cfgmod
from engine.planning import estimate as E
from engine.planning.verdict import verdict
from engine.system import gpus

from .conftest import ROOT, tunebench

LLAMA_8B = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
            "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False}
LLAMA_1B = {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
            "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": True}


@pytest.fixture
def model_dir(tmp_path):
    def make(config: dict, name: str = "m"):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps(config))
        return d
    return make


def cfg_for(path, *overrides) -> cfgmod.Config:
    return cfgmod.load_config(overrides=[f"model.name_or_path={path}", *overrides])


def test_llama_8b_nf4_weights_are_3_6_gb_and_16bit_embeddings_2_1_gb(model_dir):
    d = model_dir(LLAMA_8B)
    shape = E.model_shape(str(d))
    # per layer: q 4096^2, k and v 4096x1024, o 4096^2, gate/up/down 3 x 4096x14336
    per_layer = 2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336
    assert shape.linear_params == 32 * per_layer == 6_979_321_856
    est = E.estimate(cfg_for(d, "model.quantization=4bit"), gpu="H100")
    assert (est["kind"], est["dtype"]) == ("qlora", "bfloat16")
    linear_bytes = shape.linear_params * E.NF4_DQ
    assert 3.55e9 < linear_bytes < 3.65e9  # "about 3.6 GB": 0.516 bytes a weight
    embed_head = (shape.embed_params + shape.head_params) * 2
    assert embed_head == 2 * 128256 * 4096 * 2 and 2.05e9 < embed_head < 2.15e9
    norms = shape.other_params * 2
    assert est["weights_bytes"] == int(linear_bytes + embed_head + norms)
    # LoRA r=16 on every linear: r * (in + out) summed, 1.31M a layer, 41.9M in all, kept in bf16 by TRL
    assert est["adapter_params"] == 32 * 16 * (2 * 8192 + 2 * 5120 + 3 * (4096 + 14336)) == 41_943_040
    assert est["adapter_bytes"] == est["gradients_bytes"] == 41_943_040 * 2
    assert est["optimizer_bytes"] == 41_943_040 * 2 * 2  # AdamW's two states in the parameter's dtype


def test_1b_full_fine_tuning_adamw_states_are_8_bytes_a_parameter(model_dir):
    d = model_dir(LLAMA_1B)
    est = E.estimate(cfg_for(d, "adapter.kind=none", "training.optimizer=adamw_torch"), gpu="A100-80GB")
    assert est["total_params"] == est["trainable_params"] == 1_235_814_400  # Llama-3.2-1B's published count
    assert est["dtype"] == "float32"
    assert est["optimizer_bytes"] == 8 * 1_235_814_400
    assert est["gradients_bytes"] == est["weights_bytes"] == 4 * 1_235_814_400
    eight = E.estimate(cfg_for(d, "adapter.kind=none", "training.optimizer=adamw_8bit"), gpu="A100-80GB")
    assert eight["optimizer_bytes"] == pytest.approx(2.03125 * 1_235_814_400, rel=1e-6)


def test_activations_follow_batch_length_and_checkpointing(model_dir):
    d = model_dir(LLAMA_8B)
    base = ["model.quantization=4bit", "data.max_length=1024", "training.batch_size=2"]
    off = E.estimate(cfg_for(d, *base, "training.gradient_checkpointing=false"), gpu="H100")
    on = E.estimate(cfg_for(d, *base, "training.gradient_checkpointing=true"), gpu="H100")
    dbl = E.estimate(cfg_for(d, *base[:2], "training.batch_size=4", "training.gradient_checkpointing=false"), gpu="H100")
    per = E.activation_bytes_per_layer_token(E.model_shape(str(d)), "qlora", 2, 2, 16, True)
    assert per == 48 * 4096 + 12 * 14336 + 4 * 1024 + 14 * 16 + 4 * 32 + 8
    assert off["activations_bytes"] > 6 * on["activations_bytes"]  # 32 layers kept vs their inputs + one layer
    assert dbl["activations_bytes"] == pytest.approx(2 * off["activations_bytes"], rel=0.01)
    assert on["executed_flops_per_token"] > on["flops_per_token"] == off["flops_per_token"]  # recompute costs


def test_step_time_is_flops_over_peak_times_efficiency(model_dir, tmp_path):
    d = model_dir(LLAMA_8B)
    store = tmp_path / "eff.json"
    cfg = cfg_for(d, "adapter.kind=none", "data.max_length=2048", "training.batch_size=1",
                  "training.gradient_checkpointing=false")
    est = E.estimate(cfg, gpu="H100", store=store)
    shape = E.model_shape(str(d))
    n = shape.linear_params + shape.vocab * shape.hidden  # matmul weights, the head included
    fpt = 6 * n + 3 * 2 * 32 * 2048 * 4096  # 6N + causal attention (forward QK^T and AV, x3 for training)
    assert est["flops_per_token"] == fpt
    assert est["efficiency"]["source"] == "prior"
    assert est["step_seconds"] == pytest.approx(2048 * fpt / (989e12 * gpus.PRIOR_MFU["full"]))
    lora = E.estimate(cfg.replace(adapter={"kind": "lora"}), gpu="H100", store=store)
    assert lora["flops_per_token"] == 4 * n + 6 * lora["adapter_params"] + 3 * 2 * 32 * 2048 * 4096
    # a measured run on this GPU replaces the prior
    gpus.add_record({"device": "H100", "kind": "full", "precision": "bf16", "flops_per_s": 5e14, "mfu": 0.5}, store)
    learned = E.estimate(cfg, gpu="H100", store=store)
    assert learned["efficiency"]["source"] == "measured"
    assert learned["step_seconds"] == pytest.approx(2048 * fpt / (989e12 * 0.5))


def test_gpu_table_matches_nvml_names():
    assert gpus.find_gpu("NVIDIA H100 80GB HBM3").key == "H100"
    assert gpus.find_gpu("NVIDIA H100 PCIe").key == "H100-PCIe"
    assert gpus.find_gpu("NVIDIA A100-SXM4-80GB").key == "A100-80GB"
    assert gpus.find_gpu("NVIDIA A100-SXM4-40GB").key == "A100-40GB"
    assert gpus.find_gpu("NVIDIA GeForce RTX 4090").key == "RTX4090"
    assert gpus.find_gpu("NVIDIA L4").key == "L4" and gpus.find_gpu("NVIDIA L40S").key == "L40S"
    assert gpus.find_gpu("NVIDIA GH200 480GB").key == "GH200" and gpus.find_gpu("NVIDIA A10G").key == "A10G"
    assert gpus.find_gpu("Tesla T4").bf16 is None and gpus.find_gpu("h200").memory == 141 * 2**30
    assert gpus.find_gpu("Radeon 7900") is None and gpus.find_gpu("H1000") is None


def test_verdict_fits_tight_and_the_one_change(model_dir):
    d = model_dir(LLAMA_8B)
    qlora = verdict(cfg_for(d, "model.quantization=4bit", "data.max_length=2048"), gpu="H100")
    assert qlora["verdict"] == "fits" and qlora["fix"] is None and qlora["free_bytes"] == 80 * 2**30
    full = cfg_for(d, "adapter.kind=none", "data.max_length=2048", "training.batch_size=4")
    v = verdict(full, gpu="H100")
    assert v["verdict"] == "does_not_fit" and v["fix"], v["message"]
    # the fix is one change, and applying it really fits
    fixed = cfgmod.load_config(base=full, overrides=[f"{k}={val}" for k, val in v["fix"]["set"].items()])
    after = verdict(fixed, gpu="H100")
    assert after["verdict"] in ("fits", "tight") and after["peak_bytes"] == v["fix"]["peak_bytes"]
    assert "--set " in v["message"] and v["fix"]["text"] in v["message"]
    # tight: between 85% and 100% of the free memory
    peak = qlora["peak_bytes"]
    tight = verdict(cfg_for(d, "model.quantization=4bit", "data.max_length=2048"), int(peak / 0.93), gpu="H100")
    assert tight["verdict"] == "tight" and 0.85 < tight["ratio"] <= 1
    nothing = verdict(cfg_for(d, "model.quantization=4bit", "data.max_length=2048"), 2 * 2**30, gpu="H100")
    assert nothing["verdict"] == "does_not_fit" and nothing["fix"] is None
    assert "no single change" in nothing["message"]


def test_gradient_checkpointing_auto_turns_on_only_when_memory_needs_it(model_dir):
    d = model_dir(LLAMA_8B)
    cfg = cfg_for(d, "data.max_length=2048", "training.batch_size=1")  # LoRA on a 16-bit 8B: ~45 GiB without
    assert E.estimate(cfg, gpu="H100")["gradient_checkpointing"] is False
    assert E.estimate(cfg, gpu="L4")["gradient_checkpointing"] is True
    assert E.estimate(cfg)["gradient_checkpointing"] is False  # a CPU never recomputes by default


def test_estimate_and_verdict_stay_light():
    code = ("import sys, engine.planning.estimate, engine.planning.verdict, tunebench.commands.estimate; "
            "heavy = [m for m in ('torch', 'transformers', 'trl', 'peft', 'datasets') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_cli_json_without_data_for_a_named_gpu(model_dir, tmp_path):
    d = model_dir(LLAMA_8B)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: {{name_or_path: {d}, quantization: 4bit}}\ntraining: {{max_steps: 100}}\n")
    r = tunebench("estimate", cfg, "--gpu", "H100", "--json", "--set", "data.max_length=2048")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for key in ("weights_bytes", "adapter_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes",
                "overhead_bytes", "peak_bytes", "step_seconds"):
        assert isinstance(out[key], (int, float)) and out[key] > 0, key
    assert out["verdict"] == "fits" and out["gpu"] == "H100" and out["steps"] == 100
    assert math.isclose(out["total_seconds"], 100 * out["step_seconds"])
    text = tunebench("estimate", cfg, "--set", "hardware.gpu=L4")
    assert text.returncode == 0 and "peak" in text.stdout and "GiB" in text.stdout
    bad = tunebench("estimate", cfg, "--gpu", "H1000")
    assert bad.returncode == 2 and "unknown GPU 'H1000'" in bad.stderr and "H100" in bad.stderr
    missing = tunebench("estimate", cfg, "--set", f"model.name_or_path={tmp_path / 'nowhere'}")
    assert missing.returncode == 2 and "no config.json" in missing.stderr


def test_check_for_the_pane_picks_the_target_and_never_raises(model_dir, tmp_path):
    from engine.planning.verdict import check

    d = model_dir(LLAMA_8B)
    named = check(cfg_for(d, "hardware.gpu=L4", "data.max_length=2048"))
    assert named["target"].startswith("L4") and named["free_bytes"] == 24 * 2**30
    assert named["verdict"] in ("fits", "tight", "does_not_fit") and named["message"].startswith(
        named["verdict"].replace("_", " "))
    picked = check(cfg_for(d, "hardware.gpu=H100"), 10 * 2**30)  # the free memory the pane knows wins
    assert picked["free_bytes"] == 10 * 2**30 and picked["verdict"] == "does_not_fit" and picked["fix"]
    assert check(cfg_for(tmp_path / "absent"))["verdict"] == "unknown"
    assert "unknown GPU" in check(cfg_for(d, "hardware.gpu=Z9"))["message"]


def test_cpu_step_time_comes_from_runs_of_the_same_model_shape(model_dir, tmp_path):
    """Another model's runs on this CPU do not set this one's speed (a tiny model is all overhead); the
    estimate says how many runs it used and how close their speeds were."""
    store = tmp_path / "eff.json"
    small, big = model_dir(LLAMA_1B, "small"), model_dir(LLAMA_8B, "big")
    small_cfg = cfg_for(small, "hardware.device=cpu", "adapter.kind=none")
    big_cfg = cfg_for(big, "hardware.device=cpu", "adapter.kind=none")
    cpu = gpus.cpu_key()
    shape = E.model_shape(str(small))
    for rate in (1.0e9, 1.2e9):  # two runs of the small model
        gpus.add_record({"device": cpu, "kind": "full", "precision": "fp32", "flops_per_s": rate,
                         "shape": E.shape_key(shape), "params": shape.total_params}, store)
    gpus.add_record({"device": cpu, "kind": "full", "precision": "fp32", "flops_per_s": 5e10,  # the big one
                     "shape": E.shape_key(E.model_shape(str(big))), "params": E.model_shape(str(big)).total_params},
                    store)
    est = E.estimate(small_cfg, store=store)
    eff = est["efficiency"]
    assert (eff["source"], eff["match"], eff["runs"]) == ("measured", "this model", 2)
    assert eff["flops_per_s"] == pytest.approx(1.1e9) and eff["spread"] == pytest.approx(0.2 / 1.1)
    assert "from 2 run(s) of this model on this device, their speeds within ±9%" in E.time_text(est)
    assert E.estimate(big_cfg, store=store)["efficiency"]["flops_per_s"] == 5e10
    # a model of about the small one's size learns from it; one 100x smaller gets no figure on a CPU
    similar = model_dir({**LLAMA_1B, "intermediate_size": 7168}, "similar")
    assert E.estimate(cfg_for(similar, "hardware.device=cpu", "adapter.kind=none"),
                      store=store)["efficiency"]["match"] == "a similar model"
    tiny = model_dir({**LLAMA_1B, "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
                      "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 384}, "tiny")
    none = E.estimate(cfg_for(tiny, "hardware.device=cpu", "adapter.kind=none"), store=store)
    assert none["step_seconds"] is None and "unknown until a run of this model" in E.time_text(none)
