"""Validation: every key coerced to its type and checked against its bounds, then the rules across keys.

Light module. `validate(raw)` never raises: it returns the coerced nested dict and every Problem at once, so
the CLI reports them together and the workbench marks each field while the user types.
"""
from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any

from engine.config.problems import Problem
from engine.config.schema import (ADAPTERS, DPO_LOSSES, KTO_LOSSES, METHOD_ADAPTERS, REPORT_TO, SCHEMA, SECTIONS,
                                  TEXT_METRICS, Field)
from engine.config.sources import normalise_train, order_problem, split_weight

_TYPE_WORDS = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "a string",
               "str?": "a string", "strlist": "a string or a list of strings"}


def closest(name: str, options) -> str:
    """The fix for a misspelt name: "did you mean X?", or "" when nothing is close."""
    match = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f"did you mean {match[0]}?" if match else ""


def _convert(f: Field, value: Any) -> tuple[Any, str | None]:
    """`value` as the field's type, or (value, what is wrong)."""
    t = f.type
    if t in ("str", "str?"):
        if value is not None and not isinstance(value, str):
            if isinstance(value, bool) and "true" in f.choices:
                return ("true" if value else "false"), None  # YAML reads `true` as a bool; auto/true/false fields
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value), None
            return value, f"expected a string, got {type(value).__name__} {value!r}"
        return (None if t == "str?" and value == "" else value), None
    if t == "bool":
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1"), None
        return value, (None if isinstance(value, bool) else f"expected true or false, got {value!r}")
    if t == "int":
        if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
            return value, f"expected a whole number, got {value!r}"
        if isinstance(value, (int, float)):
            return int(value), None
        if isinstance(value, str):
            number = float(value)
            return (int(number), None) if number.is_integer() else (value, "expected a whole number")
        return value, f"expected a whole number, got {type(value).__name__}"
    if t == "float":
        # YAML 1.1 reads `1e-4` (no dot) as a string; accept numeric strings rather than fail on it.
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            return value, f"expected a number, got {value!r}" if isinstance(value, bool) else \
                f"expected a number, got {type(value).__name__}"
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            return value, f"expected a finite number, got {value!r}"
        return value, None
    if t == "strlist":
        if isinstance(value, str):
            return value, None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value), None
        return value, f"expected a string or a list of strings, got {value!r}"
    return value, None


def coerce(path: str, f: Field, value: Any) -> tuple[Any, Problem | None]:
    """Convert `value` to the field's type and check its choices and bounds; return (value, problem or None)."""
    if value is None and f.type != "str?":
        return value, Problem(path, f"must not be empty (expected {f.type}; default {f.default!r})")
    try:
        value, bad = _convert(f, value)
    except (TypeError, ValueError, OverflowError):
        value, bad = value, f"expected {_TYPE_WORDS.get(f.type, f.type)}, got {value!r}"
    if bad:
        return value, Problem(path, bad)
    if f.choices and value not in f.choices and not (f.type == "str?" and value is None):
        return value, Problem(path, f"{value!r} is not one of {', '.join(map(str, f.choices))}",
                              closest(str(value), f.choices))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if f.min is not None and value < f.min:
            return value, Problem(path, f"{value} is below the minimum {f.min:g}")
        if f.max is not None and value > f.max:
            return value, Problem(path, f"{value} is above the maximum {f.max:g}")
    return value, None


def validate(cfg: dict) -> tuple[dict, list[Problem]]:
    """Coerce every field to its type and check cross-field rules; return (config dict, problems)."""
    problems: list[Problem] = []
    out = copy.deepcopy(cfg)
    if isinstance(out.get("data"), dict) and "train" in out["data"]:  # {path, weight} mappings -> "path:weight"
        out["data"]["train"], bad = normalise_train(out["data"]["train"])
        if bad:
            problems.append(Problem("data.train", bad, "give path:weight strings or {path: FILE, weight: NUMBER} mappings"))
            out["data"]["train"] = ""
    for section_name, fields in SCHEMA.items():
        holder = out if not section_name else out.setdefault(section_name, {})
        if not isinstance(holder, dict):  # a section given as a scalar: merge() reported it; use the defaults
            holder = out[section_name] = {}
        for k, f in fields.items():
            path = f"{section_name}.{k}" if section_name else k
            value, problem = coerce(path, f, holder.get(k, f.default))
            holder[k] = value
            if problem:
                problems.append(problem)
    if str(out.get("method")).lower() == "ppo":  # where a user looks for PPO: say what replaced it
        problems = [p for p in problems if p.path != "method"] + [Problem(
            "method", "ppo is not available: TRL 1.x has no PPOTrainer",
            "use method: grpo or rloo (RL from a reward model via rl.reward_model, or reward functions via rl.reward_file)")]
    if problems:
        return out, problems
    for section_name in SECTIONS:  # lists of one: a single string is the same as a list holding it
        for k in ("report_to", "loss_type", "metrics"):
            if k in SCHEMA[section_name] and isinstance(out[section_name][k], str):
                out[section_name][k] = [out[section_name][k]]
    return out, cross_field(out) + method_rules(out)


