"""Each method beyond SFT trains a few steps on a tiny model (in this process) and writes its own metrics."""
from __future__ import annotations

import json

import pytest

from tests.methods_support import build_assets, config, train


@pytest.fixture(scope="session")
def assets(tmp_path_factory, tiny_model):
    return {**build_assets(tmp_path_factory.getbasetemp() / "methods"), "llama": tiny_model}


def keys(events, kind):
    return set().union(*(e.keys() for e in events.get(kind, [{}])))


def test_dpo_lora_writes_preference_metrics(assets, runs_dir):
    cfg = config(assets["llama"], assets["pref"], method="dpo", data={"eval_fraction": 0.25},
                 preference={"beta": 0.2, "loss_type": ["sigmoid", "sft"]})
    run, ev = train(runs_dir, cfg)
    for k in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen"):
        assert k in keys(ev, "metrics") and k in keys(ev, "eval"), k
    assert ev["summary"][0]["trainable_share"] < 0.5  # LoRA: the reference model is the adapter switched off
    assert (run.last_checkpoint().path / "adapter_config.json").exists()


def test_kto_writes_kl_and_rewards(assets, runs_dir):
    run, ev = train(runs_dir, config(assets["llama"], assets["kto"], method="kto"))
    assert {"kl", "rewards/chosen", "rewards/rejected"} <= keys(ev, "metrics")


@pytest.fixture(scope="session")
def reward_checkpoint(assets, tmp_path_factory):
    """A reward model on the tiny BERT (full fine-tuning), its last checkpoint: the RLHF pipeline's middle step."""
    cfg = config(assets["bert"], assets["pref"], method="reward", adapter={"kind": "none"},
                 data={"eval_fraction": 0.25}, training={"max_steps": 8, "learning_rate": 3e-3})
    run, ev = train(tmp_path_factory.mktemp("rewardruns"), cfg)
    return run, ev


def test_reward_model_reports_pairwise_accuracy_and_margin(reward_checkpoint):
    run, ev = reward_checkpoint
    assert {"accuracy", "margin", "mean_reward"} <= keys(ev, "eval")
    assert ev["eval"][-1]["accuracy"] >= 0.9 and ev["eval"][-1]["margin"] > 0  # chosen "w w" vs rejected "no"
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(run.last_checkpoint().path)
    assert model.config.num_labels == 1


def test_grpo_with_reward_function_writes_rewards_and_samples(assets, runs_dir):
    cfg = config(assets["llama"], assets["prompts"], method="grpo",
                 rl={"reward_file": str(assets["rewards"]), "reward_functions": ["reward", "length"],
                     "num_generations": 4, "max_completion_length": 8, "samples_per_log": 2},
                 training={"max_steps": 2})
    run, ev = train(runs_dir, cfg)
    m = keys(ev, "metrics")
    assert {"reward", "reward_std", "rewards/reward/mean", "rewards/length/mean", "completions/mean_length"} <= m
    samples = ev["sample"]
    assert len(samples) == 4 and {s["step"] for s in samples} == {1, 2}
    s = samples[0]
    assert s["prompt"].startswith("say ") and set(s["rewards"]) == {"reward", "length"}
    word = s["prompt"].split()[1].rstrip(":")
    expected = s["completion"].count(word) + 1 / (1 + len(s["completion"]))  # the file's reward, recomputed
    assert s["rewards"]["reward"] == pytest.approx(expected, abs=1e-3)


def test_rlhf_rloo_against_the_trained_reward_model(assets, runs_dir, reward_checkpoint):
    reward_run, _ = reward_checkpoint
    cfg = config(assets["llama"], assets["prompts"], method="rloo",
                 rl={"reward_model": str(reward_run.last_checkpoint().path), "num_generations": 2,
                     "max_completion_length": 6, "beta": 0.0}, training={"max_steps": 2})
    run, ev = train(runs_dir, cfg)
    assert "reward" in keys(ev, "metrics") and ev["sample"]
    assert all(isinstance(s["reward"], float) for s in ev["sample"])


def test_classification_learns_and_reports_f1_and_confusion(assets, runs_dir):
    cfg = config(assets["bert"], assets["cls"], method="classification", adapter={"kind": "none"},
                 data={"eval_fraction": 0.25}, training={"max_steps": 24, "batch_size": 8, "learning_rate": 1e-2})
    run, ev = train(runs_dir, cfg)
    before, after = ev["eval"][0], ev["eval"][-1]
    assert before["step"] == 0 and {"accuracy", "precision", "recall", "f1_macro"} <= set(after)
    assert after["accuracy"] > before["accuracy"] and after["accuracy"] >= 0.9
    conf = ev["confusion"][-1]
    assert conf["labels"] == ["negative", "positive"] and sum(map(sum, conf["matrix"])) == 20
    summary = ev["summary"][0]
    assert summary["confusion_matrix"] == conf["matrix"] and summary["f1_macro"] == pytest.approx(after["f1_macro"], abs=1e-4)
    # tokens trained and their rate, as for the other methods (non-padding tokens of 24 steps of 8 rows)
    assert summary["num_tokens"] >= 24 * 8 * 2 and summary["tokens_per_s"] > 0
    config_json = json.loads((run.last_checkpoint().path / "config.json").read_text())
    assert config_json["id2label"] == {"0": "negative", "1": "positive"}


def test_freeze_then_gradual_unfreezing(assets, runs_dir):
    cfg = config(assets["bert"], assets["cls"], method="classification", adapter={"kind": "none"},
                 training={"max_steps": 4, "freeze": ["bert.embeddings.*", "bert.encoder.layer.*"],
                           "unfreeze_every": 2})
    run, ev = train(runs_dir, cfg)
    ready = next(e for e in ev["log"] if e["message"] == "model ready")
    assert ready["trainable_params"] < ready["total_params"] / 2
    thawed = [e["message"] for e in ev["log"] if "unfroze" in e["message"]]
    assert thawed[0].startswith("step 2: unfroze layer 1") and thawed[1].startswith("step 4: unfroze layer 0")


def test_forgetting_watch_tracks_general_loss_beside_eval_loss(assets, runs_dir, chat_jsonl):
    cfg = config(assets["llama"], chat_jsonl, data={"eval_fraction": 0.2, "general_eval": str(assets["general"])},
                 training={"max_steps": 4, "eval_steps": 2, "learning_rate": 3e-3})
    run, ev = train(runs_dir, cfg)
    general = [(e["step"], e["general_loss"]) for e in ev["eval"] if "general_loss" in e]
    assert [s for s, _ in general] == [0, 2, 4]
    assert all(("loss" in e) for e in ev["eval"] if e["step"] > 0)  # beside the task's eval loss, same event
    assert general[0][1] != general[-1][1]
