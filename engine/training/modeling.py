"""Resolve the config's `auto` values on this machine (engine.planning.resolve with torch's facts), and load
tokenizer, model and adapter config.

Heavy module: imports torch and transformers inside functions, so importing it stays cheap.
"""
from __future__ import annotations

import os

from engine.config import Config
from engine.planning import resolve as plan
from engine.planning.resolve import Machine, installed
from engine.training import layerwise


def resolve(cfg: Config) -> dict:
    """Fill every `auto` with what it means on this machine; the result is recorded in the run's events."""
    import torch

    cuda = torch.cuda.is_available()
    machine = Machine(cuda=cuda, bf16=cuda and torch.cuda.is_bf16_supported(), flash_attn=installed("flash_attn"),
                      liger=installed("liger_kernel"), world_size=int(os.environ.get("WORLD_SIZE", "1")))
    out = plan.resolve(cfg, machine)
    if out["device"] == "cuda" and not cuda:
        raise RuntimeError("hardware.device: cuda was asked for but torch sees no CUDA GPU; set hardware.device: cpu")
    if out["liger_kernel"] and out["device"] != "cuda":
        raise RuntimeError("training.liger_kernel: true needs a CUDA GPU (Triton kernels); set it to auto or false")
    if out["gradient_checkpointing"] is None:
        out["gradient_checkpointing"] = checkpointing_needed(cfg, out)
    t = cfg.training
    if t.layer_lr_decay != 1:  # the declared rate at each depth; the optimizer's groups follow it
        m = cfg.model
        n = layerwise.model_layers(m.name_or_path, m.trust_remote_code, m.revision)
        out["layer_lrs"] = layerwise.schedule(t.learning_rate, n, t.layer_lr_decay) if n else None
    return out


def checkpointing_needed(cfg: Config, resolved: dict) -> bool:
    """Whether the estimate says this run needs gradient checkpointing to fit the GPU's free memory."""
    import torch

    from engine.planning import estimate

    try:
        free, _total = torch.cuda.mem_get_info()
        est = estimate.estimate(cfg, gpu=torch.cuda.get_device_name(), free_bytes=free,
                                resolved={**resolved, "gradient_checkpointing": False})
        return est["peak_bytes"] > estimate.FIT * free
    except Exception:  # noqa: BLE001 - a config the estimate cannot read: fall back to QLoRA's habit
        return cfg.model.quantization != "none"


def load_tokenizer(cfg: Config, job: dict | None = None):
    """The model's tokenizer with data.chat_template on it (special tokens it needs added when missing); `job`
    gets job["chat_template"]: what was done (engine.data.templates.apply), for the run's events."""
    from transformers import AutoTokenizer

    from engine.data import chat_templates, templates

    m = cfg.model
    tok = AutoTokenizer.from_pretrained(m.name_or_path, trust_remote_code=m.trust_remote_code, revision=m.revision)
    done = templates.apply(tok, chat_templates.resolve(cfg.data.chat_template))
    if job is not None:
        job["chat_template"] = done
    if tok.pad_token is None:  # many base models ship without one; padding positions never train
        tok.pad_token = tok.eos_token
    return tok


def fit_vocabulary(model, tok, job: dict | None = None) -> list[str]:
    """Grow the model's embeddings to the tokenizer's vocabulary when data.chat_template added tokens, and make
    the template's end-of-turn token stop generation. Returns the embedding modules an adapter must train and save
    whole (PEFT modules_to_save; empty when nothing was resized), so the checkpoint carries the new rows."""
    done = (job or {}).get("chat_template") or {}
    eot = done.get("end_of_turn_id")
    gen = getattr(model, "generation_config", None)
    if eot is not None and gen is not None:
        ids = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [i for i in [gen.eos_token_id] if i is not None]
        if eot not in ids:
            gen.eos_token_id = ids + [eot]
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tok) <= rows:
        return []
    model.resize_token_embeddings(len(tok))
    names = {id(mod): name for name, mod in model.named_modules()}
    out = [names[id(mod)] for mod in (model.get_input_embeddings(), model.get_output_embeddings())
           if mod is not None and id(mod) in names]
    done["resized_embeddings"] = {"from": rows, "to": len(tok), "modules": out}
    return out


def quantization_config(cfg: Config, resolved: dict):
    import torch
    from transformers import BitsAndBytesConfig

    q = cfg.model.quantization
    if q == "none":
        return None
    if q == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(resolved["precision"], torch.float32)
    # NF4 with double quantisation: ~0.52 bytes per linear weight, the QLoRA paper's recipe.
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute, bnb_4bit_quant_storage=compute)