def cross_field(cfg: dict) -> list[Problem]:
    """Rules across the model, data, training and hardware sections."""
    problems: list[Problem] = []
    m, a, d, t, h = cfg["model"], cfg["adapter"], cfg["data"], cfg["training"], cfg["hardware"]
    if not m["name_or_path"]:
        problems.append(Problem("model.name_or_path", "required", "give a local model directory or a hub id"))
    if m["quantization"] != "none" and a["kind"] == "none":
        problems.append(Problem("model.quantization", f"{m['quantization']} weights cannot be fully fine-tuned",
                                "set adapter.kind: lora (QLoRA) or model.quantization: none"))
    if m["quantization"] == "8bit" and h["device"] == "cpu":
        problems.append(Problem("model.quantization", "8bit needs a CUDA GPU", "use 4bit or none on a CPU"))
    if t["max_steps"] == 0 or (t["max_steps"] == -1 and t["epochs"] <= 0):
        problems.append(Problem("training.max_steps", "nothing to train",
                                "set max_steps > 0, or max_steps: -1 with epochs > 0"))
    if t["precision"] == "fp16" and h["device"] == "cpu":
        problems.append(Problem("training.precision", "fp16 needs a CUDA GPU", "use fp32 or bf16 on a CPU"))
    if t["early_stopping_patience"] and not (d["eval"] or d["eval_fraction"] > 0):
        problems.append(Problem("training.early_stopping_patience", "needs eval data",
                                "set data.eval or data.eval_fraction"))
    for r in t["report_to"]:
        if r not in REPORT_TO:
            problems.append(Problem("training.report_to", f"{r!r} is not one of {', '.join(REPORT_TO)}",
                                    closest(r, REPORT_TO)))
    if d["packing"] and cfg["method"] != "sft":
        problems.append(Problem("data.packing", f"only for method sft, not {cfg['method']}"))
    return problems + node_rules(h) + eval_rules(cfg)


# Methods whose eval rows have a reference answer to generate against (engine/training/textmetrics.py).
GENERATING = ("sft", "seq2seq")


def eval_rules(cfg: dict) -> list[Problem]:
    """eval.metrics: known names, a method that generates answers, and eval data to answer."""
    problems: list[Problem] = []
    metrics, d, method = cfg["eval"]["metrics"], cfg["data"], cfg["method"]
    for name in metrics:
        if name not in TEXT_METRICS:
            hint = closest(name, TEXT_METRICS)
            problems.append(Problem("eval.metrics", f"{name!r} is not one of {', '.join(TEXT_METRICS)}",
                                    hint or "leave it empty for the loss only"))
    if metrics and method not in GENERATING:
        extra = " (accuracy and F1 are always computed)" if method == "classification" else ""
        problems.append(Problem("eval.metrics", f"metrics on generated answers are for method sft or seq2seq, "
                                f"not {method}{extra}", "leave eval.metrics empty"))
    elif metrics and not (d["eval"] or d["eval_fraction"] > 0):
        problems.append(Problem("eval.metrics", "needs eval data to answer", "set data.eval or data.eval_fraction"))
    return problems


def world_size(h: dict) -> int:
    """Processes of the whole run: nodes x processes per node (nproc_per_node 0 = num_processes)."""
    return h["nnodes"] * (h["nproc_per_node"] or h["num_processes"])


def node_rules(h: dict) -> list[Problem]:
    """Multi-node keys: the rendezvous address reads as host:port; per-node counts do not contradict."""
    problems: list[Problem] = []
    if h["nproc_per_node"] and h["num_processes"] > 1 and h["nproc_per_node"] != h["num_processes"]:
        problems.append(Problem("hardware.nproc_per_node", f"{h['nproc_per_node']} contradicts hardware.num_processes "
                                f"{h['num_processes']}", "give one of them (nproc_per_node counts per node)",
                                related=("hardware.num_processes",)))
    endpoint = h["rdzv_endpoint"]
    if endpoint:
        host, _, port = endpoint.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            problems.append(Problem("hardware.rdzv_endpoint", f"{endpoint!r} is not host:port",
                                    "e.g. node001:29500 or 10.0.0.5:29500 (the first node's address, a free port)"))
    return problems


