"""Local paths in a config made absolute when a run is created, so its config.yaml means the same from any directory.

Light. The CLI and the workbench both create runs through this: a relative `data.train` kept as typed would make
`tunebench train --resume` from another directory read other files. Hub ids (nothing by that name here) stay as
they are; a glob keeps its pattern under the absolute directory. data.chat_template is a path only by its shape
(template_file: a name such as chatml never is) or after `from:`; such a path is made absolute even when missing,
so the refusal names the file that was tried.
"""
from __future__ import annotations

import glob
import os
from pathlib import Path

from engine.config import Config
from engine.config.sources import split_weight

PATH_KEYS = ("model.name_or_path", "data.train", "data.eval", "data.general_eval", "data.general_mix_data", "rl.reward_model",
             "rl.reward_file", "hardware.accelerate_config")


def _absolute(value, cwd: Path):
    if isinstance(value, list):
        return [_absolute(v, cwd) for v in value]
    if not isinstance(value, str) or not value or os.path.isabs(os.path.expanduser(value)):
        return value
    path, weight = split_weight(value)
    if weight is not None and not os.path.lexists(cwd / value):  # a mixture's path:weight keeps its weight
        done = _absolute(path, cwd)
        return f"{done}:{weight:g}" if done != path else value
    here = cwd / os.path.expanduser(value)
    if os.path.lexists(here) or (any(c in value for c in "*?[") and glob.glob(str(here), recursive=True)):
        return os.path.abspath(here)
    return value  # not here: a hub id, or a path the validation reports


TEMPLATE_SUFFIXES = (".jinja", ".jinja2", ".j2", ".txt")


def template_file(value: str) -> bool:
    """Whether a data.chat_template value is the path of a file (by its shape alone: a directory separator, a
    leading ~ or a template suffix), as engine.data.chat_templates reads it; other values name templates."""
    return "/" in value or os.sep in value or value.startswith("~") or value.endswith(TEMPLATE_SUFFIXES)


def _absolute_template(value, cwd: Path):
    if not isinstance(value, str):
        return value
    if value.startswith("from:"):
        d = value[5:]
        return value if not d or os.path.isabs(os.path.expanduser(d)) else "from:" + os.path.abspath(cwd / d)
    if not template_file(value) or os.path.isabs(os.path.expanduser(value)):
        return value
    return os.path.abspath(cwd / os.path.expanduser(value))


def absolute_paths(cfg: Config, cwd: str | Path | None = None) -> Config:
    """`cfg` with every local path among PATH_KEYS and data.chat_template's file or `from:` directory absolute
    against `cwd` (default: the current directory)."""
    cwd = Path(cwd or os.getcwd())
    values = {k: _absolute(cfg.get(k), cwd) for k in PATH_KEYS}
    values["data.chat_template"] = _absolute_template(cfg.get("data.chat_template"), cwd)
    return cfg.with_values(values)
