"""Helper-process ops for the Checkpoints pane: compare two models with streamed tokens, export a checkpoint.

Imported by the helper process (engine/helper.py OP_MODULES). A comparison loads its models, streams
every token as a data message, and unloads them when it ends, is cancelled or fails: a helper kept for
the session holds no model between comparisons. One comparison at a time (the lock): two would double
the memory, and the second would only slow the first.
"""
from __future__ import annotations

import threading

from engine.helper.server import OpError, op

_ONE = threading.Lock()


def _refs(args: dict):
    from engine.checkpoints.refs import resolve_ref

    try:
        return resolve_ref(args["a"], args.get("runs_dir")), resolve_ref(args["b"], args.get("runs_dir"))
    except LookupError as e:
        raise OpError(str(e.args[0])) from None


@op("compare")
def _compare(args, emit):
    """args: a, b (refs), runs_dir, prompts (list of {messages}|{text}) or prompts_file, decoding {..},
    device, metrics, max_eval, limit. Streams {event: phase|prompts|token|row}; returns {prompts, metrics, models}."""
    from engine.checkpoints.compare import run_comparison
    from engine.checkpoints.prompts import default_prompts, read_prompts
    from engine.checkpoints.settings import Decoding
    from engine.data.errors import DataError

    a, b = _refs(args)
    dec = Decoding(**(args.get("decoding") or {}))
    if dec.problems():
        raise OpError("; ".join(dec.problems()))
    try:
        prompts = args.get("prompts") or (read_prompts(args["prompts_file"]) if args.get("prompts_file") else None)
    except DataError as e:
        raise OpError(str(e)) from None
    if prompts is not None and args.get("limit"):
        prompts = prompts[: int(args["limit"])]
    if not _ONE.acquire(timeout=0.5):
        raise OpError("a comparison is already running; wait for it or cancel it")
    try:
        def on_token(i, side, text, full):
            emit(event="token", i=i, side=side, text=text, **({"full": True} if full else {}))

        try:
            if prompts is None and not ({a.method, b.method} & {"classification", "reward"}):
                prompts, source = default_prompts(a, b, int(args.get("limit") or 8))
                emit(event="phase", text=f"prompts: {source}")
            emit(event="prompts", prompts=prompts or [])
            return run_comparison(a, b, prompts, dec, device=args.get("device", "cpu"),
                                  metrics=args.get("metrics", True), max_eval=int(args.get("max_eval", 200)),
                                  on_token=on_token, on_phase=lambda text: emit(event="phase", text=text),
                                  on_row=lambda i, row: emit(event="row", i=i, row=row))
        except DataError as e:
            raise OpError(str(e)) from None
    finally:
        _ONE.release()


@op("export")
def _export(args, emit):
    """args: ref, out, format, quant, merge, dtype, verify, system, name, runs_dir. Streams {event: phase}; returns
    what was written, with `describe`: the lines the CLI prints."""
    from engine.checkpoints.display import describe_export
    from engine.checkpoints.export import export
    from engine.checkpoints.refs import resolve_ref

    try:
        ref = resolve_ref(args["ref"], args.get("runs_dir"))
    except LookupError as e:
        raise OpError(str(e.args[0])) from None
    try:
        info = export(ref, args["out"], merge=bool(args.get("merge")), dtype=args.get("dtype", "auto"),
                      on_phase=lambda text: emit(event="phase", text=text), fmt=args.get("format", "safetensors"),
                      quant=args.get("quant"), verify=args.get("verify", True), system=args.get("system"),
                      name=args.get("name"))
        return {**info, "describe": describe_export(ref.label, info)}
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        raise OpError(f"export: {e}") from None
