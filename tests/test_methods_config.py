"""Config rules of the methods (PPO pointer, adapters per method, RL rewards), every preset, and adapter kinds."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.config import ConfigError, load_config
from tests.methods_support import build_assets, config, train

ROOT = Path(__file__).resolve().parent.parent


def problems(*overrides: str) -> list[str]:
    """Each problem as the CLI prints it (structured Problems rendered one line each)."""
    try:
        load_config(None, ["model.name_or_path=m", "data.train=d", *overrides])
    except ConfigError as e:
        return [str(p) for p in e.problems]
    return []


def test_ppo_points_to_grpo_and_rloo():
    (p,) = problems("method=ppo")
    assert "no PPOTrainer" in p and "grpo" in p and "rloo" in p


@pytest.mark.parametrize("overrides, expected", [
    (["method=grpo"], "rl.reward_model / rl.reward_file: method grpo needs a reward"),
    (["method=rloo", "rl.reward_file=/nonexistent.py"], "rl.reward_file: /nonexistent.py is not a file"),
    (["method=dpo", "adapter.kind=prefix_tuning"], "adapter.kind: prefix_tuning is not available for method dpo"),
    (["adapter.kind=ia3", "adapter.use_rslora=true"], "adapter.use_rslora: only for adapter.kind lora or dora"),
    (["adapter.kind=ia3", "model.quantization=4bit"], "model.quantization: quantized weights train through lora"),
    (["training.freeze=[a]"], "training.freeze: freezing layers is for full fine-tuning"),
    (["adapter.kind=none", "training.unfreeze_every=5"], "training.unfreeze_every: needs training.freeze"),
    (["method=classification", "data.general_eval=g.jsonl"], "data.general_eval: the forgetting watch needs a language model"),
    (["method=kto", "preference.loss_type=[kto, apo_zero_unpaired]"], "preference.loss_type: KTO takes one loss type"),
    (["hardware.num_processes=2", "hardware.accelerate_config=nope.yaml"], "hardware.accelerate_config: nope.yaml is not a file"),
    (["method=dpo", "preference.loss_type=sigmod"], "preference.loss_type: 'sigmod' is not a dpo loss"),
    (["method=kto", "preference.loss_type=ipo"], "preference.loss_type: 'ipo' is not a kto loss; one of kto, apo_zero_unpaired"),
])
def test_cross_field_rules_name_the_field(overrides, expected):
    assert any(p.startswith(expected) for p in problems(*overrides)), problems(*overrides)


def test_grpo_num_generations_must_divide_the_batch(tmp_path):
    f = tmp_path / "r.py"
    f.write_text("def reward(completions, **kw):\n    return [0.0] * len(completions)\n")
    got = problems("method=grpo", f"rl.reward_file={f}", "rl.num_generations=3", "training.batch_size=4")
    assert got == ["rl.num_generations: 3 must divide training.batch_size x grad_accum (4 x 1); "
                   "each prompt's completions share a batch"]
    assert problems("method=grpo", f"rl.reward_file={f}", "rl.num_generations=4", "training.batch_size=4") == []


@pytest.mark.parametrize("preset", sorted(p.name for p in (ROOT / "presets").glob("*.yaml")))
def test_every_preset_validates(preset, monkeypatch):
    monkeypatch.chdir(ROOT)  # presets name files (reward functions, accelerate config) relative to the project
    cfg = load_config(ROOT / "presets" / preset, ["data.train=d.jsonl"])
    assert cfg.model.name_or_path
    text = (ROOT / "presets" / preset).read_text()
    bare = [line for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#") and ":" in line
            and not line.rstrip().endswith(":") and "#" not in line]
    assert not bare, f"{preset}: every key says why in a comment; uncommented: {bare}"


def test_reward_file_errors_name_the_file_and_function(tmp_path):
    from engine.training.methods.rewards import load_reward_functions

    f = tmp_path / "r.py"
    f.write_text("def score(completions, **kw):\n    return ['x'] * len(completions)\n")
    with pytest.raises(ValueError, match=r"defines no function 'reward' \(it defines: score\)"):
        load_reward_functions(str(f), ["reward"])
    (fn,) = load_reward_functions(str(f), ["score"])
    with pytest.raises(ValueError, match=r"r\.py: score must return a list of numbers"):
        fn(prompts=["p"], completions=["c"])


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return build_assets(tmp_path_factory.getbasetemp() / "methods")


@pytest.mark.parametrize("kind, extra, peft_type", [
    ("dora", {}, "LORA"), ("lora", {"use_rslora": True}, "LORA"), ("ia3", {}, "IA3"),
    ("prompt_tuning", {"num_virtual_tokens": 4}, "PROMPT_TUNING"), ("prefix_tuning", {"num_virtual_tokens": 4}, "PREFIX_TUNING"),
])
def test_adapter_kinds_train_and_save(kind, extra, peft_type, tiny_model, chat_jsonl, runs_dir):
    cfg = config(tiny_model, chat_jsonl, adapter={"kind": kind, **extra}, training={"max_steps": 2})
    run, ev = train(runs_dir, cfg)
    saved = json.loads((run.last_checkpoint().path / "adapter_config.json").read_text())
    assert saved["peft_type"] == peft_type
    assert saved.get("use_dora", False) == (kind == "dora") and saved.get("use_rslora", False) == bool(extra.get("use_rslora"))
    s = ev["summary"][0]
    assert 0 < s["trainable_params"] < s["total_params"] and 0 < s["trainable_share"] < 0.25
    assert ev["metrics"][-1]["grad_norm"] > 0


def test_classification_with_lora_keeps_the_head_trainable(assets, runs_dir):
    cfg = config(assets["bert"], assets["cls"], method="classification",
                 adapter={"kind": "lora", "r": 4, "target_modules": ["query", "value"]}, training={"max_steps": 2})
    run, ev = train(runs_dir, cfg)
    files = {p.name for p in run.last_checkpoint().path.iterdir()}
    assert "adapter_config.json" in files
    from safetensors import safe_open

    with safe_open(str(run.last_checkpoint().path / "adapter_model.safetensors"), "pt") as f:
        assert any("classifier" in k for k in f.keys())  # the new head is saved with the adapter