def run_rules(cfg: dict) -> list[Problem]:
    """What a config needs before it starts a run, beyond being valid: data to train on. (An estimate or a preset
    needs none; without this rule an empty data.train read every data file under the current directory.)"""
    train = cfg.get("data", {}).get("train")
    entries = train if isinstance(train, list) else [train]
    if not entries or not all(isinstance(t, str) and t.strip() for t in entries):
        return [Problem("data.train", "required" if not any(entries) else "an empty entry in the list",
                        "give a data file, a list of files, a glob or a hub dataset id")]
    d = cfg.get("data", {})
    if (d.get("general_mix") or 0) > 0 and not (d.get("general_mix_data") or d.get("general_eval")):
        return [Problem("data.general_mix", "needs general data to draw from",
                        "set data.general_mix_data (or data.general_eval) to a general chat or text file",
                        related=("data.general_mix_data",))]
    return []


def method_rules(cfg: dict) -> list[Problem]:
    """Rules of the methods beyond SFT, adapter kinds and the forgetting watch."""
    problems: list[Problem] = []
    method, a, d, t, rl = cfg["method"], cfg["adapter"], cfg["data"], cfg["training"], cfg["rl"]
    allowed = METHOD_ADAPTERS.get(method, ADAPTERS)
    if a["kind"] not in allowed:
        problems.append(Problem("adapter.kind", f"{a['kind']} is not available for method {method}",
                                f"use one of {', '.join(allowed)}"))
    if a["kind"] not in ("lora", "dora") and cfg["model"]["quantization"] != "none":
        problems.append(Problem("model.quantization", f"quantized weights train through lora or dora adapters, not {a['kind']}"))
    if a["use_rslora"] and a["kind"] not in ("lora", "dora"):
        problems.append(Problem("adapter.use_rslora", f"only for adapter.kind lora or dora, not {a['kind']}"))
    if method in ("grpo", "rloo"):
        if not rl["reward_model"] and not rl["reward_file"]:
            problems.append(Problem("rl.reward_model", f"method {method} needs a reward",
                                    "give a reward model directory, a Python file of reward functions, or both",
                                    related=("rl.reward_file",)))
        if rl["reward_file"] and not Path(rl["reward_file"]).is_file():
            problems.append(Problem("rl.reward_file", f"{rl['reward_file']} is not a file"))
        if rl["reward_model"] and not Path(rl["reward_model"]).exists() and Path(rl["reward_model"]).is_absolute():
            problems.append(Problem("rl.reward_model", f"{rl['reward_model']} does not exist"))
        if t["batch_size"] * t["grad_accum"] % rl["num_generations"]:
            problems.append(Problem("rl.num_generations",
                                    f"{rl['num_generations']} must divide training.batch_size x grad_accum "
                                    f"({t['batch_size']} x {t['grad_accum']})",
                                    "each prompt's completions share a batch"))
    acc = cfg["hardware"]["accelerate_config"]
    if acc and world_size(cfg["hardware"]) > 1 and not Path(acc).is_file():
        problems.append(Problem("hardware.accelerate_config", f"{acc} is not a file",
                                "a relative path is read from where you run tunebench"))
    if method == "classification" and (d["chat_template"] or "auto").strip() != "auto":  # its rows are never rendered
        problems.append(Problem("data.chat_template", "method classification reads text and a label and never "
                                f"applies a chat template ({d['chat_template']!r} would be ignored)",
                                "remove it (or set auto)"))
    if d["general_eval"] and method in ("reward", "classification", "seq2seq"):
        problems.append(Problem("data.general_eval", f"the forgetting watch needs a language model; not for method {method}"
                                + (" (it measures a causal LM's loss on general text)" if method == "seq2seq" else "")))
    if (t["freeze"] or t["unfreeze_every"]) and a["kind"] != "none":
        problems.append(Problem("training.freeze", "freezing layers is for full fine-tuning (adapter.kind: none)",
                                "an adapter already keeps the base weights frozen"))
    if t["unfreeze_every"] and not t["freeze"]:
        problems.append(Problem("training.unfreeze_every", "needs training.freeze patterns naming what starts frozen"))
    if t["unfreeze_every"] and world_size(cfg["hardware"]) > 1:
        problems.append(Problem("training.unfreeze_every", "gradual unfreezing is single-process only (DDP fixes the "
                                "trained set at start)", "set hardware.num_processes: 1 or drop it"))
    problems += practice_rules(cfg) + mixing_rules(cfg) + seq2seq_rules(cfg)
    losses = cfg["preference"]["loss_type"]
    if method == "kto" and len(losses) > 1:
        problems.append(Problem("preference.loss_type", "KTO takes one loss type (kto or apo_zero_unpaired)"))
    known = KTO_LOSSES + ("sigmoid",) if method == "kto" else DPO_LOSSES  # sigmoid: the shared default
    for loss in losses if method in ("dpo", "kto") else []:
        if loss not in known:
            names = ", ".join(k for k in known if k != "sigmoid" or method == "dpo")
            hint = closest(loss, known)
            problems.append(Problem("preference.loss_type", f"{loss!r} is not a {method} loss",
                                    f"one of {names}" + (f" ({hint})" if hint else "")))
    return problems


