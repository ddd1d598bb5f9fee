"""Resolve the config's `auto` values for this machine, and load tokenizer, model and adapter config.

Heavy module: imports torch and transformers inside functions, so importing it stays cheap.
"""
from __future__ import annotations

import importlib.util
import os

DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve(cfg: dict) -> dict:
    """Fill every `auto` with what it means on this machine; the result is recorded in the run's events."""
    import torch

    m, t, h = cfg["model"], cfg["training"], cfg["hardware"]
    device = h["device"]
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("hardware.device: cuda was asked for but torch sees no CUDA GPU; set hardware.device: cpu")
    precision = t["precision"]
    if precision == "auto":
        # bf16 where the GPU supports it (Ampere and newer); fp32 on a CPU, where bf16 autocast ran slower here.
        precision = "bf16" if device == "cuda" and torch.cuda.is_bf16_supported() else ("fp16" if device == "cuda" else "fp32")
    dtype = m["dtype"]
    if dtype == "auto":
        # Frozen base weights (adapters) can sit in 16-bit; full fine-tuning keeps fp32 master weights.
        half = {"bf16": "bfloat16", "fp16": "float16"}.get(precision)
        dtype = half if half and cfg["adapter"]["kind"] != "none" else "float32"
    attn = m["attn_implementation"]
    if attn == "auto":
        attn = "flash_attention_2" if device == "cuda" and importlib.util.find_spec("flash_attn") else "sdpa"
    optim = t["optimizer"]
    if optim == "auto":
        optim = "adamw_torch_fused"  # transformers' own default for torch >= 2.8, on CPU and GPU
    out = {"device": device, "precision": precision, "dtype": dtype, "attn_implementation": attn, "optimizer": optim,
           "world_size": int(os.environ.get("WORLD_SIZE", "1"))}  # processes (ranks) of this run
    gc = t["gradient_checkpointing"]
    if gc == "auto":
        # Off on a CPU (TRL's default of on ran ~1.5x slower here); on a GPU only when the estimate says the run
        # would not fit without it, since recomputing the forward costs about a third more compute.
        gc = device == "cuda" and checkpointing_needed(cfg, out)
    else:
        gc = gc == "true"
    liger = t.get("liger_kernel", "auto")
    if liger == "auto":
        liger = device == "cuda" and importlib.util.find_spec("liger_kernel") is not None
    elif liger == "true" and device != "cuda":
        raise RuntimeError("training.liger_kernel: true needs a CUDA GPU (Triton kernels); set it to auto or false")
    else:
        liger = liger == "true"
    # TRL pads nothing when it packs (best-fit decreasing + position ids, exact with flash attention and with
    # transformers' packed-sequence SDPA mask); without packing TRL 1.16 refuses padding_free with a max_length.
    padding_free = cfg["method"] == "sft" and cfg["data"]["packing"]
    return {**out, "gradient_checkpointing": bool(gc), "liger_kernel": bool(liger), "padding_free": padding_free}


def checkpointing_needed(cfg: dict, resolved: dict) -> bool:
    """Whether the estimate says this run needs gradient checkpointing to fit the GPU's free memory."""
    import torch

    from engine.planning import estimate

    try:
        free, _total = torch.cuda.mem_get_info()
        est = estimate.estimate(cfg, gpu=torch.cuda.get_device_name(), free_bytes=free,
                                resolved={**resolved, "gradient_checkpointing": False})
        return est["peak_bytes"] > estimate.FIT * free
    except Exception:  # noqa: BLE001 - a config the estimate cannot read: fall back to QLoRA's habit
        return cfg["model"]["quantization"] != "none"


def load_tokenizer(cfg: dict):
    from transformers import AutoTokenizer

    m = cfg["model"]
    tok = AutoTokenizer.from_pretrained(m["name_or_path"], trust_remote_code=m["trust_remote_code"],
                                        revision=m["revision"])
    if tok.pad_token is None:  # many base models ship without one; padding positions never train
        tok.pad_token = tok.eos_token
    return tok


def quantization_config(cfg: dict, resolved: dict):
    import torch
    from transformers import BitsAndBytesConfig

    q = cfg["model"]["quantization"]
    if q == "none":
        return None
    if q == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(resolved["precision"], torch.float32)
    # NF4 with double quantisation: ~0.52 bytes per linear weight, the QLoRA paper's recipe.
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute, bnb_4bit_quant_storage=compute)


def load_model(cfg: dict, resolved: dict, auto_class=None, **extra):
    """Load the base model as the config says (dtype, quantization, attention, device)."""
    import torch
    from transformers import AutoModelForCausalLM

    m = cfg["model"]
    auto_class = auto_class or AutoModelForCausalLM
    kw = dict(dtype=getattr(torch, resolved["dtype"]), trust_remote_code=m["trust_remote_code"],
              revision=m["revision"], attn_implementation=resolved["attn_implementation"], **extra)
    q = quantization_config(cfg, resolved)
    if q is not None:
        kw["quantization_config"] = q
    if resolved["device"] == "cuda":
        kw["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    try:
        return auto_class.from_pretrained(m["name_or_path"], **kw)
    except (ValueError, ImportError) as e:
        if "attn_implementation" in str(e) or "sdpa" in str(e).lower():
            kw["attn_implementation"] = "eager"  # an architecture without SDPA support
            resolved["attn_implementation"] = "eager"
            return auto_class.from_pretrained(m["name_or_path"], **kw)
        raise


def peft_config(cfg: dict, task_type: str = "CAUSAL_LM"):
    """The adapter as a peft config, or None for full fine-tuning."""
    a = cfg["adapter"]
    if a["kind"] == "none":
        return None
    import peft

    kind = a["kind"]
    if kind in ("lora", "dora"):
        return peft.LoraConfig(r=a["r"], lora_alpha=a["alpha"], lora_dropout=a["dropout"], use_dora=kind == "dora",
                               use_rslora=a.get("use_rslora", False), target_modules=a["target_modules"],
                               task_type=task_type)
    if kind == "ia3":
        # IA3 scales activations; without explicit targets peft picks the architecture's known k/v/ffn modules.
        targets = None if a["target_modules"] == "all-linear" else a["target_modules"]
        return peft.IA3Config(target_modules=targets, feedforward_modules=[] if targets else None,
                              task_type=task_type)
    n = a.get("num_virtual_tokens", 20)
    if kind == "prompt_tuning":
        return peft.PromptTuningConfig(num_virtual_tokens=n, task_type=task_type)
    if kind == "prefix_tuning":
        return peft.PrefixTuningConfig(num_virtual_tokens=n, task_type=task_type)
    raise ValueError(f"adapter.kind: {kind!r} is not supported")


def trainable_parameters(model) -> dict:
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        # bitsandbytes packs two 4-bit weights per byte: count the real parameters.
        if getattr(p, "quant_state", None) is not None or p.__class__.__name__ == "Params4bit":
            n *= 2
        total += n
        if p.requires_grad:
            trainable += n
    return {"trainable_params": trainable, "total_params": total,
            "trainable_share": round(trainable / total, 6) if total else 0.0}
