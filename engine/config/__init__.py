"""The configuration: one schema (typed sections, every key documented where declared), validation into
structured problems, YAML files and `--set` overrides. The lowest layer: light, imports nothing of the project.

    cfg = load_config("presets/sft-lora-small.yaml", ["training.learning_rate=1e-4"])   # -> Config
    cfg.training.learning_rate, cfg.replace(data={"eval": None}), cfg.to_dict()
    raw, problems = validate(form_values)   # never raises: Problems with .path, .message, .fix
"""
from engine.config.files import (
                                 all_keys,
                                 apply_overrides,
                                 defaults,
                                 diff,
                                 dump,
                                 field_for,
                                 load_config,
                                 load_yaml,
                                 merge,
                                 parse,
                                 parse_override,
)
from engine.config.problems import ConfigError, Problem
from engine.config.schema import (
                                 ADAPTERS,
                                 DPO_LOSSES,
                                 FORMATS,
                                 KTO_LOSSES,
                                 METHOD_ADAPTERS,
                                 METHODS,
                                 REPORT_TO,
                                 RL,
                                 SCHEMA,
                                 SECTION_CLASSES,
                                 SECTIONS,
                                 Adapter,
                                 Classification,
                                 Config,
                                 TEXT_METRICS,
                                 Data,
                                 Eval,
                                 Field,
                                 Hardware,
                                 Model,
                                 Preference,
                                 Training,
)
from engine.config.validate import coerce, run_rules, validate

__all__ = ["ADAPTERS", "DPO_LOSSES", "FORMATS", "KTO_LOSSES", "METHOD_ADAPTERS", "METHODS", "REPORT_TO", "RL", "SCHEMA",
           "SECTION_CLASSES", "SECTIONS", "TEXT_METRICS", "Adapter", "Classification", "Config", "ConfigError", "Data", "Eval", "Field",
           "Hardware", "Model", "Preference", "Problem", "Training", "all_keys", "apply_overrides", "coerce",
           "defaults", "diff", "dump", "field_for", "load_config", "load_yaml", "merge", "parse", "parse_override",
           "run_rules", "validate"]
