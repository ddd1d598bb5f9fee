"""The one configuration schema: typed fields with a description and a default, YAML over defaults.

Light module: imports no torch. The TUI builds its form from `SCHEMA`; presets and `--set` go through
`load_config`, which collects every problem before raising `ConfigError`.
"""
from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Field:
    """One config key: its type, default, one-line help and optional bounds or choices."""

    type: str  # "str", "int", "float", "bool", "list", "str?" (nullable str), "strlist" (str or list of str)
    default: Any
    help: str
    choices: tuple = ()
    min: float | None = None
    max: float | None = None


METHODS = ("sft", "dpo", "kto", "reward", "grpo", "rloo", "classification")
ADAPTERS = ("none", "lora", "dora", "ia3", "prompt_tuning", "prefix_tuning")
# TRL 1.16's loss names (DPOConfig.loss_type, KTOConfig.loss_type).
DPO_LOSSES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
              "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")
KTO_LOSSES = ("kto", "apo_zero_unpaired")
# Adapter kinds each method can train (peft task types differ: prompt/prefix tuning need a causal LM).
METHOD_ADAPTERS = {"sft": ADAPTERS, "dpo": ADAPTERS[:4], "kto": ADAPTERS[:4], "reward": ADAPTERS[:4],
                   "grpo": ADAPTERS[:4], "rloo": ADAPTERS[:4], "classification": ADAPTERS}

