"""Every preset in presets/ parses and validates against the schema, and every key carries a comment."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import config as cfgmod

PRESETS = sorted((Path(__file__).resolve().parent.parent / "presets").glob("*.yaml"))


def test_there_are_the_four_recipes_at_least():
    names = {p.stem for p in PRESETS}
    assert {"sft-lora-small", "qlora-8b-24gb", "full-ft-small", "classification-minilm"} <= names


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_validates(path):
    cfg = cfgmod.load_config(path)
    assert cfg.model.name_or_path


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_every_key_says_why(path):
    """A preset is a recipe: each value line has a comment explaining it."""
    for n, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith(":"):  # a section header
            continue
        assert "#" in line, f"{path.name}:{n}: `{stripped}` has no comment saying why"


def test_qlora_preset_is_what_fits_24gb():
    cfg = cfgmod.load_config(PRESETS[0].parent / "qlora-8b-24gb.yaml")
    assert cfg.model.quantization == "4bit" and cfg.adapter.kind == "lora"
    assert cfg.training.batch_size == 1 and cfg.training.gradient_checkpointing in ("true", True)


def test_demo_preset_and_data(tmp_path):
    """The demo's preset validates and every key says why; its data holds out numbers the model must compose."""
    from engine.demo.workspace import EVAL_NUMBERS, PRESET, words, write_data

    train, ev = write_data(tmp_path / "data")
    preset = tmp_path / "demo.yaml"
    preset.write_text(PRESET.format(model=tmp_path / "model", train=train, eval=ev))
    cfg = cfgmod.load_config(preset)
    assert cfg.data.train == str(train) and cfg.adapter.kind == "none"
    test_every_key_says_why(preset)
    answers = [json.loads(line)["messages"][1]["content"] for line in train.read_text().splitlines()]
    held = [json.loads(line)["messages"][1]["content"] for line in ev.read_text().splitlines()]
    assert len(answers) == 92 and held == [words(n) for n in EVAL_NUMBERS] and not set(held) & set(answers)
    assert words(37) == "thirty-seven" and words(40) == "forty" and words(13) == "thirteen"
