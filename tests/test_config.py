"""Engine unit tests: the config schema, YAML loading, --set overrides and validation."""
from __future__ import annotations

import pytest
import yaml

from engine import config as C
from tests.conftest import tunebench


def test_every_field_has_help_and_a_valid_default():
    cfg = C.defaults()
    cfg["model"]["name_or_path"] = "some/model"
    cfg["data"]["train"] = "x.jsonl"
    out, problems = C.validate(cfg)
    assert problems == []
    assert C.parse(cfg) == C.Config.from_dict(out) and C.parse(cfg).model.name_or_path == "some/model"
    for section, fields in C.SCHEMA.items():
        for key, f in fields.items():
            assert f.help and f.help.endswith(")") or f.help.endswith("."), f"{section}.{key} needs a one-line help"


def test_yaml_over_defaults_and_typed_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  name_or_path: m\ntraining:\n  learning_rate: 1e-4\n  batch_size: 2\n")
    cfg = C.load_config(p, ["training.batch_size=8", "data.packing=true", "adapter.target_modules=[q_proj, v_proj]",
                            "method=sft"])
    # YAML 1.1 reads 1e-4 as a string; the schema makes it a float rather than failing
    assert isinstance(cfg, C.Config)
    assert cfg.training.learning_rate == pytest.approx(1e-4)
    assert cfg.training.batch_size == 8
    assert cfg.data.packing is True
    assert cfg.adapter.target_modules == ["q_proj", "v_proj"]
    assert cfg.training.epochs == 1.0  # default kept


def test_every_problem_reported_at_once_each_naming_its_field(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump({
        "model": {"name_or_path": "m", "quantisation": "4bit"},
        "training": {"batch_size": "eight", "learning_rate": -1, "lr_sheduler": "cosine", "precision": "bf32"},
        "adaptor": {"r": 8},
    }))
    with pytest.raises(C.ConfigError) as e:
        C.load_config(p)
    text = str(e.value)
    assert "model.quantisation: unknown key" in text and "did you mean quantization" in text
    assert "training.lr_sheduler" in text and "did you mean lr_scheduler" in text
    assert "adaptor: unknown section" in text and "did you mean adapter" in text
    assert "training.batch_size: expected a whole number" in text
    assert "training.learning_rate: -1.0 is below the minimum 0" in text
    assert "training.precision: 'bf32' is not one of auto, fp32, bf16, fp16" in text
    assert len(e.value.problems) == 6


def test_cross_field_rules():
    cfg = C.defaults()
    cfg["model"].update(name_or_path="m", quantization="4bit")
    cfg["adapter"]["kind"] = "none"
    cfg["training"]["early_stopping_patience"] = 2
    _, problems = C.validate(cfg)
    assert any(p.path == "model.quantization" and "lora" in str(p) for p in problems)
    assert any(p.path == "training.early_stopping_patience" for p in problems)


def test_required_model_and_bad_override_syntax():
    with pytest.raises(C.ConfigError) as e:
        C.load_config(None, ["training.max_steps", "nosuch.key=1"])
    text = str(e.value)
    assert "expected section.key=value" in text
    assert "nosuch.key: unknown key" in text
    assert "model.name_or_path: required" in text


def test_invalid_yaml_names_file_and_line(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("model:\n  name_or_path: m\ntraining: [unclosed\n")
    with pytest.raises(C.ConfigError) as e:
        C.load_config(p)
    assert str(p) in str(e.value) and "invalid YAML" in str(e.value)


def test_diff_against_defaults():
    cfg = C.defaults()
    cfg["training"]["learning_rate"] = 1e-3
    assert C.diff(cfg) == {"training": {"learning_rate": 1e-3}}


def test_cli_reports_several_mistakes_with_exit_2_and_no_traceback(tmp_path, runs_dir):
    p = tmp_path / "bad.yaml"
    p.write_text("model:\n  name_or_path: m\n  dtyp: bf16\ndata:\n  train: d.jsonl\ntraining:\n  batch_size: 0\n  seed: x\n")
    r = tunebench("train", p, "--set", "hardware.device=tpu", runs_dir=runs_dir, timeout=60)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = [line.strip() for line in r.stderr.splitlines()[1:]]
    assert len(lines) == 4, r.stderr
    assert lines[0].startswith("model.dtyp: unknown key")
    assert any(line.startswith("training.batch_size: 0 is below the minimum 1") for line in lines)
    assert any(line.startswith("training.seed: expected a whole number") for line in lines)
    assert any(line.startswith("hardware.device: 'tpu' is not one of") for line in lines)
    assert not runs_dir.exists() or not any(runs_dir.iterdir()), "a bad config must not leave a run behind"


def test_every_number_is_bounded_by_what_the_engine_accepts():
    """A number past its bound failed in the engine after the run existed (issue 14.15)."""
    for section, fields in C.SCHEMA.items():
        for k, f in fields.items():
            if f.type in ("int", "float"):
                assert f.min is not None and f.max is not None, f"{section}.{k} has no bounds"
    bad = {"training.batch_size": "1e20", "training.seed": str(2**32), "training.max_steps": str(2**40),
           "rl.temperature": "0", "preference.beta": "0", "data.max_length": "1e12"}
    with pytest.raises(C.ConfigError) as e:
        C.load_config(None, ["model.name_or_path=m", "data.train=d.jsonl", *(f"{k}={v}" for k, v in bad.items())])
    assert sorted(p.path for p in e.value.problems) == sorted(bad)
    assert C.load_config(None, ["model.name_or_path=m", f"training.seed={2**32 - 1}"]).training.seed == 2**32 - 1


def test_a_key_given_twice_in_a_yaml_file_is_refused(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("training:\n  learning_rate: 1e-4\n  batch_size: 2\n  learning_rate: 1e-3\n")
    with pytest.raises(C.ConfigError) as e:
        C.load_config(p)
    assert f"{p}:4" in str(e.value) and "duplicate key 'learning_rate' (first on line 2)" in str(e.value)