# section -> key -> Field. `method` is a top-level scalar, kept in its own pseudo-section "".
SCHEMA: dict[str, dict[str, Field]] = {
    "": {
        "method": Field("str", "sft", "Training method: sft (supervised), dpo, kto, reward, grpo, rloo, classification.",
                        choices=METHODS),
        "name": Field("str", "", "Optional label for the run; it becomes part of the run id."),
    },
    "model": {
        "name_or_path": Field("str", "", "Local model directory or hub id of the base model (required)."),
        "dtype": Field("str", "auto", "Dtype the weights load in; auto follows training.precision.",
                       choices=("auto", "float32", "bfloat16", "float16")),
        "quantization": Field("str", "none", "Load the base weights quantized by bitsandbytes; 4bit with lora is QLoRA.",
                              choices=("none", "4bit", "8bit")),
        "trust_remote_code": Field("bool", False, "Run Python code shipped with the model; only for models you trust."),
        "attn_implementation": Field("str", "auto", "Attention kernel: auto picks sdpa (flash_attention_2 when installed on CUDA).",
                                     choices=("auto", "eager", "sdpa", "flash_attention_2")),
        "revision": Field("str?", None, "Hub revision (branch, tag or commit) when name_or_path is a hub id."),
    },
    "adapter": {
        "kind": Field("str", "lora", "none = full fine-tuning; lora (QLoRA with 4bit weights), dora, ia3, prompt_tuning, prefix_tuning.",
                      choices=ADAPTERS),
        "use_rslora": Field("bool", False, "Rank-stabilised LoRA: scale by alpha/sqrt(r), so higher ranks keep learning (lora, dora)."),
        "num_virtual_tokens": Field("int", 20, "Learned virtual tokens for prompt_tuning and prefix_tuning.", min=1, max=4096),
        "r": Field("int", 16, "LoRA rank: the adapter's inner dimension; more capacity, more memory.", min=1, max=4096),
        "alpha": Field("float", 32.0, "LoRA scaling numerator (the update is scaled by alpha/r).", min=0),
        "dropout": Field("float", 0.05, "Dropout on the adapter's input during training.", min=0, max=1),
        "target_modules": Field("strlist", "all-linear",
                                "Modules that get adapters: all-linear, or a list of names such as q_proj, v_proj."),
    },
    "data": {
        "train": Field("strlist", "", "Training data: a file, a list of files or a glob (required)."),
        "eval": Field("str?", None, "Held-out evaluation file; when empty, eval_fraction of train is held out."),
        "eval_fraction": Field("float", 0.0, "Share of train rows held out for evaluation when data.eval is empty.",
                               min=0, max=0.5),
        "format": Field("str", "auto", "Row format; auto detects it from the columns (see tunebench inspect).",
                        choices=("auto", "messages", "sharegpt", "alpaca", "prompt_completion", "text", "preference",
                                 "kto", "classification", "prompt")),
        "columns": Field("strlist", [], "Column mapping NAME=COLUMN (e.g. instruction=question,output=answer) onto the format's names."),
        "skip_invalid": Field("bool", False, "Drop invalid rows (counted by reason in the run's events) instead of refusing to start."),
        "train_on_chosen": Field("bool", False, "sft on preference data: train on the prompt and the chosen answer."),
        "split": Field("str?", None, "Split of a hub dataset or DatasetDict directory (default train)."),
        "subset": Field("str?", None, "Subset (configuration) of a hub dataset."),
        "max_length": Field("int", 1024, "Longest sequence in tokens; longer rows are truncated.", min=8),
        "packing": Field("bool", False, "Pack several short rows into one sequence of max_length (SFT only)."),
        "general_eval": Field("str?", None, "Forgetting watch: general text whose loss is tracked beside the task's eval loss."),
        "loss_on": Field("str", "completion", "Which tokens train: completion (assistant/completion tokens) or all.",
                         choices=("completion", "all")),
    },
    "training": {
        "max_steps": Field("int", -1, "Optimizer steps to run; -1 means train for `epochs` instead.", min=-1),
        "epochs": Field("float", 1.0, "Passes over the training data when max_steps is -1.", min=0),
        "batch_size": Field("int", 4, "Rows per device per forward pass.", min=1),
        "grad_accum": Field("int", 1, "Forward passes accumulated into one optimizer step.", min=1),
        "learning_rate": Field("float", 2e-4, "Peak learning rate (LoRA likes ~1e-4..1e-3, full fine-tuning ~1e-5).",
                               min=0, max=1),
        "lr_scheduler": Field("str", "linear", "Learning-rate schedule after warmup.",
                              choices=("linear", "cosine", "constant", "constant_with_warmup")),
        "warmup_steps": Field("int", 0, "Steps of linear warmup from 0 to the peak learning rate.", min=0),
        "weight_decay": Field("float", 0.0, "AdamW weight decay.", min=0),
        "max_grad_norm": Field("float", 1.0, "Gradient clipping norm; 0 turns clipping off.", min=0),
        "optimizer": Field("str", "auto", "Optimizer: auto (fused AdamW), adamw_torch, adamw_8bit (bitsandbytes), paged_adamw_8bit, sgd.",
                           choices=("auto", "adamw_torch", "adamw_torch_fused", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "sgd")),
        "precision": Field("str", "auto", "Compute precision: auto = bf16 on GPUs that support it, fp32 on a CPU.",
                           choices=("auto", "fp32", "bf16", "fp16")),
        "gradient_checkpointing": Field("str", "auto", "Recompute activations to save memory; auto = on only when the estimate says the GPU needs it.",
                                        choices=("auto", "true", "false")),
        "liger_kernel": Field("str", "auto", "Liger's Triton kernels (RMSNorm, SwiGLU, RoPE): auto = on with CUDA when liger-kernel is installed.",
                              choices=("auto", "true", "false")),
        "seed": Field("int", 0, "Seed for weights init, dropout and data order.", min=0),
        "logging_steps": Field("int", 1, "Write a metrics event every this many steps.", min=1),
        "eval_steps": Field("int", 0, "Evaluate every this many steps; 0 evaluates only at the end (when there is eval data).",
                            min=0),
        "save_steps": Field("int", 0, "Save a checkpoint every this many steps; 0 saves only at the end.", min=0),
        "save_total_limit": Field("int", 0, "Keep at most this many checkpoints (the best by eval loss is kept too); 0 keeps all.",
                                  min=0),
        "early_stopping_patience": Field("int", 0, "Evaluations without a better eval loss before stopping; 0 never stops early.",
                                         min=0),
        "freeze": Field("strlist", [], "Parameter-name patterns (fnmatch, e.g. '*embeddings*', '*layer.0.*') kept frozen."),
        "group_by_length": Field("bool", False, "Classification: batch rows of similar length together; less padding, faster on short texts."),
        "unfreeze_every": Field("int", 0, "Gradual unfreezing: every this many steps the frozen layer nearest the output trains again; 0 = never.",
                                min=0),
        "report_to": Field("strlist", "none", "Extra trackers: none, tensorboard, wandb, trackio, mlflow (when installed)."),
    },
    "preference": {
        "beta": Field("float", 0.1, "DPO/KTO: how far the policy may move from the reference model (higher = closer).", min=0),
        "loss_type": Field("strlist", "sigmoid", "DPO loss, or a list combined: sigmoid, ipo, hinge, robust, apo_zero, sppo_hard, ... (KTO: kto, apo_zero_unpaired)."),
        "desirable_weight": Field("float", 1.0, "KTO: weight of desirable (label true) rows, to balance unequal counts.", min=0),
        "undesirable_weight": Field("float", 1.0, "KTO: weight of undesirable (label false) rows.", min=0),
    },
    "rl": {
        "reward_model": Field("str?", None, "GRPO/RLOO: a reward model directory (e.g. a tunebench reward run's checkpoint)."),
        "reward_file": Field("str?", None, "GRPO/RLOO: a Python file with reward functions `def reward(completions, **columns) -> list[float]`."),
        "reward_functions": Field("strlist", "reward", "Names of the functions in reward_file to use (summed with equal weights)."),
        "num_generations": Field("int", 4, "Completions sampled per prompt; advantages compare them (batch_size must be a multiple).",
                                 min=2),
        "max_completion_length": Field("int", 64, "Longest sampled completion in tokens.", min=1),
        "temperature": Field("float", 1.0, "Sampling temperature for the completions.", min=0),
        "beta": Field("float", 0.0, "KL penalty towards the reference model (0 = none and no reference copy in memory).", min=0),
        "samples_per_log": Field("int", 4, "Sample completions with their rewards written to the events at each log step.", min=0),
    },
    "classification": {
        "text_column": Field("str", "auto", "Column with the text (auto: text, sentence, content or review)."),
        "text_pair_column": Field("str?", None, "Optional second text column for pair tasks (e.g. NLI premise/hypothesis)."),
        "label_column": Field("str", "label", "Column with the label: a name or an integer index."),
        "labels": Field("strlist", [], "Label names in index order; empty = taken from the data (sorted)."),
    },
    "hardware": {
        "device": Field("str", "auto", "Where to train: auto = cuda when a GPU is visible, else cpu.",
                        choices=("auto", "cpu", "cuda")),
        "num_processes": Field("int", 1, "Processes (GPUs) to train on; more than 1 launches through accelerate.", min=1),
        "accelerate_config": Field("str?", None, "An accelerate config file (FSDP, DeepSpeed) for multi-process runs."),
        "gpu": Field("str", "auto", "GPU that `tunebench estimate` plans for: auto = the visible one; a name (H100, A100-80GB, L4, RTX4090) for one not here."),
    },
}

