"""data.chat_template is never ignored silently: classification refuses one; a template with no conversation to
render is refused; dpo, kto, reward, grpo and rloo render conversational rows with the chosen template (TRL applies
the tokenizer's, and the engine puts the chosen one there), and reward grows the vocabulary the template adds."""
from __future__ import annotations

import pytest

from engine.config import ConfigError
from engine.data.chat_templates import NAMED
from tests.conftest import tunebench, write_config
from tests.methods_support import WORDS, build_assets, config, train, write_jsonl
from tests.test_families import build_tiny_gpt2

CHATML = NAMED["chatml"][0]


def user(text):
    return [{"role": "user", "content": text}]


def assistant(text):
    return [{"role": "assistant", "content": text}]


@pytest.fixture(scope="module")
def chat(tmp_path_factory):
    """A base model whose tokenizer has no template nor ChatML's tokens, and conversational rows of each method."""
    base = tmp_path_factory.getbasetemp() / "template_methods"
    out = {"gpt2": build_tiny_gpt2(base / "gpt2"), **build_assets(base / "assets")}
    out["pref_chat"] = write_jsonl(base / "pref_chat.jsonl", [
        {"prompt": user(f"say {w}"), "chosen": assistant(f"{w} {w}"), "rejected": assistant("no")} for w in WORDS * 4])
    out["kto_chat"] = write_jsonl(base / "kto_chat.jsonl", [
        {"prompt": user(f"say {w}"), "completion": assistant(f"{w} {w}" if i % 2 == 0 else "no"), "label": i % 2 == 0}
        for i, w in enumerate(WORDS * 4)])
    out["prompts_chat"] = write_jsonl(base / "prompts_chat.jsonl", [
        {"prompt": user(f"say {w}"), "word": w} for w in WORDS * 4])
    return out


def test_classification_refuses_a_chat_template_with_a_one_line_fix(chat, tmp_path, runs_dir):
    with pytest.raises(ConfigError) as e:
        config(chat["bert"], chat["cls"], method="classification", data={"chat_template": "chatml"})
    (p,) = [p for p in e.value.problems if p.path == "data.chat_template"]
    assert "never applies a chat template" in p.message and p.fix == "remove it (or set auto)"
    assert config(chat["bert"], chat["cls"], method="classification", data={"chat_template": "auto"})
    r = tunebench("train", write_config(tmp_path / "c.yaml", chat["bert"], chat["cls"], method="classification",
                                        data={"chat_template": "chatml"}), runs_dir=runs_dir, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    (line,) = [x for x in r.stderr.splitlines() if "data.chat_template" in x]
    assert "method classification reads text and a label" in line and line.endswith("remove it (or set auto)")
    assert not (runs_dir.exists() and any(runs_dir.iterdir()))


@pytest.mark.parametrize("method,plain,conv", [("dpo", "pref", "pref_chat"), ("kto", "kto", "kto_chat"),
                                               ("grpo", "prompts", "prompts_chat"), ("sft", "general", None)])
def test_a_template_with_no_conversation_to_render_is_refused(chat, method, plain, conv):
    from engine.data.check import streamed_reader
    from engine.planning.preflight import preflight

    extra = {"rl": {"reward_file": str(chat["rewards"]), "num_generations": 4}} if method == "grpo" else {}
    cfg = config(chat["gpt2"], chat[plain], method=method, data={"chat_template": "chatml"}, **extra)
    pf = preflight(cfg, streamed_reader())
    (p,) = pf.problems
    assert p.path == "data.chat_template" and "chatml would be ignored: no row is a conversation" in p.message
    assert "give the rows as message lists" in p.fix
    if conv:
        ok = preflight(config(chat["gpt2"], chat[conv], method=method, data={"chat_template": "chatml"}, **extra),
                       streamed_reader())
        assert ok.ok, ok.messages


def _trainer(cfg, tmp_path):
    import importlib

    from engine.training import modeling
    from engine.training.worker import METHOD_MODULES

    job = {"trainer_dir": str(tmp_path / "trainer")}
    return importlib.import_module(METHOD_MODULES[cfg.method]).build(cfg, modeling.resolve(cfg), job, []), job


@pytest.mark.parametrize("method,data,columns", [("dpo", "pref_chat", ("prompt_ids", "chosen_ids", "rejected_ids")),
                                                 ("kto", "kto_chat", ("prompt_ids", "completion_ids")),
                                                 ("reward", "pref_chat", ("chosen_ids", "rejected_ids"))])
def test_trl_renders_conversational_rows_with_the_chosen_template(chat, tmp_path, method, data, columns):
    """The ids TRL tokenized hold ChatML's tokens where each turn starts and ends (the model's tokenizer had none)."""
    cfg = config(chat["gpt2"], chat[data], method=method, data={"chat_template": "chatml", "max_length": 64},
                 adapter={"kind": "lora", "r": 4})
    trainer, job = _trainer(cfg, tmp_path)
    tok = trainer.processing_class
    assert tok.chat_template == CHATML and job["chat_template"]["added_tokens"] == ["<|im_start|>", "<|im_end|>"]
    row = trainer.train_dataset[0]
    whole = tok.decode([t for c in columns for t in row[c]])
    assert whole.count("<|im_start|>") >= 2 and "<|im_end|>" in whole and "<|im_start|>user\nsay " in whole
    # the model's embeddings grew to the tokens the template added (reward too: its ids would index past them)
    assert trainer.model.get_input_embeddings().weight.shape[0] == len(tok)


@pytest.mark.parametrize("method", ["grpo", "rloo"])
def test_online_methods_render_prompts_with_the_chosen_template(chat, tmp_path, method):
    """GRPO/RLOO render each prompt when they generate, with processing_class's template (no override of theirs)."""
    from trl.data_utils import apply_chat_template

    cfg = config(chat["gpt2"], chat["prompts_chat"], method=method, data={"chat_template": "chatml"},
                 rl={"reward_file": str(chat["rewards"]), "num_generations": 4, "max_completion_length": 4})
    trainer, _ = _trainer(cfg, tmp_path)
    assert trainer.processing_class.chat_template == CHATML and getattr(trainer, "chat_template", None) is None
    rendered = apply_chat_template({"prompt": trainer.train_dataset[0]["prompt"]}, trainer.processing_class)["prompt"]
    assert rendered.startswith("<|im_start|>user\nsay ") and rendered.endswith("<|im_start|>assistant\n")


def test_reward_with_a_template_that_adds_tokens_trains_and_saves_it(chat, runs_dir):
    from transformers import AutoTokenizer

    cfg = config(chat["gpt2"], chat["pref_chat"], method="reward", data={"chat_template": "chatml", "max_length": 64},
                 adapter={"kind": "lora", "r": 4}, training={"max_steps": 2})
    run, ev = train(runs_dir, cfg)
    done = ev["data"][-1]["chat_template"]
    assert done["added_tokens"] == ["<|im_start|>", "<|im_end|>"]
    assert done["resized_embeddings"]["to"] == done["vocab_size"]
    tok = AutoTokenizer.from_pretrained(run.last_checkpoint().path)
    assert tok.chat_template == CHATML and len(tok) == done["vocab_size"]
