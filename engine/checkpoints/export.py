"""Export a checkpoint where people run models: safetensors (merged or the adapter), GGUF, Ollama, vLLM.

Heavy work (torch, transformers, peft) is imported inside functions. Every format is written into a temporary
directory beside --out, checked there (read back and compared), and renamed when complete, so a failed or
unverified export leaves nothing half written; what a format cannot take is refused before anything is
written. A merged export is plain safetensors + config + tokenizer + chat template: AutoModelForCausalLM
(AutoModelForSeq2SeqLM for a seq2seq run's T5 or BART, which only safetensors takes) loads it with neither
tunebench nor peft installed. Merging runs on the CPU: it needs no GPU and must not
compete with a training run for one. GGUF goes through llama.cpp's own converter (engine.checkpoints.gguf).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

from engine.checkpoints import gguf as gg
from engine.checkpoints import vllm as vl
from engine.checkpoints.refs import ModelRef

DTYPES = ("auto", "float32", "bfloat16", "float16")
FORMATS = ("safetensors", "gguf", "gguf-lora", "ollama", "vllm")
GENERIC_PROMPTS = ("Hello! Who are you?", "Write one sentence about the sea.", "What is 12 plus 30?")
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


def _auto_class(ref: ModelRef):
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification

    if ref.method in ("classification", "reward"):
        return AutoModelForSequenceClassification
    return AutoModelForSeq2SeqLM if ref.seq2seq else AutoModelForCausalLM


# Formats that hold decoder-only language models here, and why each cannot take an encoder-decoder (T5, BART).
NOT_SEQ2SEQ = {
    "gguf": "the GGUF export is converted and checked as a decoder-only model (llama.cpp runs T5 only, BART not at "
            "all, and its encoder-decoder path is not what tunebench verifies against)",
    "gguf-lora": "llama.cpp's LoRA GGUF applies to decoder-only base models",
    "ollama": "Ollama runs decoder-only models",
    "vllm": "tunebench's vLLM export serves decoder-only models",
}


def write_hf(ref: ModelRef, dest: Path, merge: bool, dtype_name: str, phase) -> dict:
    """The checkpoint as a Hugging Face directory in `dest` (merged, the adapter alone, or full weights)."""
    import torch

    from engine.checkpoints.generate import fit_saved_vocab, load_tokenizer, saved_vocab

    torch_dtype = getattr(torch, dtype_name)
    auto_class = _auto_class(ref)
    if ref.adapter and merge:
        from peft import PeftModel

        phase(f"loading the base model {ref.base_model}")
        base, quant = _load_base(ref, torch_dtype, auto_class)
        fit_saved_vocab(base, ref.path)  # the adapter saved embeddings of a resized vocabulary
        phase("merging the adapter into the base weights")
        model = PeftModel.from_pretrained(base, ref.path).merge_and_unload()
        if getattr(model.config, "quantization_config", None) is not None:
            del model.config.quantization_config  # dequantised: the saved config must not say 4-bit
        model.hf_quantizer = None
        model.to(torch_dtype)
        phase(f"saving {dtype_name} safetensors")
        model.save_pretrained(dest, safe_serialization=True)
        info = {"kind": "merged", "dequantized_from": quant if quant != "none" else None}
    elif ref.adapter:
        for name in ADAPTER_FILES:  # the adapter alone: small, loads with PeftModel on the same base
            if (Path(ref.path) / name).exists():
                shutil.copy2(Path(ref.path) / name, dest / name)
        info = {"kind": "adapter", "dtype": None}
    else:
        phase(f"loading {ref.path}")
        model = auto_class.from_pretrained(ref.path, dtype=torch_dtype)
        phase(f"saving {dtype_name} safetensors (optimizer state left behind)")
        model.save_pretrained(dest, safe_serialization=True)
        info = {"kind": "full"}
    # The tokenizer and chat template the checkpoint was trained with (load_tokenizer: the checkpoint's own copy
    # when it saved one, else the base's). After a vocabulary resize it is the one that knows the new tokens.
    tok = load_tokenizer(ref)
    if ref.adapter and saved_vocab(ref.path) and (Path(ref.path) / "tokenizer_config.json").exists():
        from transformers import AutoTokenizer

        own = AutoTokenizer.from_pretrained(ref.path)
        if len(own) > len(tok):
            tok = own
            info["tokenizer"] = "the checkpoint's (its vocabulary was resized)"
    tok.save_pretrained(dest)
    return info


def _verify_hf(ref: ModelRef, dest: Path, info: dict) -> dict:
    """A written directory read back: an adapter's files byte-equal to the checkpoint's; a model loads with
    transformers with no weight missing and none NaN or inf."""
    import filecmp

    if info["kind"] == "adapter":
        names = [n for n in ADAPTER_FILES if (Path(ref.path) / n).exists()]
        same = all(filecmp.cmp(Path(ref.path) / n, dest / n, shallow=False) for n in names)
        if not same:
            raise gg.ExportError(f"{dest}: the adapter files differ from the checkpoint's after copying")
        return {"reader": "filecmp", "files": names, "passed": True}
    import torch

    model, loading = _auto_class(ref).from_pretrained(dest, dtype=torch.float32, output_loading_info=True)
    missing = loading.get("missing_keys") or []
    if missing:
        raise gg.ExportError(f"{dest}: the saved model lacks {len(missing)} weights ({', '.join(sorted(missing)[:3])})")
    bad = [n for n, p in model.named_parameters() if not bool(p.isfinite().all())]
    if bad:
        raise gg.ExportError(f"{dest}: weights hold NaN or inf ({', '.join(bad[:3])})")
    count = sum(1 for _ in model.parameters())
    return {"reader": "transformers", "tensors": count, "passed": True}


def verify_prompts(ref: ModelRef, tok, n: int = 3) -> list[list[int]]:
    """Token ids of the prompts a GGUF is checked on: the run's eval prompts, else a few generic ones."""
    from engine.checkpoints.generate import encode_prompt

    prompts = []
    try:
        from engine.checkpoints.prompts import default_prompts

        prompts = default_prompts(ref, ref, n)[0]
    except Exception:  # noqa: BLE001 - no run, no eval split, unreadable data: the generic prompts do
        prompts = []
    if len(prompts) < n:
        prompts += [{"messages": [{"role": "user", "content": t}]} for t in GENERIC_PROMPTS][: n - len(prompts)]
    return [encode_prompt(tok, p) for p in prompts]


