"""Whether vLLM serves a PEFT adapter as it is, and the `vllm serve` command for an export.

Light module. The rules are vLLM's own checks of an adapter (vllm/lora/peft_helper.py `_validate_features` and
`validate_legal`, vllm/config/lora.py): a LoRA adapter only; modules_to_save must be None (what a vocabulary
resize or a trained head leaves: embed_tokens/lm_head copies), no DoRA, no bias (`bias` "none", no
`lora_bias`), no trainable_token_indices, rank at most --max-lora-rank (default 16; the flag takes 1, 8, 16,
32, 64, 128, 256, 320, 512). An adapter that breaks a rule is exported merged instead, with the reasons.
"""
from __future__ import annotations

import shlex

MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
DEFAULT_MAX_RANK = 16


def adapter_problems(cfg: dict) -> list[str]:
    """Why vLLM would refuse this adapter_config.json (empty: it serves it as an adapter)."""
    out = []
    if cfg.get("peft_type", "LORA") != "LORA":
        out.append(f"peft_type {cfg.get('peft_type')}: vLLM serves LoRA adapters only")
    if cfg.get("modules_to_save"):
        out.append(f"modules_to_save {cfg['modules_to_save']}: vLLM only supports modules_to_save being None "
                   "(full copies of modules, e.g. embeddings after a vocabulary resize)")
    if cfg.get("use_dora"):
        out.append("use_dora: vLLM does not support DoRA")
    if cfg.get("bias", "none") != "none" or cfg.get("lora_bias"):
        out.append("trained biases (bias/lora_bias): vLLM does not load adapter biases")
    if cfg.get("trainable_token_indices"):
        out.append("trainable_token_indices: vLLM does not load trained token rows")
    r = int(cfg.get("r") or 0)
    if r > MAX_LORA_RANKS[-1]:
        out.append(f"rank {r}: above vLLM's largest --max-lora-rank ({MAX_LORA_RANKS[-1]})")
    return out


def max_rank_flag(cfg: dict) -> int | None:
    """The --max-lora-rank value an adapter of this rank needs (None: the default 16 is enough)."""
    r = int(cfg.get("r") or 0)
    if r <= DEFAULT_MAX_RANK:
        return None
    return next(v for v in MAX_LORA_RANKS if v >= r)


def serve_command(model: str, adapter_dir: str | None = None, name: str = "tuned", cfg: dict | None = None) -> str:
    """`vllm serve` for a merged or full model directory, or for a base model with the adapter as `name`."""
    if adapter_dir is None:
        return f"vllm serve {shlex.quote(model)}"
    cmd = f"vllm serve {shlex.quote(model)} --enable-lora --lora-modules {shlex.quote(f'{name}={adapter_dir}')}"
    rank = max_rank_flag(cfg or {})
    return cmd + (f" --max-lora-rank {rank}" if rank else "")
