"""Local paths in a config made absolute when a run is created, so its config.yaml means the same from any directory.

Light. The CLI and the workbench both create runs through this: a relative `data.train` kept as typed would make
`tunebench train --resume` from another directory read other files. Hub ids (nothing by that name here) stay as
they are; a glob keeps its pattern under the absolute directory.
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


def absolute_paths(cfg: Config, cwd: str | Path | None = None) -> Config:
    """`cfg` with every local path among PATH_KEYS absolute against `cwd` (default: the current directory)."""
    cwd = Path(cwd or os.getcwd())
    return cfg.with_values({k: _absolute(cfg.get(k), cwd) for k in PATH_KEYS})
