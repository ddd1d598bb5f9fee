"""Built-in helper ops: model checks, tokenising, rendering a row as the model sees it.

Imported by the helper process only (engine/helper.py OP_MODULES); heavy imports stay inside ops.
"""
from __future__ import annotations

from .helper import OpError, cached, op


def model_check(path: str) -> dict:
    """Is `path` a usable local model: exists, has config.json, needs trust_remote_code? (no transformers)."""
    import json
    from pathlib import Path

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


@op("model_check")
def _model_check(args, emit):
    return model_check(args["path"])


def tokenizer(path: str):
    from transformers import AutoTokenizer  # ~3 s the first time in this process, cached after

    return cached(("tokenizer", path), lambda: AutoTokenizer.from_pretrained(path))


@op("tokenize")
def _tokenize(args, emit):
    """Token counts for texts (streamed in chunks so the client can show progress)."""
    tok = tokenizer(args["tokenizer"])
    texts = list(args.get("texts") or [])
    out = []
    for i in range(0, len(texts), 256):
        chunk = [len(ids) for ids in tok(texts[i:i + 256])["input_ids"]]
        out += chunk
        emit(done=len(out), total=len(texts))
    return {"lengths": out}
