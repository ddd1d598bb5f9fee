"""Export a checkpoint as a standalone model: the adapter merged into the base weights, or the adapter alone.

Heavy work (torch, transformers, peft) is imported inside `export`. The result is written into a
temporary directory beside --out and renamed when complete, so a failed export leaves nothing half
written. A merged export is plain safetensors + config + tokenizer + chat template: AutoModelForCausalLM
loads it with neither tunebench nor peft installed. Merging runs on the CPU: it needs no GPU and must
not compete with a training run for one.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from pathlib import Path

from engine.checkpoints.refs import ModelRef

DTYPES = ("auto", "float32", "bfloat16", "float16")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


def _base_dtype(path: str) -> str:
    """The dtype the base model was saved in (config.json), float32 when it does not say."""
    try:
        cfg = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return "float32"
    d = cfg.get("dtype") or cfg.get("torch_dtype") or "float32"
    return d if d in DTYPES else "float32"


def check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out}: already exists and is not empty; choose another --out or remove it")
    if not out.parent.exists():
        raise FileNotFoundError(f"{out.parent}: no such directory for --out")


def _load_base(ref: ModelRef, dtype, auto_class):
    """The base model on the CPU; a 4-bit or 8-bit base is loaded as trained, then dequantised to `dtype`."""
    from engine import config as cfgmod
    from engine.training import modeling

    quant = ref.meta.get("quantization") or "none"
    if ref.run is not None:
        quant = ref.run.settings().model.quantization
    if quant == "none":
        return auto_class.from_pretrained(ref.base_model, dtype=dtype), quant
    cfg = cfgmod.Config(model=cfgmod.Model(name_or_path=ref.base_model, quantization=quant))
    resolved = {"precision": "fp32" if str(dtype) == "torch.float32" else "bf16", "device": "cpu",
                "dtype": str(dtype).removeprefix("torch."), "attn_implementation": "sdpa"}
    model = modeling.load_model(cfg, resolved, auto_class)
    # The adapter learnt against the quantised weights: merge it into their dequantised values, not into
    # the original full-precision ones, or the merged model drifts from what was trained.
    model = model.dequantize(dtype=dtype)
    return model, quant


def export(ref: ModelRef, out: str | Path, merge: bool = False, dtype: str = "auto", on_phase=None) -> dict:
    """Write `ref` to `out` as a standalone model directory; returns what was written."""
    phase = on_phase or (lambda text: None)
    out = Path(out).expanduser()
    if dtype not in DTYPES:
        raise ValueError(f"--dtype: {dtype!r} is not one of {', '.join(DTYPES)}")
    if ref.kind == "base" and not ref.adapter:
        raise ValueError(f"{ref.label}: a base model, not a checkpoint; there is nothing to export")
    check_out(out)  # refusals come before the ML stack's import (seconds)
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from engine.checkpoints.generate import load_tokenizer
    dtype_name = _base_dtype(ref.base_model) if dtype == "auto" else dtype
    torch_dtype = getattr(torch, dtype_name)
    auto_class = AutoModelForSequenceClassification if ref.method in ("classification", "reward") else AutoModelForCausalLM
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(3)}.partial")
    tmp.mkdir(mode=0o700)
    t0 = time.perf_counter()
    info = {"source": ref.path, "label": ref.label, "run": ref.run.id if ref.run else None,
            "step": ref.meta.get("step"), "base_model": ref.base_model, "method": ref.method,
            "dtype": dtype_name, "time": time.time()}
    try:
        if ref.adapter and merge:
            from peft import PeftModel

            phase(f"loading the base model {ref.base_model}")
            base, quant = _load_base(ref, torch_dtype, auto_class)
            phase("merging the adapter into the base weights")
            model = PeftModel.from_pretrained(base, ref.path).merge_and_unload()
            if getattr(model.config, "quantization_config", None) is not None:
                del model.config.quantization_config  # dequantised: the saved config must not say 4-bit
            model.hf_quantizer = None
            model.to(torch_dtype)
            phase(f"saving {dtype_name} safetensors")
            model.save_pretrained(tmp, safe_serialization=True)
            info.update(kind="merged", dequantized_from=quant if quant != "none" else None)
        elif ref.adapter:
            for name in ADAPTER_FILES:  # the adapter alone: small, loads with PeftModel on the same base
                if (Path(ref.path) / name).exists():
                    shutil.copy2(Path(ref.path) / name, tmp / name)
            info.update(kind="adapter", dtype=None)
        else:
            phase(f"loading {ref.path}")
            model = auto_class.from_pretrained(ref.path, dtype=torch_dtype)
            phase(f"saving {dtype_name} safetensors (optimizer state left behind)")
            model.save_pretrained(tmp, safe_serialization=True)
            info.update(kind="full")
        # The base model's tokenizer and chat template: the checkpoint's copy may carry TRL's training
        # template (with {% generation %} markers patched in), which chat front-ends need not see.
        load_tokenizer(ref).save_pretrained(tmp)
        (tmp / "tunebench_export.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
        os.chmod(tmp, 0o755)
        if out.exists():
            out.rmdir()  # the empty directory check_out allowed
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = sorted(p.name for p in out.iterdir())
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    return {**info, "out": str(out), "files": files, "size_bytes": size, "seconds": round(time.perf_counter() - t0, 3)}
