"""`tunebench estimate CONFIG [--set K=V]... [--gpu NAME] [--free-gib N] [--json]`: will it fit, how long.

Reads only the model's config.json (no weights, no torch): memory parts in bytes, the verdict against the
free memory of the chosen GPU (or all of a named one that is not here), step time and time to the end.
"""
from __future__ import annotations

import json
import sys

from engine import config as cfgmod
from tunebench.errors import CliError

GIB = 2**30
PARTS = ("weights_bytes", "adapter_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes",
         "logits_bytes", "overhead_bytes")


def add_parser(sub):
    p = sub.add_parser("estimate", help="predict peak GPU memory and time for a config (no GPU needed)")
    p.add_argument("config", help="YAML config; data.train is optional")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V",
                   help="override a key, e.g. --set training.batch_size=8 (repeatable)")
    p.add_argument("--gpu", help="estimate for this GPU (H100, A100-80GB, L4, ...), overriding hardware.gpu")
    p.add_argument("--free-gib", type=float, help="free GPU memory to judge against (default: the visible GPU's "
                   "free memory, or all of a named GPU's)")
    p.add_argument("--tokens-per-row", type=float, help="mean tokens a row (default data.max_length, an upper bound)")
    p.add_argument("--json", action="store_true", help="print the parts in bytes and the verdict as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from engine.planning.estimate import EstimateError, time_text
    from engine.planning.verdict import for_target, target, verdict

    cfg = cfgmod.load_config(args.config, args.overrides)
    try:
        gpu, free, where = target(cfg, args.gpu)
    except ValueError as e:
        raise CliError(f"{'--gpu' if args.gpu else 'hardware.gpu'}: {e}") from None
    if args.free_gib is not None:
        free = int(args.free_gib * GIB)
    from engine.data.measure import look_at_data

    rows, per_row, note = look_at_data(cfg)
    per_row = args.tokens_per_row or per_row
    cfg = for_target(cfg, where)
    try:
        v = verdict(cfg, free, gpu=gpu, tokens_per_row=per_row, rows=rows)
    except EstimateError as e:
        raise CliError(str(e)) from None
    est = v["estimate"]
    if note:
        est["notes"].append(note)
    if args.json:
        out = {**est, "verdict": v["verdict"], "free_bytes": v["free_bytes"], "fix": v["fix"],
               "message": v["message"], "gpu_source": where}
        print(json.dumps(out, indent=1))
        return 0
    source = (", from --tokens-per-row" if args.tokens_per_row else ", from the data" if per_row
              else ": data.max_length, an upper bound")
    print(f"{cfg.model.name_or_path}: {est['model_type']}, {count(est['total_params'])} parameters, "
          f"{est['kind']}, {count(est['trainable_params'])} trainable")
    print(f"on {where}: {est['precision']}, weights {est['dtype']}, {est['optimizer']}, gradient checkpointing "
          f"{'on' if est['gradient_checkpointing'] else 'off'}, {est['tokens_per_step']:.0f} tokens a step "
          f"({est['seq_len']:.0f} a row{source})")
    for part in PARTS:
        print(f"  {part[:-6]:<12} {est[part] / GIB:9.2f} GiB")
    print(f"  {'peak':<12} {est['peak_bytes'] / GIB:9.2f} GiB   (torch allocated {est['peak_allocated_bytes'] / GIB:.2f} GiB)")
    print(v["message"])
    print(time_text(est))
    for n in est["notes"]:
        print(f"note: {n}", file=sys.stderr)
    return 0


def count(n: int) -> str:
    """A parameter count as people say it: 818K, 1.5B (never 0.000818B)."""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(n)
