"""data.chat_template and the assistant mask: named templates, every assistant turn trained for any template
(checked against hand-rendered ChatML), a template whose prefixes disagree refused naming the turn."""
from __future__ import annotations

import copy
import json

import pytest

from engine.data import chat_templates as ct

MULTI = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "first question"},
         {"role": "assistant", "content": "first answer"}, {"role": "user", "content": "second question"},
         {"role": "assistant", "content": "second answer"}]


def test_named_templates_resolve_with_their_tokens():
    for name in ("chatml", "llama3", "mistral", "gemma", "phi3", "qwen2.5", "alpaca"):
        chosen = ct.resolve(name)
        assert chosen.template and "messages" in chosen.template and chosen.name == name
    assert ct.resolve("chatml").special_tokens == ("<|im_start|>", "<|im_end|>")
    assert ct.resolve("auto").template is None


def test_bad_values_name_the_key_and_the_fix(tmp_path):
    with pytest.raises(ct.TemplateError, match=r"data.chat_template: 'chatlm' is not a known template; set"):
        ct.resolve("chatlm")
    with pytest.raises(ct.TemplateError, match="no such file"):
        ct.resolve(str(tmp_path / "missing.jinja"))
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "tokenizer_config.json").write_text("{}")
    with pytest.raises(ct.TemplateError, match="has no chat template"):
        ct.resolve(f"from:{tmp_path / 'm'}")


def test_from_a_model_dir_and_a_jinja_file(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "tokenizer_config.json").write_text(json.dumps({
        "chat_template": [{"name": "default", "template": "{% for m in messages %}<|x|>{{ m['content'] }}{% endfor %}"}],
        "added_tokens_decoder": {"5": {"content": "<|x|>", "special": True}}}))
    chosen = ct.resolve(f"from:{d}")
    assert "<|x|>" in chosen.template and chosen.special_tokens == ("<|x|>",)
    assert ct.model_template(d) == chosen.template
    f = tmp_path / "t.jinja"
    f.write_text(ct.NAMED["chatml"][0])
    assert ct.resolve(str(f)).special_tokens == ("<|im_end|>", "<|im_start|>")


@pytest.fixture(scope="module")
def chatml_tok(tiny_model):
    """The tiny model's tokenizer with ChatML put on it (its tokens added)."""
    from transformers import AutoTokenizer

    from engine.data import templates

    tok = AutoTokenizer.from_pretrained(tiny_model)
    n = len(tok)
    done = templates.apply(tok, ct.resolve("chatml"))
    assert done["added_tokens"] == ["<|im_start|>", "<|im_end|>"] and len(tok) == n + 2
    assert done["end_of_turn_id"] == tok.convert_tokens_to_ids("<|im_end|>")
    return tok


def hand_chatml(messages) -> tuple[str, list[str]]:
    text, trained = "", []
    for m in messages:
        text += f"<|im_start|>{m['role']}\n"
        if m["role"] == "assistant":
            trained.append(m["content"] + "<|im_end|>")
        text += m["content"] + "<|im_end|>\n"
    return text, trained


def test_every_assistant_turn_trains_as_hand_rendered_chatml(chatml_tok):
    from engine.data import templates
    from engine.data.encode import IGNORE, SFTEncoder

    text, trained = hand_chatml(MULTI)
    ids, mask = templates.assistant_mask(chatml_tok, MULTI)
    assert ids == chatml_tok(text, add_special_tokens=False)["input_ids"]
    assert chatml_tok.decode([t for t, m in zip(ids, mask) if m]) == "".join(trained)
    untrained = chatml_tok.decode([t for t, m in zip(ids, mask) if not m])
    assert "first question" in untrained and "be brief" in untrained and "answer" not in untrained
    enc = SFTEncoder(chatml_tok).encode({"messages": MULTI})
    assert enc["input_ids"] == ids and [v != IGNORE for v in enc["labels"]] == [bool(m) for m in mask]
    assert templates.plan(chatml_tok)["mode"] == "prefix" and templates.plan(chatml_tok)["stop_token_trained"]


