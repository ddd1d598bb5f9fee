"""Export times per format: a LoRA adapter on a Llama-shaped model, merged and written as safetensors, GGUF f16 and q8_0,
a GGUF LoRA, Ollama and vLLM, each including its check after writing. Prints a table; figures are wall seconds.

    python bench/export_formats.py [--shape tiny|0.5b] [--out DIR] [--device cpu]

tiny: the test model (2 layers, hidden 64, MLP 128, a 768-token Llama vocabulary). 0.5b: Qwen2.5-0.5B's shape as a
Llama (24 layers, hidden 896, 14 heads, 2 KV heads, MLP 4864; the vocabulary is what the tokenizer trainer reaches),
random weights: ~0.5 B parameters, ~1 GiB in f16. The adapter is LoRA r 16 on every linear layer with random
(non-zero) B, so merging changes every adapted weight. llama.cpp's converter is fetched once (see
engine/checkpoints/gguf.py); its fetch time is printed apart from the exports.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the project, not bench/ (bench/inspect.py shadows the stdlib's)

SHAPES = {
    "tiny": dict(vocab_size=512, hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128),
    "0.5b": dict(vocab_size=32000, hidden=896, layers=24, heads=14, kv_heads=2, intermediate=4864),
}
RUNS = [("safetensors (merged)", dict(fmt="safetensors", merge=True)), ("gguf f16", dict(fmt="gguf", quant="f16")),
        ("gguf q8_0", dict(fmt="gguf", quant="q8_0")), ("gguf-lora f16", dict(fmt="gguf-lora")),
        ("ollama q8_0", dict(fmt="ollama", quant="q8_0", run_ollama=False)), ("vllm (adapter)", dict(fmt="vllm"))]


def build(shape: str, work: Path) -> Path:
    """A base model and a LoRA adapter on it (random B); returns the adapter directory."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from engine.demo.tinymodel import DEFAULT_CORPUS, build_tiny_llama

    texts = DEFAULT_CORPUS * 400 if shape != "tiny" else ()
    base = build_tiny_llama(work / "base", texts, tokenizer="llama", **SHAPES[shape])
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                  init_lora_weights=False))
    adapter = work / "adapter"
    peft_model.save_pretrained(adapter)
    return adapter


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    p.add_argument("--out", default=None, help="work directory (default: a temporary one)")
    args = p.parse_args()
    from transformers.utils import logging as hf_logging

    from engine.checkpoints import gguf as gg
    from engine.checkpoints.export import export
    from engine.checkpoints.refs import resolve_ref

    hf_logging.disable_progress_bar()
    work = Path(args.out or tempfile.mkdtemp(prefix="tunebench-bench-export-"))
    t0 = time.perf_counter()
    adapter = build(args.shape, work)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    conv = gg.converter(lambda text: print(f"· {text}", file=sys.stderr))
    fetch_s = time.perf_counter() - t0
    ref = resolve_ref(str(adapter))
    rows = []
    for name, kw in RUNS:
        out = work / f"out-{name.split()[0]}-{kw.get('quant', 'x')}"
        t0 = time.perf_counter()
        info = export(ref, out, **kw)
        total = time.perf_counter() - t0
        rows.append((name, total, info.get("convert_seconds"), info["size_bytes"], info.get("verified", {})))
    print(f"## export times, {args.shape} shape ({os.cpu_count()} CPUs, converter {conv.name}; "
          f"model built in {build_s:.1f} s, converter ready in {fetch_s:.1f} s)\n")
    print("| format | total s | llama.cpp convert s | size MiB | check |")
    print("|---|---:|---:|---:|---|")
    for name, total, conv_s, size, v in rows:
        check = (f"{v['reader']}: {v['identical']}/{v['prompts']} prompts identical" if "identical" in v
                 else v.get("reader", "-"))
        print(f"| {name} | {total:.1f} | {'-' if conv_s is None else f'{conv_s:.1f}'} | {size / 2**20:.1f} | {check} |")
    base = next(r[1] for r in rows if r[0] == "safetensors (merged)")
    print("\nratio to the merged safetensors export: " + ", ".join(f"{n} x{t / base:.2f}" for n, t, *_ in rows[1:]))
    print(json.dumps({"shape": args.shape, "work": str(work)}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
