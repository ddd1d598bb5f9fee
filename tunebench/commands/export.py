"""`tunebench export CHECKPOINT --out DIR [--format F] [--quant Q] [--merge] [--dtype D]`: a checkpoint where models run.

CHECKPOINT is a checkpoint directory, a run id (its final model) or RUN@STEP. Formats: safetensors (with --merge
the adapter merged into the base weights, a 4-bit base dequantised first; without it the adapter alone), gguf
(merged, through llama.cpp's converter, --quant f16|bf16|q8_0|f32), gguf-lora (the adapter as a llama.cpp
LoRA), ollama (the GGUF plus a Modelfile from the training chat template; `ollama create` runs when ollama is
installed), vllm (an adapter directory vLLM accepts, or a merged model when it would not). Every export is
checked after writing and before it takes its name.
"""
from __future__ import annotations

import json
import sys

from tunebench.errors import CliError

FORMATS = ("safetensors", "gguf", "gguf-lora", "ollama", "vllm")


def add_parser(sub):
    p = sub.add_parser("export", help="export a checkpoint: safetensors, GGUF, Ollama or vLLM")
    p.add_argument("checkpoint", help="a checkpoint dir, a run id (its final model) or RUN@STEP")
    p.add_argument("--out", required=True, metavar="DIR", help="where to write it (must not exist, or be empty)")
    p.add_argument("--format", default="safetensors", choices=FORMATS,
                   help="safetensors (default), gguf, gguf-lora, ollama or vllm")
    p.add_argument("--quant", default=None, choices=("f16", "bf16", "q8_0", "f32"),
                   help="GGUF type for gguf, gguf-lora and ollama (default f16)")
    p.add_argument("--merge", action="store_true", help="safetensors: merge the adapter into the base weights")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                   help="dtype of the saved weights (default: the base model's)")
    p.add_argument("--system", default=None, metavar="TEXT", help="ollama: the Modelfile's SYSTEM prompt "
                   "(default: the one the chat template inserts, if any)")
    p.add_argument("--name", default=None, help="ollama/vllm: the model or adapter name to serve it as")
    p.add_argument("--no-verify", action="store_true", help="skip reading the export back and comparing it")
    p.add_argument("--json", action="store_true", help="print what was written as one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from engine.checkpoints.display import describe_export
    from engine.checkpoints.export import export
    from engine.checkpoints.refs import resolve_ref

    ref = resolve_ref(args.checkpoint)
    phase = (lambda text: None) if args.json else (lambda text: print(f"· {text}", file=sys.stderr))
    try:
        info = export(ref, args.out, merge=args.merge, dtype=args.dtype, on_phase=phase, fmt=args.format,
                      quant=args.quant, verify=not args.no_verify, system=args.system, name=args.name)
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        raise CliError(f"export: {e}") from None
    if args.json:
        print(json.dumps(info))
        return 0
    print(describe_export(ref.label, info))
    return 0