@pytest.mark.parametrize("name", ["llama3", "mistral", "gemma", "phi3", "qwen2.5", "alpaca"])
def test_each_named_template_masks_both_assistant_turns(tiny_model, name):
    from transformers import AutoTokenizer

    from engine.data import templates

    tok = AutoTokenizer.from_pretrained(tiny_model)
    templates.apply(tok, ct.resolve(name))
    ids, mask = templates.assistant_mask(tok, MULTI)
    trained = tok.decode([t for t, m in zip(ids, mask) if m])
    assert "first answer" in trained and "second answer" in trained and "question" not in trained
    assert templates.plan(tok)["stop_token_trained"] is True, name


def test_a_template_whose_prefixes_disagree_is_refused_naming_the_turn(chatml_tok):
    from engine.data import templates
    from engine.data.encode import SFTEncoder, Unusable

    tok = copy.deepcopy(chatml_tok)
    # renders an assistant turn differently when it is the last one: earlier turns cannot be found
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }}: {% if m['role'] == 'assistant' and not loop.last %}"
                         "[old] {% endif %}{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant: "
                         "{% endif %}")
    with pytest.raises(templates.TemplateMismatch, match=r"mine: turn 3 \(assistant\)"):
        templates.assistant_mask(tok, MULTI, name="mine")
    with pytest.raises(Unusable, match="data.chat_template x: turn 3"):
        SFTEncoder(tok, name="data.chat_template x").encode({"messages": MULTI})


def test_a_trailing_end_of_conversation_token_is_not_a_mismatch(chatml_tok):
    """Phi-3's own template appends eos_token when no generation prompt follows."""
    from engine.data import templates

    tok = copy.deepcopy(chatml_tok)
    tok.chat_template = ct.NAMED["phi3"][0].replace("{%- endif %}", "{%- else %}{{- eos_token }}{%- endif %}")
    ids, mask = templates.assistant_mask(tok, MULTI)
    trained = tok.decode([t for t, m in zip(ids, mask) if m])
    assert "first answer" in trained and "second answer" in trained and "<|user|>" not in trained


def test_compare_scores_every_assistant_turn_as_training_masks_it(tiny_model, chatml_tok):
    """Compare's eval loss on a multi-turn ChatML row (a template without generation markers) scores both
    assistant turns, the tokens training trains: checked against the hand-rendered row and the model's own loss."""
    import torch
    from transformers import AutoModelForCausalLM

    from engine.checkpoints import generate
    from engine.data.encode import IGNORE, SFTEncoder

    text, trained = hand_chatml(MULTI)
    ids, scored = generate._target_ids(chatml_tok, {"messages": MULTI}, 1024)
    assert ids == chatml_tok(text, add_special_tokens=False)["input_ids"]
    assert chatml_tok.decode([t for t, s in zip(ids, scored) if s]) == "".join(trained)  # both turns, not the last
    enc = SFTEncoder(chatml_tok).encode({"messages": MULTI})
    assert scored == [v != IGNORE for v in enc["labels"]]  # what training trains on this row
    # The hand mask: each trained string's characters in the hand-rendered text.
    offsets = chatml_tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    spans, at = [], 0
    for t in trained:
        at = text.index(t, at)
        spans.append((at, at + len(t)))
        at += len(t)
    hand = [any(a <= s < b for a, b in spans) for s, _ in offsets]
    assert hand == scored
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    model.resize_token_embeddings(len(chatml_tok))
    model.eval()
    side = generate.Side("a", None, model, chatml_tok)
    got = generate.eval_loss(side, [{"messages": MULTI}])
    x = torch.tensor([ids])
    labels = torch.tensor([[t if h else IGNORE for t, h in zip(ids, hand)]])
    with torch.no_grad():
        want = float(model(input_ids=x, labels=labels).loss)
    assert got["eval_tokens"] == sum(hand[1:]) and got["eval_loss"] == pytest.approx(want, abs=1e-5)