SECTIONS = [s for s in SCHEMA if s]
REPORT_TO = ("none", "tensorboard", "wandb", "trackio", "mlflow")


class ConfigError(Exception):
    """Every problem in a config, each naming its field; str() gives one line per problem."""

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = problems
        self.source = source
        super().__init__("\n".join(problems))


def defaults() -> dict:
    """The full default config as a nested dict (method at top level)."""
    out: dict[str, Any] = {k: copy.deepcopy(f.default) for k, f in SCHEMA[""].items()}
    for section in SECTIONS:
        out[section] = {k: copy.deepcopy(f.default) for k, f in SCHEMA[section].items()}
    return out


def field_for(path: str) -> Field | None:
    """The Field behind a dotted key such as `training.learning_rate` (or `method`)."""
    section, _, key = path.rpartition(".")
    return SCHEMA.get(section, {}).get(key)


def all_keys() -> list[str]:
    return [f"{s}.{k}" if s else k for s, fields in SCHEMA.items() for k in fields]


def _name(key) -> str:
    """A key as it appears in a message: plain when it reads as a name, quoted when it is odd (blank, 12, 'a b')."""
    return key if isinstance(key, str) and key.replace("_", "a").replace("-", "a").isalnum() else repr(key)


def _closest(name: str, options) -> str:
    match = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""


