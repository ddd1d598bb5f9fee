"""What every `auto` in a config means on a machine: one pure function shared by the engine and the estimate.

Light module. The engine probes its machine with torch (engine.training.modeling.resolve); the estimate
describes the GPU it plans for (a visible one through NVML, or a named one that is not here). Both hand a
Machine to `resolve`, so a prediction and the run it predicts make the same choices.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TypedDict

from engine.config import Config


@dataclass(frozen=True)
class Machine:
    """The facts `auto` depends on."""

    cuda: bool                # the run trains on a CUDA GPU (when hardware.device is auto)
    bf16: bool = True         # that GPU computes in bf16 (Ampere and newer); a GPU not described is assumed to
    flash_attn: bool = False  # flash-attn is installed (used on CUDA only)
    liger: bool = False       # liger-kernel is installed (Triton: CUDA only)
    world_size: int = 1       # processes (ranks) of the run


class Resolved(TypedDict):
    """The resolved values, recorded in status.json and the first `state` event (a plain dict on disk)."""

    device: str                          # cuda | cpu
    precision: str                       # bf16 | fp16 | fp32
    dtype: str                           # float32 | bfloat16 | float16: what the weights load in
    attn_implementation: str
    optimizer: str
    world_size: int
    gradient_checkpointing: bool | None  # None: auto on a GPU, decided by the memory estimate
    liger_kernel: bool
    padding_free: bool


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def resolve(cfg: Config, machine: Machine) -> Resolved:
    """Fill every `auto` of `cfg` for `machine`. Pure: the same inputs give the same choices everywhere."""
    m, t = cfg.model, cfg.training
    device = cfg.hardware.device if cfg.hardware.device != "auto" else ("cuda" if machine.cuda else "cpu")
    precision = t.precision
    if precision == "auto":
        # bf16 where the GPU supports it (Ampere and newer); fp32 on a CPU, where bf16 autocast ran slower here.
        # seq2seq: fp32 where bf16 is missing, never fp16 (T5's activations overflow fp16's range: NaN losses).
        half = "fp32" if cfg.method == "seq2seq" else "fp16"
        precision = ("bf16" if machine.bf16 else half) if device == "cuda" else "fp32"
    dtype = m.dtype
    if dtype == "auto":
        # Frozen base weights (adapters) can sit in 16-bit; full fine-tuning keeps fp32 master weights.
        half = {"bf16": "bfloat16", "fp16": "float16"}.get(precision)
        dtype = half if half and cfg.adapter.kind != "none" else "float32"
    attn = m.attn_implementation
    if attn == "auto":
        attn = "flash_attention_2" if device == "cuda" and machine.flash_attn else "sdpa"
    # transformers' own default optimizer for torch >= 2.8, on CPU and GPU
    optim = t.optimizer if t.optimizer != "auto" else "adamw_torch_fused"
    # Off on a CPU (TRL's default of on ran ~1.5x slower here); on a GPU only when the estimate says the run
    # would not fit without it, since recomputing the forward costs about a third more compute.
    gc = {"true": True, "false": False}.get(t.gradient_checkpointing, None if device == "cuda" else False)
    liger = {"true": True, "false": False}.get(t.liger_kernel, device == "cuda" and machine.liger)
    # TRL pads nothing when it packs (best-fit decreasing + position ids, exact with flash attention and with
    # transformers' packed-sequence SDPA mask); without packing TRL 1.16 refuses padding_free with a max_length.
    padding_free = cfg.method == "sft" and cfg.data.packing
    return Resolved(device=device, precision=precision, dtype=dtype, attn_implementation=attn, optimizer=optim,
                    world_size=machine.world_size, gradient_checkpointing=gc, liger_kernel=liger,
                    padding_free=padding_free)
