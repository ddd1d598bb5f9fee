"""`tunebench estimate CONFIG [--set K=V]... [--gpu NAME] [--free-gib N] [--json]`: will it fit, how long.

Reads only the model's config.json (no weights, no torch): memory parts in bytes, the verdict against the
free memory of the chosen GPU (or all of a named one that is not here), step time and time to the end.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

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


def texts(row) -> list[str]:
    """Every string in a prepared row (messages' contents, prompt, completion, text...)."""
    if isinstance(row, str):
        return [row]
    if isinstance(row, dict):
        return [t for v in row.values() for t in texts(v)]
    if isinstance(row, list):
        return [t for v in row for t in texts(v)]
    return []


def look_at_data(cfg: cfgmod.Config, sample: int = 256) -> tuple[int | None, float | None, str | None]:
    """(train rows, mean tokens a row, note): rows for the time to the end; tokens from the model's
    tokenizer.json through the `tokenizers` library (no torch), chat template left out, capped at max_length."""
    if not cfg.data.train:
        return None, None, None
    try:
        from engine.data.prepare import prepare

        train, _, info = prepare(cfg.replace(data={"skip_invalid": True}))
    except Exception as e:  # noqa: BLE001 - data only refines the time; the memory estimate stands
        return None, None, f"data not read ({type(e).__name__}: {e}); tokens a row taken as data.max_length"
    per_row = None
    tok_file = Path(cfg.model.name_or_path) / "tokenizer.json"
    if tok_file.is_file() and train:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(tok_file))
        step = max(1, len(train) // sample)
        lengths = [len(tok.encode(" ".join(texts(r))).ids) for r in train[::step]]
        per_row = sum(min(n, cfg.data.max_length) for n in lengths) / len(lengths)
    return info["train_rows"], per_row, None


def run(args) -> int:
    from engine.planning.estimate import EstimateError
    from engine.planning.verdict import for_target, target, verdict

    cfg = cfgmod.load_config(args.config, args.overrides)
    try:
        gpu, free, where = target(cfg, args.gpu)
    except ValueError as e:
        raise CliError(f"{'--gpu' if args.gpu else 'hardware.gpu'}: {e}") from None
    if args.free_gib is not None:
        free = int(args.free_gib * GIB)
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
    print(f"{cfg.model.name_or_path}: {est['model_type']}, {est['total_params'] / 1e9:.3g}B parameters, "
          f"{est['kind']}, {est['trainable_params'] / 1e6:.3g}M trainable")
    print(f"on {where}: {est['precision']}, weights {est['dtype']}, {est['optimizer']}, gradient checkpointing "
          f"{'on' if est['gradient_checkpointing'] else 'off'}, {est['tokens_per_step']:.0f} tokens a step "
          f"({est['seq_len']:.0f} a row{', from the data' if per_row else ': data.max_length, an upper bound'})")
    for part in PARTS:
        print(f"  {part[:-6]:<12} {est[part] / GIB:9.2f} GiB")
    print(f"  {'peak':<12} {est['peak_bytes'] / GIB:9.2f} GiB   (torch allocated {est['peak_allocated_bytes'] / GIB:.2f} GiB)")
    print(v["message"])
    if est["step_seconds"]:
        eff = est["efficiency"]
        basis = (f"{eff['runs']} measured run(s)" if eff["source"] == "measured" else "a typical MFU, no run measured yet")
        line = f"step ~{est['step_seconds']:.3g} s ({basis}"
        line += f", MFU {eff['mfu']:.0%})" if eff.get("mfu") else ")"
        if est["total_seconds"]:
            line += f"; {est['steps']} steps ~{fmt_duration(est['total_seconds'])}"
        print(line)
    else:
        print("step time: unknown until a run on this device has been measured (or name a GPU)")
    for n in est["notes"]:
        print(f"note: {n}", file=sys.stderr)
    return 0


def fmt_duration(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"