_TYPE_WORDS = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "a string",
               "str?": "a string", "strlist": "a string or a list of strings"}


def coerce(path: str, f: Field, value: Any) -> tuple[Any, str | None]:
    """Convert `value` to the field's type; return (value, problem or None)."""
    t = f.type
    bad = None
    if value is None and t != "str?":
        return value, f"{path}: must not be empty (expected {t}; default {f.default!r})"
    try:
        if t in ("str", "str?"):
            if value is not None and not isinstance(value, str):
                if isinstance(value, bool) and "true" in f.choices:
                    value = "true" if value else "false"  # YAML reads `true` as a bool; auto/true/false fields
                elif isinstance(value, (int, float)) and not isinstance(value, bool):
                    value = str(value)
                else:
                    bad = f"expected a string, got {type(value).__name__} {value!r}"
            if t == "str?" and value == "":
                value = None
        elif t == "bool":
            if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
                value = value.lower() in ("true", "yes", "on", "1")
            elif not isinstance(value, bool):
                bad = f"expected true or false, got {value!r}"
        elif t == "int":
            if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
                bad = f"expected a whole number, got {value!r}"
            elif isinstance(value, (int, float)):
                value = int(value)
            elif isinstance(value, str):
                value = int(float(value)) if float(value).is_integer() else None
                if value is None:
                    bad = "expected a whole number"
            else:
                bad = f"expected a whole number, got {type(value).__name__}"
        elif t == "float":
            # YAML 1.1 reads `1e-4` (no dot) as a string; accept numeric strings rather than fail on it.
            if isinstance(value, bool):
                bad = f"expected a number, got {value!r}"
            elif isinstance(value, (int, float, str)):
                value = float(value)
                if value != value or value in (float("inf"), float("-inf")):
                    bad = f"expected a finite number, got {value!r}"
            else:
                bad = f"expected a number, got {type(value).__name__}"
        elif t == "strlist":
            if isinstance(value, str):
                pass
            elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                value = list(value)
            else:
                bad = f"expected a string or a list of strings, got {value!r}"
    except (TypeError, ValueError):
        bad = f"expected {_TYPE_WORDS.get(t, t)}, got {value!r}"
    if bad:
        return value, f"{path}: {bad}"
    if f.choices and value not in f.choices and not (t == "str?" and value is None):
        return value, f"{path}: {value!r} is not one of {', '.join(map(str, f.choices))}{_closest(str(value), f.choices)}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if f.min is not None and value < f.min:
            return value, f"{path}: {value} is below the minimum {f.min:g}"
        if f.max is not None and value > f.max:
            return value, f"{path}: {value} is above the maximum {f.max:g}"
    return value, None


