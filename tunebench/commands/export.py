"""`tunebench export CHECKPOINT --out DIR [--merge] [--dtype D]`: a checkpoint as a standalone model directory.

CHECKPOINT is a checkpoint directory, a run id (its final model) or RUN@STEP. With --merge the adapter is
merged into the base weights (a 4-bit base dequantised first) and saved as safetensors with the tokenizer
and chat template; without it, an adapter checkpoint is exported as the adapter alone plus the tokenizer.
"""
from __future__ import annotations

import json
import sys

from tunebench.errors import CliError


def add_parser(sub):
    p = sub.add_parser("export", help="export a checkpoint as a standalone model (merged, or the adapter alone)")
    p.add_argument("checkpoint", help="a checkpoint dir, a run id (its final model) or RUN@STEP")
    p.add_argument("--out", required=True, metavar="DIR", help="where to write the model (must not exist, or be empty)")
    p.add_argument("--merge", action="store_true", help="merge the adapter into the base weights")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                   help="dtype of the saved weights (default: the base model's)")
    p.add_argument("--json", action="store_true", help="print what was written as one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from engine.checkpoints.export import export
    from engine.checkpoints.refs import resolve_ref

    ref = resolve_ref(args.checkpoint)
    phase = (lambda text: None) if args.json else (lambda text: print(f"· {text}", file=sys.stderr))
    try:
        info = export(ref, args.out, merge=args.merge, dtype=args.dtype, on_phase=phase)
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        raise CliError(f"export: {e}") from None
    if args.json:
        print(json.dumps(info))
        return 0
    what = {"merged": "a merged model", "adapter": "an adapter", "full": "a full model"}[info["kind"]]
    print(f"exported {ref.label} as {what} to {info['out']} ({info['size_bytes'] / 2**20:.1f} MiB, {info['seconds']:.1f} s)")
    if info["kind"] == "adapter":
        print(f"  load it with PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained({info['base_model']!r}), "
              f"{info['out']!r}); --merge writes a model that needs no peft")
    else:
        print(f"  load it with AutoModelForCausalLM.from_pretrained({info['out']!r})")
    return 0
