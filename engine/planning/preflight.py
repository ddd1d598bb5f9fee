"""Checks before a run exists: is the model a usable local directory (or a hub id), does it ship code.

Light: reads config.json, never imports transformers.
"""
from __future__ import annotations

import json
from pathlib import Path


def model_check(path: str) -> dict:
    """Is `path` a usable local model: exists, has config.json, needs trust_remote_code? (no transformers)."""
    p = Path(path).expanduser()
    out = {"path": str(p), "exists": p.exists(), "local": p.exists()}
    if not p.exists():
        looks_hub = "/" in path and not path.startswith((".", "/", "~")) and path.count("/") == 1
        out["hub_id"] = looks_hub
        out["problem"] = None if looks_hub else f"{path}: no such directory"
        return out
    cfg_path = p / "config.json"
    if not cfg_path.exists():
        out["problem"] = f"{p}: no config.json (not a Hugging Face model directory)"
        return out
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        out["problem"] = f"{cfg_path}: unreadable: {e}"
        return out
    out.update(model_type=cfg.get("model_type"), architectures=cfg.get("architectures") or [],
               needs_remote_code=bool(cfg.get("auto_map")), problem=None)
    return out
