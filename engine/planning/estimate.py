"""Predict a config's peak memory (by part, in bytes) and its time per step, from the model's config.json alone.

Light module: no torch, no weights, no dataset, no GPU needed, so the TUI can call `estimate` and `verdict`
directly (a few hundred microseconds; the config.json read is cached). The activation coefficients were
measured with autograd's saved-tensor hooks on transformers 5.23 Llama layers (see tests/test_estimate_parts.py,
which re-measures them); the step time is FLOPs over peak FLOP/s times an efficiency learned from past runs.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from engine.config import Config
from engine.planning.resolve import Machine, installed, resolve
from engine.system import gpus as gpumod

MIB, GIB = 2**20, 2**30
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# NF4 with double quantisation: 4 bits a weight, an 8-bit absmax per 64 weights, an fp32 scale per 256 blocks.
NF4_DQ = 0.5 + 1 / 64 + 4 / (64 * 256)  # 0.5159 bytes per linear weight
NF4 = 0.5 + 4 / 64  # without double quantisation
CUDA_CONTEXT = 600 * MIB  # CUDA context + cuBLAS workspace seen by NVML, outside torch's allocator
FRAGMENTATION = 0.08  # caching-allocator reserve over allocated, typical for a training loop
CPU_BASE_RSS = 560 * MIB  # RSS of an engine with torch/transformers/trl imported, measured here (515 MiB) + slack
FIT, TIGHT = 0.85, 1.0  # verdict thresholds: share of the free memory the predicted peak may take
TRL_TOKEN_TILE, TRL_VOCAB_TILE = 4096, 32768  # TRL 1.16's fused LM head: logits tile it allocates
NON_GATED = {"gpt_neox", "gpt2", "opt", "phi", "falcon", "starcoder2", "gpt_bigcode"}
KNOWN = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "granite", "olmo",
         "olmo2", "smollm3", "mixtral", "qwen2_moe", "qwen3_moe", *NON_GATED}


class EstimateError(ValueError):
    """The model's config.json is missing or unreadable; the message names the file and the fix."""


@dataclass(frozen=True)
class Shape:
    """The parts of a decoder-only transformer that memory and FLOPs depend on."""

    model_type: str
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    tied: bool
    gated: bool = True
    qkv_bias: bool = False
    experts: int = 1
    experts_active: int = 1
    approximate: bool = False
    encoder_decoder: bool = False  # T5, BART: `layers` counts the encoder's and the decoder's blocks together

    def linears(self) -> list[tuple[str, int, int, int]]:
        """(name, in, out, copies) of one layer's linear modules; copies > 1 for MoE experts."""
        h, q, kv, i = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim, self.intermediate
        attn = [("q_proj", h, q, 1), ("k_proj", h, kv, 1), ("v_proj", h, kv, 1), ("o_proj", q, h, 1)]
        if self.model_type == "phi3":
            attn = [("qkv_proj", h, q + 2 * kv, 1), ("o_proj", q, h, 1)]
        e = self.experts
        if not self.gated:
            mlp = [("up_proj", h, i, e), ("down_proj", i, h, e)]
        elif self.model_type == "phi3":
            mlp = [("gate_up_proj", h, 2 * i, e), ("down_proj", i, h, e)]
        else:
            mlp = [("gate_proj", h, i, e), ("up_proj", h, i, e), ("down_proj", i, h, e)]
        return attn + mlp

    @property
    def linear_params(self) -> int:
        return self.layers * sum(a * b * c for _, a, b, c in self.linears())

    @property
    def active_linear_params(self) -> int:
        """Linear weights one token passes through (MoE: only its experts)."""
        per = sum(a * b * (min(c, self.experts_active) if c > 1 else 1) for _, a, b, c in self.linears())
        return self.layers * per

    @property
    def embed_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def head_params(self) -> int:
        return 0 if self.tied else self.vocab * self.hidden

    @property
    def other_params(self) -> int:
        """Norms and biases: small, kept at the load dtype."""
        bias = (self.heads + 2 * self.kv_heads) * self.head_dim if self.qkv_bias else 0
        return self.layers * (2 * self.hidden + bias) + self.hidden

    @property
    def total_params(self) -> int:
        return self.linear_params + self.embed_params + self.head_params + self.other_params


