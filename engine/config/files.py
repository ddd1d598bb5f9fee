"""Config files and overrides: YAML over the defaults, `--set section.key=value`, the diff a preset keeps.

Light module. Raw configs are nested dicts (what YAML gives and the workbench's form edits); `load_config`
and `parse` turn them into a typed Config or raise ConfigError with every problem.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from engine.config.problems import ConfigError, Problem
from engine.config.schema import SCHEMA, SECTIONS, Config, Field
from engine.config.text import excerpt, printable
from engine.config.validate import closest, run_rules, validate


def defaults() -> dict:
    """The full default config as a raw nested dict (method and name at top level)."""
    return Config().to_dict()


def field_for(path: str) -> Field | None:
    """The Field behind a dotted key such as `training.learning_rate` (or `method`)."""
    section, _, k = path.rpartition(".")
    return SCHEMA.get(section, {}).get(k)


def all_keys() -> list[str]:
    return [f"{s}.{k}" if s else k for s, fields in SCHEMA.items() for k in fields]


def name(k) -> str:
    """A key as it appears in a message: plain when it reads as a name, quoted when it is odd (blank, 12, 'a b')."""
    return k if isinstance(k, str) and k.replace("_", "a").replace("-", "a").isalnum() else excerpt(repr(k))


def parse_override(text: str) -> tuple[str, Any]:
    """`training.learning_rate=1e-4` -> ("training.learning_rate", 1e-4); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError([Problem(f"--set {text}", "expected section.key=value",
                                   "e.g. --set training.learning_rate=1e-4")])
    k, _, raw = text.partition("=")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return k.strip(), value


def merge(base: dict, overlay: dict, problems: list[Problem], source: str = "") -> dict:
    """Lay `overlay` (a partial config) over `base`, noting unknown sections and keys."""
    out = copy.deepcopy(base)
    where = f" (in {source})" if source else ""
    for k, value in (overlay or {}).items():
        if k in SCHEMA[""]:
            out[k] = value
        elif k in SECTIONS:
            if not isinstance(value, dict):
                problems.append(Problem(k, f"expected a mapping of keys, got {excerpt(repr(value))}{where}"))
                continue
            for sub, v in value.items():
                if sub in SCHEMA[k]:
                    out[k][sub] = v
                else:
                    problems.append(Problem(f"{k}.{name(sub)}", f"unknown key{where}", closest(str(sub), SCHEMA[k])))
        else:
            problems.append(Problem(name(k), f"unknown section{where}", closest(str(k), SECTIONS + list(SCHEMA[""]))))
    return out


def apply_overrides(cfg: dict, overrides: list[str], problems: list[Problem]) -> dict:
    for text in overrides:
        try:
            k, value = parse_override(text)
        except ConfigError as e:
            problems.extend(e.problems)
            continue
        section, _, sub = k.rpartition(".")
        if field_for(k) is None:
            problems.append(Problem(k, "unknown key in --set", closest(k, all_keys())))
            continue
        (cfg[section] if section else cfg)[sub] = value
    return cfg


class _UniqueKeyLoader(yaml.SafeLoader):
    """The safe loader, refusing a mapping that names a key twice (YAML would silently keep the last)."""


def _unique_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        k = loader.construct_object(key_node, deep=deep)
        if k in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {excerpt(repr(k))} (first on line {seen[k] + 1}); keep one", key_node.start_mark)
        seen[k] = key_node.start_mark.line
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_yaml(path: str | Path) -> dict:
    """Read one YAML mapping with the safe loader; errors name the file and line."""
    p = Path(path)
    if p.exists() and not (p.is_file() or p.is_dir()):  # a FIFO or a device would block or never end
        raise ConfigError([Problem(printable(p), "not a regular file (a FIFO, device or socket); give a YAML file")])
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(printable(p), "config file not found")]) from None
    except UnicodeDecodeError as e:
        raise ConfigError([Problem(printable(p), f"not UTF-8 text (byte {e.start}); save it as UTF-8")]) from None
    except OSError as e:
        raise ConfigError([Problem(printable(p), f"cannot read: {e.strerror}")]) from None
    try:
        loader = _UniqueKeyLoader(text)  # what yaml.safe_load does, with the duplicate-key check
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError([Problem(f"{printable(p)}{line}", f"invalid YAML: {excerpt(getattr(e, 'problem', e), 120)}")]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([Problem(str(p), f"expected a mapping of sections (model:, data:, ...), got {type(data).__name__}")])
    return data


def parse(raw: dict, source: str | None = None) -> Config:
    """A raw nested dict -> a typed Config, or ConfigError with every problem."""
    cfg, problems = validate(raw)
    if problems:
        raise ConfigError(problems, source=source)
    return Config.from_dict(cfg)


def load_config(path: str | Path | None = None, overrides: list[str] = (), base: dict | Config | None = None,
                for_run: bool = False) -> Config:
    """Defaults, then the YAML file, then `--set` overrides; validated (`for_run`: with what starting a run needs,
    validate.run_rules). Raises ConfigError with every problem."""
    problems: list[Problem] = []
    cfg = base.to_dict() if isinstance(base, Config) else (copy.deepcopy(base) if base is not None else defaults())
    if path:
        cfg = merge(cfg, load_yaml(path), problems, source=str(path))
    cfg = apply_overrides(cfg, list(overrides), problems)
    cfg, more = validate(cfg)
    problems += more + (run_rules(cfg) if for_run else [])
    if problems:
        raise ConfigError(problems, source=str(path) if path else None)
    return Config.from_dict(cfg)


def diff(cfg: dict | Config, base: dict | Config | None = None) -> dict:
    """Only the keys of `cfg` that differ from `base` (the defaults by default), as a partial config."""
    cfg = cfg.to_dict() if isinstance(cfg, Config) else cfg
    base = base.to_dict() if isinstance(base, Config) else (base or defaults())
    out: dict[str, Any] = {}
    for section, fields in SCHEMA.items():
        for k in fields:
            a = cfg.get(k) if not section else (cfg.get(section) or {}).get(k)
            b = base.get(k) if not section else (base.get(section) or {}).get(k)
            if a != b:
                if section:
                    out.setdefault(section, {})[k] = a
                else:
                    out[k] = a
    return out


def dump(cfg: dict | Config) -> str:
    return yaml.safe_dump(cfg.to_dict() if isinstance(cfg, Config) else cfg, sort_keys=False, default_flow_style=False)