def practice_rules(cfg: dict) -> list[Problem]:
    """Layer-wise learning rates, label smoothing and NEFTune: where each one has a meaning."""
    problems: list[Problem] = []
    method, kind, t = cfg["method"], cfg["adapter"]["kind"], cfg["training"]
    if t["layer_lr_decay"] != 1 and kind in ("prompt_tuning", "prefix_tuning"):
        problems.append(Problem("training.layer_lr_decay", f"{kind} trains virtual tokens, not layers: no layer to decay",
                                "set it to 1, or use adapter.kind none, lora, dora or ia3"))
    if t["label_smoothing"] and method not in ("sft", "seq2seq", "classification"):
        problems.append(Problem("training.label_smoothing", f"only for method sft, seq2seq or classification, not {method} "
                                "(its trainer computes a loss of its own)", "set it to 0"))
    if t["neftune_noise_alpha"] and method != "sft":
        problems.append(Problem("training.neftune_noise_alpha", f"only for method sft, not {method} "
                                "(NEFTune is a recipe for instruction tuning)", "set it to 0"))
    return problems


def mixing_rules(cfg: dict) -> list[Problem]:
    """Data mixing and curriculum (engine.data.mixture): where they apply and what they need."""
    problems: list[Problem] = []
    method, d = cfg["method"], cfg["data"]
    entries = d["train"] if isinstance(d["train"], list) else [d["train"]]
    mixing = any(split_weight(e)[1] is not None for e in entries if isinstance(e, str)) or d["general_mix"] > 0
    bad = order_problem(d["order"])
    if bad:
        problems.append(Problem("data.order", bad))
    ordered = d["order"] != "shuffle"
    if d["general_mix_data"] and not d["general_mix"]:
        problems.append(Problem("data.general_mix_data", "is only read with data.general_mix above 0",
                                "set data.general_mix (e.g. 0.1) or leave it empty"))
    if d["order"] == "easy_first" and method not in ("sft", "dpo", "kto"):
        why = {"classification": "the base model's new head is untrained, its loss says nothing of a row",
               "reward": "a reward model has no token loss", "grpo": "prompts have no trained tokens",
               "rloo": "prompts have no trained tokens"}.get(method, "not implemented for it")
        problems.append(Problem("data.order", f"easy_first scores rows by the base model's token loss: not for method "
                                f"{method} ({why})", "use length or column:NAME"))
    for name, on in (("data.train", mixing), ("data.order", ordered)):
        if not on:
            continue
        what = "mixing sources" if name == "data.train" else "an order other than shuffle"
        if d["packing"] and method == "sft":
            problems.append(Problem(name, f"{what} does not work with data.packing (packing regroups the rows)",
                                    "set data.packing: false", related=("data.packing",)))
        elif cfg["training"]["group_by_length"] and method == "classification":  # its sampler, where it is used
            problems.append(Problem(name, f"{what} does not work with training.group_by_length (it groups the rows "
                                    "by length in its own order)", "set training.group_by_length: false",
                                    related=("training.group_by_length",)))
    return problems


def seq2seq_rules(cfg: dict) -> list[Problem]:
    """method seq2seq: the source is the encoder's input and only the target is predicted, with no chat template."""
    if cfg["method"] != "seq2seq":
        return []
    d, problems = cfg["data"], []
    if d["loss_on"] != "completion":
        problems.append(Problem("data.loss_on", "seq2seq predicts the target only (the source is the encoder's input, "
                                "never a prediction)", "set data.loss_on: completion"))
    if (d["chat_template"] or "auto").strip() != "auto":
        problems.append(Problem("data.chat_template", "seq2seq renders no chat template: the encoder reads the source "
                                "text as it is (a conversation's system and user turns joined)",
                                "leave data.chat_template: auto"))
    return problems