_SHAPES: dict[tuple, Shape] = {}


def config_path(name_or_path: str) -> Path:
    """config.json of a model directory (or the file itself), or of a hub id already in the local HF cache."""
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    if (p / "config.json").is_file():
        return p / "config.json"
    hub_id = name_or_path.count("/") == 1 and not name_or_path.startswith(("/", ".", "~"))
    if not p.exists() and hub_id:
        try:
            from huggingface_hub import try_to_load_from_cache  # light: no torch

            cached = try_to_load_from_cache(name_or_path, "config.json")
            if isinstance(cached, str):
                return Path(cached)
        except Exception:  # noqa: BLE001 - no hub client or a bad cache: fall through to the error
            pass
    fetch = f" (not in the local cache: `hf download {name_or_path} config.json`)" if hub_id else ""
    raise EstimateError(f"model.name_or_path: no config.json at {name_or_path}; the estimate needs only that "
                        f"file{fetch}")


def shape_from_dict(c: dict) -> Shape:
    c = c.get("text_config") or c  # multimodal configs nest the language model's
    mt = c.get("model_type", "")
    get = lambda *keys, default=None: next((c[k] for k in keys if c.get(k) is not None), default)  # noqa: E731
    hidden = get("hidden_size", "n_embd", "d_model")
    layers = get("num_hidden_layers", "n_layer", "num_layers", "encoder_layers")
    heads = get("num_attention_heads", "n_head", "num_heads", "encoder_attention_heads")
    two = bool(c.get("is_encoder_decoder"))
    if two and layers:  # both stacks, as decoder blocks (cross-attention uncounted: the estimate says approximate)
        layers += get("num_decoder_layers", "decoder_layers", default=layers)
    if not (hidden and layers and heads):
        raise EstimateError("config.json lacks hidden_size / num_hidden_layers / num_attention_heads: "
                            "not a decoder-only transformer the estimate knows")
    experts = get("num_local_experts", "num_experts", default=1) or 1
    inter = get("moe_intermediate_size", default=None) if experts > 1 else None
    return Shape(
        model_type=mt, vocab=get("vocab_size", default=32000), hidden=hidden, layers=layers, heads=heads,
        kv_heads=get("num_key_value_heads", "num_kv_heads", default=heads),
        head_dim=get("head_dim", "d_kv", default=hidden // heads),
        intermediate=inter or get("intermediate_size", "n_inner", "ffn_dim", "d_ff", "encoder_ffn_dim",
                                  default=4 * hidden),
        # transformers' own default is tied; Llama-like configs say so explicitly
        tied=bool(c.get("tie_word_embeddings", mt.startswith("gemma") or mt not in KNOWN)),
        gated=("gated" in str(c.get("feed_forward_proj", ""))) if two else mt not in NON_GATED, qkv_bias=bool(c.get("attention_bias", mt == "qwen2")),
        experts=experts, experts_active=get("num_experts_per_tok", default=1) if experts > 1 else 1,
        approximate=mt not in KNOWN or experts > 1 or two, encoder_decoder=two)


def model_shape(name_or_path: str) -> Shape:
    path = config_path(name_or_path)
    key = (str(path), path.stat().st_mtime_ns)
    if key not in _SHAPES:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise EstimateError(f"{path}: cannot read the model config: {e}") from None
        _SHAPES[key] = shape_from_dict(data)
    return _SHAPES[key]


def kind_of(cfg: Config) -> str:
    """full, qlora (4-bit base with any adapter) or lora (any adapter on a 16/32-bit or 8-bit base)."""
    if cfg.adapter.kind == "none":
        return "full"
    return "qlora" if cfg.model.quantization == "4bit" else "lora"


def adapter_param_count(shape: Shape, a: dict) -> int:
    """Trainable parameters of the adapter as peft builds it for a Llama-style model."""
    k, r, kvd = a.kind, a.r, shape.kv_heads * shape.head_dim
    if k in ("lora", "dora"):
        lins = target_linears(shape, a.target_modules)
        extra = sum(o * c for _, _, o, c in lins) if k == "dora" else 0  # DoRA's magnitude vectors
        return shape.layers * (sum(r * (i + o) * c for _, i, o, c in lins) + extra)
    if k == "ia3":  # peft's Llama default: scale k_proj and v_proj outputs and down_proj's input
        return shape.layers * (2 * kvd + shape.intermediate)
    if k == "prompt_tuning":
        return a.num_virtual_tokens * shape.hidden
    if k == "prefix_tuning":
        return a.num_virtual_tokens * shape.layers * 2 * kvd
    return 0


def target_linears(shape: Shape, targets) -> list[tuple[str, int, int, int]]:
    if targets in ("all-linear", ["all-linear"]):
        return shape.linears()
    names = {targets} if isinstance(targets, str) else set(targets)
    names = {n.strip() for t in names for n in t.split(",")}
    return [lin for lin in shape.linears() if lin[0] in names]


def plan(cfg: Config, gpu: gpumod.Gpu | None = None, resolved: dict | None = None) -> dict:
    """What the engine's resolve would pick on `gpu` (None: the CPU), without torch: the real `resolved` wins."""
    if resolved:
        return dict(resolved)
    machine = Machine(cuda=gpu is not None, bf16=gpu.bf16 if gpu else True, flash_attn=installed("flash_attn"),
                      liger=installed("liger_kernel"))
    return dict(resolve(cfg, machine))


def optimizer_bytes_per_param(optim: str, param_bytes: int) -> tuple[float, float]:
    """(state bytes, step-time temporary bytes) per trainable parameter."""
    if optim in ("adamw_torch", "adamw_torch_fused"):
        # torch's AdamW keeps exp_avg and exp_avg_sq in the parameter's dtype; the foreach (non-fused) step
        # allocates about one more parameter-sized temporary.
        return 2 * param_bytes, (4 if optim == "adamw_torch" else 0)
    if optim in ("adamw_8bit", "paged_adamw_8bit"):
        return 2 + 2 * 4 / 256, 0  # two 8-bit states + fp32 absmax per 256-block (bitsandbytes)
    if optim == "paged_adamw_32bit":
        return 8, 0
    return 0, 0  # sgd without momentum (Trainer's default)


def activation_bytes_per_layer_token(shape: Shape, kind: str, act: int, weight_bytes: int, lora_r: int,
                                     dropout: bool) -> float:
    """Bytes autograd saves per token per decoder layer (SDPA/flash attention: no S x S matrix).

    Measured with saved_tensors_hooks on transformers 5.23 Llama layers (H, I, KV = kv_heads*head_dim):
    full fp32 32H+16I+8KV; full fp32 weights under 16-bit autocast 30H+8I+4KV; LoRA (dropout > 0) on fp32
    64H+20I+8KV+28r, on 16-bit weights under autocast 48H+12I+4KV+14r (without dropout 24H+16I+8KV+28r and
    24H+8I+4KV+14r); each + 4 bytes a head (logsumexp) + 8.
    """
    h, kv = shape.hidden, shape.kv_heads * shape.head_dim
    i = shape.intermediate * shape.experts_active * (1 if shape.gated else 0.75)
    base = 4 * shape.heads + 8
    if kind == "full":
        if act == 4:
            return 32 * h + 16 * i + 8 * kv + base
        return 30 * h + 8 * i + 4 * kv + base
    if act == 4 and weight_bytes == 4:
        per = 64 * h + 20 * i + 8 * kv + 28 * lora_r
        drop = 40 * h + 4 * i  # dropout's masks and outputs (measured again with lora_dropout 0)
    else:
        per = 48 * h + 12 * i + 4 * kv + 14 * lora_r
        drop = 24 * h + 4 * i
    return per - (0 if dropout else drop) + base


def estimate(cfg: Config, *, gpu: gpumod.Gpu | str | None = None, resolved: dict | None = None,
             shape: Shape | None = None, rows: int | None = None, tokens_per_row: float | None = None,
             free_bytes: int | None = None, store: Path | None = None) -> dict:
    """Predicted peak memory by part and time per step for `cfg` (a validated config) on `gpu` or the CPU."""
    gpu = gpumod.find_gpu(gpu) if isinstance(gpu, str) else gpu
    shape = shape or model_shape(cfg.model.name_or_path)
    p = plan(cfg, gpu, resolved)
    if p["gradient_checkpointing"] is None:
        off = estimate(cfg, gpu=gpu, resolved={**p, "gradient_checkpointing": False}, shape=shape, rows=rows,
                       tokens_per_row=tokens_per_row, store=store)
        limit = free_bytes or (gpu.memory if gpu else None)
        p["gradient_checkpointing"] = bool(p["device"] == "cuda" and limit and off["peak_bytes"] > FIT * limit)
    m, a, t, d = cfg.model, cfg.adapter, cfg.training, cfg.data
    kind, quant = kind_of(cfg), m.quantization
    wb = BYTES[p["dtype"]]
    act = 2 if p["precision"] in ("bf16", "fp16") else 4
    lin, rest = shape.linear_params, shape.embed_params + shape.head_params + shape.other_params

    # weights: quantized linears, everything else at the load dtype
    if quant == "4bit":
        weights = lin * NF4_DQ + rest * wb
    elif quant == "8bit":
        weights = lin * 1 + shape.layers * sum(o * c for _, _, o, c in shape.linears()) * 4 + rest * wb
    else:
        weights = (lin + rest) * wb

    # adapter: LoRA A and B on every targeted linear; TRL casts QLoRA adapters to bf16, PEFT keeps LoRA in fp32
    lora_like = a.kind in ("lora", "dora")
    r = a.r if lora_like else 0
    adapter_params = 0 if kind == "full" else adapter_param_count(shape, a)
    pb = wb if kind == "full" else (2 if kind == "qlora" else 4)
    adapter = adapter_params * pb
    trainable = shape.total_params if kind == "full" else adapter_params
    grads = trainable * pb
    state_pp, temp_pp = optimizer_bytes_per_param(p["optimizer"], pb)
    optimizer, step_temp = trainable * state_pp, trainable * temp_pp

    # activations for one micro-batch
    seq = float(tokens_per_row or d.max_length)
    tokens = t.batch_size * seq
    per_layer = activation_bytes_per_layer_token(shape, kind, act, wb, r, lora_like and a.dropout > 0)
    outside = (wb + 8 + act) * shape.hidden  # embedding output, final norm, hidden states for the head
    if p["gradient_checkpointing"]:
        acts = tokens * (shape.layers * wb * shape.hidden + per_layer + outside)  # inputs + one layer recomputed
    else:
        acts = tokens * (shape.layers * per_layer + outside)
    if p["attn_implementation"] == "eager":  # S x S probabilities per head: fp32 softmax + its 16-bit cast
        kept = 1 if p["gradient_checkpointing"] else shape.layers
        acts += kept * t.batch_size * shape.heads * seq * seq * (4 + (act if act < 4 else 0))
    if kind == "full" and act < wb:
        acts += 2 * lin  # autocast's 16-bit copy of every weight, cached for the whole forward
    if quant != "none":
        acts += max(i * o for _, i, o, _ in shape.linears()) * act  # one dequantized weight at a time
    # logits: TRL's fused head never materialises B x S x V, only a tile, plus fp32 grads of its inputs
    logits = min(tokens, TRL_TOKEN_TILE) * TRL_VOCAB_TILE * act + tokens * (shape.hidden * 4 + 16)
    head_grad = shape.vocab * shape.hidden * 4 if kind == "full" else 0

    static = weights + adapter + optimizer
    in_step = static + acts + logits + (grads if t.grad_accum > 1 else head_grad)
    after = static + grads + step_temp
    peak_alloc = max(in_step, after)
    if p["device"] == "cuda":
        overhead = CUDA_CONTEXT + FRAGMENTATION * peak_alloc
    else:
        overhead = CPU_BASE_RSS + 0.1 * peak_alloc  # glibc arenas hold freed blocks

    # time: FLOPs per token (6N full, 4N + 6N_lora adapters, causal attention, recompute) over the rate
    n_mm = shape.active_linear_params + shape.vocab * shape.hidden
    attn_fwd = 2 * shape.layers * seq * shape.heads * shape.head_dim  # QK^T and AV, causal half
    if kind == "full":
        model_fpt = 6 * n_mm + 3 * attn_fwd
    else:
        model_fpt = 4 * n_mm + 6 * adapter_params + 3 * attn_fwd
    fpt = model_fpt + (2 * (n_mm + adapter_params) + attn_fwd if p["gradient_checkpointing"] else 0)
    tokens_per_step = tokens * t.grad_accum
    eff = efficiency(p["device"], gpu, kind, p["precision"], store, shape)
    step_s = tokens_per_step * fpt / eff["flops_per_s"] if eff.get("flops_per_s") else None
    steps = t.max_steps if t.max_steps > 0 else None
    if steps is None and rows:
        steps = math.ceil(t.epochs * math.ceil(rows / t.batch_size) / t.grad_accum)
    notes = []
    if a.kind == "dora" and kind != "full":
        notes.append("DoRA: its weight-norm temporaries are not counted; expect a higher peak")
    if shape.encoder_decoder:
        notes.append(f"{shape.model_type}: an encoder-decoder, counted as one stack of its encoder and decoder blocks "
                     "(cross-attention not counted)")
    elif shape.approximate:
        notes.append(f"model_type {shape.model_type or '?'}: counted as a Llama-style decoder; expect a wider error")
    if cfg.method != "sft":
        notes.append(f"method {cfg.method}: activations counted as for SFT on one sequence a row")
    return {
        "model_type": shape.model_type, "kind": kind, "device": p["device"], "gpu": gpu.key if gpu else None,
        "precision": p["precision"], "dtype": p["dtype"], "optimizer": p["optimizer"],
        "gradient_checkpointing": p["gradient_checkpointing"], "seq_len": seq,
        "total_params": shape.total_params, "trainable_params": trainable, "adapter_params": adapter_params,
        "weights_bytes": int(weights), "adapter_bytes": int(adapter), "gradients_bytes": int(grads),
        "optimizer_bytes": int(optimizer), "activations_bytes": int(acts), "logits_bytes": int(logits),
        "overhead_bytes": int(overhead), "peak_allocated_bytes": int(peak_alloc),
        "peak_bytes": int(peak_alloc + overhead),
        "flops_per_token": model_fpt, "executed_flops_per_token": fpt, "tokens_per_step": tokens_per_step,
        "step_seconds": step_s, "steps": steps, "total_seconds": step_s * steps if step_s and steps else None,
        "efficiency": eff, "approximate": shape.approximate, "notes": notes,
    }


def shape_key(shape: Shape) -> str:
    """The model's shape as the efficiency store keys it: runs of this shape predict each other's speed."""
    return (f"{shape.model_type or '?'}:{shape.layers}x{shape.hidden}:{shape.heads}/{shape.kv_heads}:"
            f"{shape.intermediate}:{shape.vocab}")


def efficiency(device: str, gpu: gpumod.Gpu | None, kind: str, precision: str, store: Path | None = None,
               shape: Shape | None = None) -> dict:
    """The FLOP/s to expect: learned from this device's runs of this model (or one of about its size; on a GPU
    any model's utilisation), else a typical MFU of the GPU's peak; a CPU without such a run has no figure."""
    none = {"source": "none", "runs": 0, "mfu": None, "flops_per_s": None, "peak_flops_per_s": None,
            "match": None, "spread": None}
    peak = gpu.peak(precision) if gpu and device == "cuda" else None
    if device == "cuda" and gpu is None:
        return none
    key = gpu.key if gpu and device == "cuda" else gpumod.cpu_key()
    got = gpumod.learned(key, kind, precision, shape=shape_key(shape) if shape else None,
                         params=shape.total_params if shape else None, path=store, any_model=bool(peak))
    if got:
        rate = got["mfu"] * peak if peak and got["mfu"] else got["flops_per_s"]
        return {"source": "measured", "runs": got["runs"], "mfu": got["mfu"] if peak else None, "flops_per_s": rate,
                "peak_flops_per_s": peak, "match": got["match"], "spread": got["spread"]}
    if peak:
        mfu = gpumod.PRIOR_MFU_FP32 if precision == "fp32" else gpumod.PRIOR_MFU[kind]
        return {**none, "source": "prior", "mfu": mfu, "flops_per_s": mfu * peak, "peak_flops_per_s": peak}
    return none


def time_text(est: dict) -> str:
    """The step time and where it comes from, for the CLI and the Hyperparameters pane."""
    eff = est["efficiency"]
    if not est.get("step_seconds"):
        where = "this CPU" if est["device"] == "cpu" else "this GPU"
        return (f"time: unknown until a run of this model (or one of about its size) on {where} has been "
                "measured" + ("" if est["device"] == "cpu" else "; name a GPU the table knows (hardware.gpu)"))
    if eff["source"] == "measured":
        close = f", their speeds within ±{eff['spread'] / 2:.0%}" if eff["runs"] > 1 else ""
        basis = f"from {eff['runs']} run(s) of {eff['match']} on this device{close}"
    else:
        basis = f"a typical MFU ({eff['mfu']:.0%}), no run measured on this device yet"
    total = f", {est['steps']} steps ~{fmt_duration(est['total_seconds'])}" if est.get("total_seconds") else ""
    return f"time: ~{est['step_seconds']:.3g} s a step{total} ({basis})"


def fmt_duration(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"



# -- what a run records ---------------------------------------------------------------------------------
def for_run(cfg: Config, resolved: dict) -> dict:
    """The prediction an engine records at start beside what it will measure; {} when the estimate cannot read
    the model. On a GPU compare predicted_peak_allocated_bytes with peak_cuda_bytes (torch) and
    predicted_peak_bytes with NVML; on a CPU predicted_peak_bytes with peak_rss_bytes."""
    try:
        est = estimate(cfg, gpu=_device_name(resolved), resolved=resolved)
    except Exception:  # noqa: BLE001 - a prediction is best effort; it must never fail the run it describes
        return {}
    return {"predicted_peak_bytes": est["peak_bytes"], "predicted_peak_allocated_bytes": est["peak_allocated_bytes"],
            "predicted_step_seconds": est["step_seconds"],
            "predicted_parts": {k: est[k] for k in ("weights_bytes", "adapter_bytes", "gradients_bytes",
                                                     "optimizer_bytes", "activations_bytes", "logits_bytes",
                                                     "overhead_bytes")}}


def _device_name(resolved: dict) -> str | None:
    if resolved.get("device") != "cuda":
        return None
    import sys

    torch = sys.modules.get("torch")  # the engine has it imported already; never import it here
    return torch.cuda.get_device_name() if torch is not None and torch.cuda.is_available() else None


def record_run(cfg: Config, resolved: dict, summary: dict, store: Path | None = None) -> dict | None:
    """Store what a finished run achieved (FLOP/s, MFU) so later estimates on this device learn from it."""
    tokens, wall, steps = summary.get("num_tokens"), summary.get("train_wall_s"), summary.get("step")
    if not tokens or not wall or not steps or wall < 0.5:
        return None  # too short to say anything about speed
    t = cfg.training
    rows = steps * t.batch_size * t.grad_accum
    name = _device_name(resolved)
    gpu = gpumod.find_gpu(name)
    if resolved.get("device") == "cuda" and gpu is None:
        return None  # a GPU the FLOP/s table does not know: nothing to learn an MFU against
    est = estimate(cfg, gpu=gpu, resolved=resolved, tokens_per_row=tokens / rows)
    flops_per_s = est["executed_flops_per_token"] * tokens / wall
    peak = gpu.peak(resolved["precision"]) if gpu else None
    shape = model_shape(cfg.model.name_or_path)
    record = {"device": gpu.key if gpu else gpumod.cpu_key(), "kind": est["kind"], "precision": resolved["precision"],
              "gradient_checkpointing": est["gradient_checkpointing"], "model_type": est["model_type"],
              "shape": shape_key(shape), "tokens_per_step": est["tokens_per_step"],
              "params": est["total_params"], "tokens_per_s": round(tokens / wall, 1), "flops_per_s": flops_per_s,
              "mfu": flops_per_s / peak if peak else None, "predicted_step_seconds": est["step_seconds"],
              "measured_step_seconds": wall / steps}
    gpumod.add_record(record, store)
    return record