def load_model(cfg: Config, resolved: dict, auto_class=None, **extra):
    """Load the base model as the config says (dtype, quantization, attention, device)."""
    import torch
    from transformers import AutoModelForCausalLM

    m = cfg.model
    auto_class = auto_class or AutoModelForCausalLM
    kw = dict(dtype=getattr(torch, resolved["dtype"]), trust_remote_code=m.trust_remote_code,
              revision=m.revision, attn_implementation=resolved["attn_implementation"], **extra)
    q = quantization_config(cfg, resolved)
    if q is not None:
        kw["quantization_config"] = q
    if resolved["device"] == "cuda":
        kw["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    try:
        model = auto_class.from_pretrained(m.name_or_path, **kw)
    except (ValueError, ImportError) as e:
        if "attn_implementation" not in str(e) and "sdpa" not in str(e).lower():
            raise
        kw["attn_implementation"] = "eager"  # an architecture without SDPA support
        resolved["attn_implementation"] = "eager"
        model = auto_class.from_pretrained(m.name_or_path, **kw)
    if q is not None and resolved["device"] == "cpu":
        cpu_4bit_safe(model)
    return model


def cpu_4bit_safe(model, exact: bool = False) -> int:
    """Keep bitsandbytes' portable 4-bit matmul for layers its AVX512-bf16 CPU kernel cannot take.

    bitsandbytes 0.49+ repacks a Linear4bit's weights for that kernel at its first forward in eval mode on a
    CPU; it needs out_features a multiple of 32 (its block_n) and in_features a multiple of the quantisation
    block (64), else it fails at the first generation (a model with 170 MLP units, say). That kernel also
    computes in bf16; `exact` keeps every layer on the portable path, in the compute dtype training used.
    Returns how many layers were switched to the portable path.
    """
    switched = 0
    for module in model.modules():
        if not getattr(module, "support_avx512bf16_for_cpu", False):
            continue
        block = getattr(getattr(module.weight, "quant_state", None), "blocksize", 64)
        if exact or module.out_features % 32 or module.in_features % block:
            module.support_avx512bf16_for_cpu = False
            switched += 1
    return switched


def head_modules(model) -> list[str]:
    """The task head of a *ForSequenceClassification (or any AutoModelFor* head class): its named children other
    than the base model, those with parameters. DistilBERT's is pre_classifier + classifier, DeBERTa-v2's pooler +
    classifier, RoBERTa's classifier (dense + out_proj), Llama's score: read from the class, not from a list of
    names (PEFT's default, ["classifier", "score"], also matches pre_classifier by suffix and LoRA-wraps it)."""
    base = getattr(model, "base_model", None)
    return [name for name, child in model.named_children()
            if child is not base and name != getattr(model, "base_model_prefix", None)
            and next(child.parameters(), None) is not None]


def peft_config(cfg: Config, task_type: str = "CAUSAL_LM", model=None, extra_modules: list[str] | None = None):
    """The adapter as a peft config, or None for full fine-tuning. For SEQ_CLS, `model` (the loaded model) names
    the head, which trains in full and is saved with the adapter (modules_to_save) instead of getting adapters;
    `extra_modules` (resized embeddings, fit_vocabulary) are trained and saved whole the same way."""
    a = cfg.adapter
    if a.kind == "none":
        return None
    import peft

    kind = a.kind
    keep = (head_modules(model) if model is not None and task_type == "SEQ_CLS" else []) + list(extra_modules or [])
    keep = keep or None
    if kind in ("lora", "dora"):
        # tied input/output embeddings (GPT-2) stay tied in their trained copies
        return peft.LoraConfig(r=a.r, lora_alpha=a.alpha, lora_dropout=a.dropout, use_dora=kind == "dora",
                               use_rslora=a.use_rslora, target_modules=a.target_modules, task_type=task_type,
                               modules_to_save=keep, ensure_weight_tying=bool(extra_modules))
    if kind == "ia3":
        # IA3 scales activations; without explicit targets peft picks the architecture's known k/v/ffn modules.
        targets = None if a.target_modules == "all-linear" else a.target_modules
        return peft.IA3Config(target_modules=targets, feedforward_modules=[] if targets else None,
                              task_type=task_type, modules_to_save=keep)
    n = a.num_virtual_tokens
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