def parse_override(text: str) -> tuple[str, Any]:
    """`training.learning_rate=1e-4` -> ("training.learning_rate", 1e-4); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError([f"--set {text}: expected section.key=value, e.g. training.learning_rate=1e-4"])
    key, _, raw = text.partition("=")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def merge(base: dict, overlay: dict, problems: list[str], source: str = "") -> dict:
    """Lay `overlay` (a partial config) over `base`, noting unknown sections and keys."""
    out = copy.deepcopy(base)
    where = f" (in {source})" if source else ""
    for key, value in (overlay or {}).items():
        if key in SCHEMA[""]:
            out[key] = value
        elif key in SECTIONS:
            if not isinstance(value, dict):
                problems.append(f"{key}: expected a mapping of keys, got {value!r}{where}")
                continue
            for sub, v in value.items():
                if sub in SCHEMA[key]:
                    out[key][sub] = v
                else:
                    problems.append(f"{key}.{_name(sub)}: unknown key{where}{_closest(str(sub), SCHEMA[key])}")
        else:
            problems.append(f"{_name(key)}: unknown section{where}{_closest(str(key), SECTIONS + list(SCHEMA['']))}")
    return out


def apply_overrides(cfg: dict, overrides: list[str], problems: list[str]) -> dict:
    for text in overrides:
        try:
            key, value = parse_override(text)
        except ConfigError as e:
            problems.extend(e.problems)
            continue
        section, _, sub = key.rpartition(".")
        if field_for(key) is None:
            problems.append(f"{key}: unknown key in --set{_closest(key, all_keys())}")
            continue
        if section:
            cfg[section][sub] = value
        else:
            cfg[sub] = value
    return cfg


def validate(cfg: dict) -> tuple[dict, list[str]]:
    """Coerce every field to its type and check cross-field rules; return (config, problems)."""
    problems: list[str] = []
    out = copy.deepcopy(cfg)
    for section, fields in SCHEMA.items():
        holder = out if not section else out.setdefault(section, {})
        for key, f in fields.items():
            path = f"{section}.{key}" if section else key
            value, problem = coerce(path, f, holder.get(key, f.default))
            holder[key] = value
            if problem:
                problems.append(problem)
    if str(out.get("method")).lower() == "ppo":  # where a user looks for PPO: say what replaced it
        problems = [p for p in problems if not p.startswith("method:")] + [
            "method: ppo is not available: TRL 1.x has no PPOTrainer; use method: grpo or rloo "
            "(RL from a reward model via rl.reward_model, or reward functions via rl.reward_file)"]
    if problems:
        return out, problems
    m, a, d, t, h = out["model"], out["adapter"], out["data"], out["training"], out["hardware"]
    if not m["name_or_path"]:
        problems.append("model.name_or_path: required; give a local model directory or a hub id")
    if m["quantization"] != "none" and a["kind"] == "none":
        problems.append(f"model.quantization: {m['quantization']} weights cannot be fully fine-tuned; "
                        "set adapter.kind: lora (QLoRA) or model.quantization: none")
    if m["quantization"] != "none" and h["device"] == "cpu" and m["quantization"] == "8bit":
        problems.append("model.quantization: 8bit needs a CUDA GPU; use 4bit or none on a CPU")
    if t["max_steps"] == 0 or (t["max_steps"] == -1 and t["epochs"] <= 0):
        problems.append("training.max_steps: set max_steps > 0, or max_steps: -1 with epochs > 0")
    if t["precision"] in ("bf16", "fp16") and h["device"] == "cpu" and t["precision"] == "fp16":
        problems.append("training.precision: fp16 needs a CUDA GPU; use fp32 or bf16 on a CPU")
    if t["early_stopping_patience"] and not (d["eval"] or d["eval_fraction"] > 0):
        problems.append("training.early_stopping_patience: needs eval data; set data.eval or data.eval_fraction")
    if isinstance(t["report_to"], str):
        t["report_to"] = [t["report_to"]]
    for r in t["report_to"]:
        if r not in REPORT_TO:
            problems.append(f"training.report_to: {r!r} is not one of {', '.join(REPORT_TO)}{_closest(r, REPORT_TO)}")
    if d["packing"] and out["method"] != "sft":
        problems.append(f"data.packing: only for method sft, not {out['method']}")
    if h["num_processes"] > 1 and h["device"] == "cpu":
        pass  # allowed: gloo through torchrun (see engine/launch.py)
    problems += validate_methods(out)
    return out, problems


def validate_methods(cfg: dict) -> list[str]:
    """Cross-field rules of the methods beyond SFT, adapter kinds and the forgetting watch."""
    problems: list[str] = []
    method, a, d, t, rl = cfg["method"], cfg["adapter"], cfg["data"], cfg["training"], cfg["rl"]
    allowed = METHOD_ADAPTERS.get(method, ADAPTERS)
    if a["kind"] not in allowed:
        problems.append(f"adapter.kind: {a['kind']} is not available for method {method}; use one of {', '.join(allowed)}")
    if a["kind"] not in ("lora", "dora") and cfg["model"]["quantization"] != "none":
        problems.append(f"model.quantization: quantized weights train through lora or dora adapters, not {a['kind']}")
    if a["use_rslora"] and a["kind"] not in ("lora", "dora"):
        problems.append(f"adapter.use_rslora: only for adapter.kind lora or dora, not {a['kind']}")
    if method in ("grpo", "rloo"):
        if not rl["reward_model"] and not rl["reward_file"]:
            problems.append(f"rl.reward_model / rl.reward_file: method {method} needs a reward; give a reward model "
                            "directory, a Python file of reward functions, or both")
        if rl["reward_file"] and not Path(rl["reward_file"]).is_file():
            problems.append(f"rl.reward_file: {rl['reward_file']} is not a file")
        if rl["reward_model"] and not Path(rl["reward_model"]).exists() and Path(rl["reward_model"]).is_absolute():
            problems.append(f"rl.reward_model: {rl['reward_model']} does not exist")
        if t["batch_size"] * t["grad_accum"] % rl["num_generations"]:
            problems.append(f"rl.num_generations: {rl['num_generations']} must divide training.batch_size x grad_accum "
                            f"({t['batch_size']} x {t['grad_accum']}); each prompt's completions share a batch")
    acc = cfg["hardware"]["accelerate_config"]
    if acc and cfg["hardware"]["num_processes"] > 1 and not Path(acc).is_file():
        problems.append(f"hardware.accelerate_config: {acc} is not a file (a relative path is read from where "
                        "you run tunebench)")
    if d["general_eval"] and method in ("reward", "classification"):
        problems.append(f"data.general_eval: the forgetting watch needs a language model; not for method {method}")
    if (t["freeze"] or t["unfreeze_every"]) and a["kind"] != "none":
        problems.append("training.freeze: freezing layers is for full fine-tuning (adapter.kind: none); "
                        "an adapter already keeps the base weights frozen")
    if t["unfreeze_every"] and not t["freeze"]:
        problems.append("training.unfreeze_every: needs training.freeze patterns naming what starts frozen")
    if t["unfreeze_every"] and cfg["hardware"]["num_processes"] > 1:
        problems.append("training.unfreeze_every: gradual unfreezing is single-process only (DDP fixes the trained "
                        "set at start); set hardware.num_processes: 1 or drop it")
    if isinstance(cfg["preference"]["loss_type"], str):
        cfg["preference"]["loss_type"] = [cfg["preference"]["loss_type"]]
    if method == "kto" and len(cfg["preference"]["loss_type"]) > 1:
        problems.append("preference.loss_type: KTO takes one loss type (kto or apo_zero_unpaired)")
    known = KTO_LOSSES + ("sigmoid",) if method == "kto" else DPO_LOSSES  # sigmoid: the shared default
    for loss in cfg["preference"]["loss_type"] if method in ("dpo", "kto") else []:
        if loss not in known:
            problems.append(f"preference.loss_type: {loss!r} is not a {method} loss; one of "
                            f"{', '.join(k for k in known if k != 'sigmoid' or method == 'dpo')}{_closest(loss, known)}")
    return problems


def load_yaml(path: str | Path) -> dict:
    """Read one YAML mapping with the safe loader; errors name the file and line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{p}: config file not found"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([f"{p}: cannot read: {e}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError([f"{p}{line}: invalid YAML: {getattr(e, 'problem', e)}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{p}: expected a mapping of sections (model:, data:, ...), got {type(data).__name__}"])
    return data


def load_config(path: str | Path | None = None, overrides: list[str] = (), base: dict | None = None) -> dict:
    """Defaults, then the YAML file, then `--set` overrides; validated. Raises ConfigError with every problem."""
    problems: list[str] = []
    cfg = base if base is not None else defaults()
    if path:
        cfg = merge(cfg, load_yaml(path), problems, source=str(path))
    cfg = apply_overrides(cfg, list(overrides), problems)
    cfg, more = validate(cfg)
    problems += more
    if problems:
        raise ConfigError(problems, source=str(path) if path else None)
    return cfg


def diff(cfg: dict, base: dict | None = None) -> dict:
    """Only the keys of `cfg` that differ from `base` (the defaults by default), as a partial config."""
    base = base or defaults()
    out: dict[str, Any] = {}
    for section, fields in SCHEMA.items():
        for key in fields:
            a = cfg.get(key) if not section else cfg.get(section, {}).get(key)
            b = base.get(key) if not section else base.get(section, {}).get(key)
            if a != b:
                if section:
                    out.setdefault(section, {})[key] = a
                else:
                    out[key] = a
    return out


def dump(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False)