def stop_ids(tok, shape) -> set[int]:
    """End-of-sequence and end-of-turn token ids: where a greedy check (and a chat turn) stops."""
    ids = {tok.eos_token_id}
    eot = shape.suffix.get("assistant", "").strip() if shape is not None else ""
    if eot:
        enc = tok(eot, add_special_tokens=False)["input_ids"]
        if len(enc) == 1:
            ids.add(enc[0])
    return {i for i in ids if i is not None}


def chat_shape(tok):
    """The tokenizer's chat template shape (None without a template); TemplateError when it has no fixed shape."""
    from engine.checkpoints.template import derive

    if not tok.chat_template:
        return None
    return derive(lambda msgs, gen: tok.apply_chat_template(msgs, add_generation_prompt=gen, tokenize=False))


def _name(ref: ModelRef) -> str:
    """A name to serve the model as (Ollama: lowercase letters, digits, - _ .): RUN-stepN or the directory's."""
    label = f"{ref.run.id}-step{ref.meta.get('step')}" if ref.run is not None else Path(ref.path).name
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in label.lower()).strip("-.")[:60] or "tuned"


def export(ref: ModelRef, out: str | Path, merge: bool = False, dtype: str = "auto", on_phase=None,
           fmt: str = "safetensors", quant: str | None = None, verify: bool = True, system: str | None = None,
           name: str | None = None, run_ollama: bool = True) -> dict:
    """Write `ref` to `out` in format `fmt`; returns what was written (files, size, checks, commands to run it)."""
    phase = on_phase or (lambda text: None)
    out = Path(out).expanduser()
    if fmt not in FORMATS:
        raise ValueError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    if dtype not in DTYPES:
        raise ValueError(f"--dtype: {dtype!r} is not one of {', '.join(DTYPES)}")
    if ref.kind == "base" and not ref.adapter:
        raise ValueError(f"{ref.label}: a base model, not a checkpoint; there is nothing to export")
    if quant is not None and fmt not in ("gguf", "gguf-lora", "ollama"):
        raise ValueError(f"--quant applies to gguf, gguf-lora and ollama, not to {fmt}")
    quant = quant or "f16"
    if fmt in ("gguf", "gguf-lora", "ollama") and quant not in gg.QUANTS:
        raise ValueError(f"--quant: {quant!r} is not one of {', '.join(gg.QUANTS)} (what llama.cpp's converter writes)")
    check_out(out)  # refusals come before the ML stack's import (seconds)
    plan = _plan(ref, fmt, quant, verify, phase)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the phases say what happens; bars would garble the CLI's and the TUI's lines
    dtype_name = _base_dtype(ref.base_model) if dtype == "auto" else dtype
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(3)}.partial")
    tmp.mkdir(mode=0o700)
    t0 = time.perf_counter()
    info = {"source": ref.path, "label": ref.label, "run": ref.run.id if ref.run else None,
            "step": ref.meta.get("step"), "base_model": ref.base_model, "method": ref.method,
            "dtype": dtype_name, "format": fmt, "time": time.time()}
    try:
        info.update(_write(ref, tmp, out, fmt, quant, merge, dtype_name, verify, system, name, plan, phase))
        info["seconds_to_verified"] = round(time.perf_counter() - t0, 3)
        (tmp / "tunebench_export.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
        os.chmod(tmp, 0o755)
        if out.exists():
            out.rmdir()  # the empty directory check_out allowed
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if fmt == "ollama" and run_ollama and shutil.which("ollama"):
        phase(f"running {info['run_command']}")
        res = subprocess.run(["ollama", "create", info["ollama_name"], "-f", str(out / "Modelfile")],
                             capture_output=True, text=True)
        info["ollama_create"] = {"returncode": res.returncode, "output": (res.stdout + res.stderr).strip()[-500:]}
    files = sorted(p.name for p in out.iterdir())
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    return {**info, "out": str(out), "files": files, "size_bytes": size, "seconds": round(time.perf_counter() - t0, 3)}


def _plan(ref: ModelRef, fmt: str, quant: str, verify: bool, phase) -> dict:
    """What a format needs, checked before anything is written: the refusals, each naming why."""
    plan: dict = {}
    if fmt in NOT_SEQ2SEQ and ref.seq2seq:
        raise gg.ExportError(f"{ref.label}: an encoder-decoder (seq2seq) model, which --format {fmt} cannot hold: "
                             f"{NOT_SEQ2SEQ[fmt]}; export --format safetensors (--merge for one model directory that "
                             "AutoModelForSeq2SeqLM loads)")
    if fmt in ("gguf", "gguf-lora", "ollama"):
        gg.need_gguf()
        plan["conv"] = gg.converter(phase)
        model_dir = ref.base_model if ref.adapter else ref.path
        if not Path(model_dir).is_dir():
            raise gg.ExportError(f"{model_dir}: GGUF needs the base model as a local directory (config.json), not a hub id")
        plan["arch"] = gg.check_architecture(model_dir, plan["conv"])
        if ref.method in ("classification", "reward"):
            raise gg.ExportError(f"{ref.label}: a {ref.method} model (a classification head); GGUF and Ollama take "
                                 "causal language models")
    if fmt == "gguf-lora":
        if not ref.adapter:
            raise gg.ExportError(f"{ref.label}: full weights, not an adapter; use --format gguf")
        cfg = json.loads((Path(ref.path) / "adapter_config.json").read_text())
        why = [p for p in vl.adapter_problems(cfg) if not p.startswith("rank")]
        if why or not (Path(ref.path) / "adapter_model.safetensors").exists():
            raise gg.ExportError("llama.cpp's LoRA GGUF holds LoRA pairs only: " + "; ".join(
                why or ["no adapter_model.safetensors"]) + "; export --format gguf (merged) instead")
    elif fmt in ("gguf", "ollama") and verify:
        plan["reader"] = gg.can_verify(ref.base_model if ref.adapter else ref.path)
    if fmt == "ollama":
        from engine.checkpoints.generate import load_tokenizer
        from engine.checkpoints.template import TemplateError

        tok = load_tokenizer(ref)
        try:
            plan["shape"] = chat_shape(tok)
        except TemplateError as e:
            raise gg.ExportError(f"Ollama needs a fixed TEMPLATE: {e}") from None
    if fmt == "vllm" and ref.adapter:
        cfg = json.loads((Path(ref.path) / "adapter_config.json").read_text())
        plan["vllm_cfg"], plan["vllm_problems"] = cfg, vl.adapter_problems(cfg)
    return plan


def _write(ref, tmp: Path, out: Path, fmt, quant, merge, dtype_name, verify, system, name, plan, phase) -> dict:
    """The format's files in `tmp`, checked; returns what to record."""
    if fmt == "safetensors" or fmt == "vllm":
        as_adapter = fmt == "vllm" and ref.adapter and not plan["vllm_problems"]
        info = write_hf(ref, tmp, merge if fmt == "safetensors" else not as_adapter, dtype_name, phase)
        if verify:
            phase("checking what was written")
            info["verified"] = _verify_hf(ref, tmp, info)
        if fmt == "vllm":
            label = name or _name(ref)
            if as_adapter:
                info["run_command"] = vl.serve_command(ref.base_model, str(out), label, plan["vllm_cfg"])
            else:
                info["run_command"] = vl.serve_command(str(out))
            if plan.get("vllm_problems"):
                info["note"] = ("exported merged, not as an adapter: vLLM would refuse the adapter: "
                                + "; ".join(plan["vllm_problems"]))
        return info
    conv = plan["conv"]
    if fmt == "gguf-lora":
        target = tmp / f"adapter-{quant}.gguf"
        phase(f"converting the adapter with llama.cpp's convert_lora_to_gguf.py ({quant})")
        gg.convert_lora(ref.path, ref.base_model, target, quant, conv, phase)
        info = {"kind": "gguf-lora", "quant": quant, "gguf": target.name}
        if verify:
            phase("reading the GGUF adapter back")
            info["verified"] = gg.verify_lora(target, ref.path)
        info["run_command"] = f"llama-cli -m BASE.gguf --lora {out / target.name}"
        return info
    hf = tmp / ".hf"
    hf.mkdir()
    write_hf(ref, hf, True, dtype_name, phase)
    target = tmp / f"model-{quant}.gguf"
    phase(f"converting with llama.cpp's convert_hf_to_gguf.py ({quant})")
    t0 = time.perf_counter()
    gg.convert(hf, target, quant, conv, phase)
    info = {"kind": "gguf", "quant": quant, "gguf": target.name, "architecture": plan["arch"],
            "convert_seconds": round(time.perf_counter() - t0, 3)}
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf)
    shape = plan.get("shape") if fmt == "ollama" else None
    if verify:
        phase(f"checking the GGUF: greedy tokens against the merged model ({plan['reader']})")
        from engine.checkpoints.template import TemplateError

        try:
            stop_shape = shape if fmt == "ollama" else chat_shape(tok)
        except TemplateError:
            stop_shape = None
        info["verified"] = gg.verify(hf, target, verify_prompts(ref, tok), stop_ids(tok, stop_shape), quant, plan["reader"])
    shutil.rmtree(hf)
    info["run_command"] = f"llama-cli -m {out / target.name}"
    if fmt == "ollama":
        from engine.checkpoints.modelfile import modelfile
        from engine.checkpoints.template import TemplateError

        label = name or _name(ref)
        eos = [t for t in {tok.eos_token} if t]
        try:
            text = modelfile(target.name, shape, eos, system)
        except TemplateError as e:
            raise gg.ExportError(f"Modelfile: {e}") from None
        (tmp / "Modelfile").write_text(text, encoding="utf-8")
        info.update(kind="ollama", ollama_name=label,
                    run_command=f"ollama create {label} -f {out / 'Modelfile'} && ollama run {label}")
    return info
