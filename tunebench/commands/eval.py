"""`tunebench eval MODEL_REF --tasks T [T ...]`: benchmarks through lm-evaluation-harness, the checkpoint beside
its base model; `tunebench eval RUN` without --tasks asks a live run to evaluate now (a control file).

MODEL_REF is what compare takes: a checkpoint directory, a run id (its final model), RUN@STEP, a base model
directory or a hub id. A task is a JSONL (a custom multiple-choice task when rows have `choices` and `answer`,
else a generation task scored by exact match), an lm-eval task YAML, or an lm-eval task name whose data is in
the datasets cache. Nothing is downloaded unless --allow-download: a task whose data is not here fails at once
with what it needs. The result prints as a table (or one JSON object with --json), is saved under
runs_dir/benchmarks/, and becomes a `benchmark` event of the run when MODEL_REF is a run's checkpoint.
"""
from __future__ import annotations

import json
import os
import sys

from tunebench.errors import CliError


def add_parser(sub):
    p = sub.add_parser("eval", help="benchmark a checkpoint and its base (--tasks), or evaluate a live run now")
    p.add_argument("model", metavar="MODEL_REF", help="a checkpoint dir, a run id (its final model), RUN@STEP, a base "
                   "model dir or hub id; without --tasks: a live run to evaluate now")
    p.add_argument("--tasks", nargs="+", metavar="TASK", help="JSONL files (multiple-choice or generation), lm-eval "
                   "task YAMLs, or lm-eval task names (comma-separated or several)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="at most N examples per task")
    p.add_argument("--num-fewshot", type=int, default=None, metavar="K", help="few-shot examples (default: the task's)")
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="examples per forward pass (default 8)")
    p.add_argument("--max-new-tokens", type=int, default=32, metavar="N",
                   help="longest answer of a JSONL generation task (default 32)")
    p.add_argument("--chat", action="store_true", help="wrap each prompt in the model's chat template")
    p.add_argument("--no-base", action="store_true", help="skip the base model")
    p.add_argument("--allow-download", action="store_true", help="let lm-eval fetch hub data sets (default: offline)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where to load the models; auto = the GPU when one is visible and not held by a run")
    p.add_argument("--seed", type=int, default=0, help="seed of few-shot sampling and generation (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    if not args.tasks:
        from tunebench.commands.runs import cmd_control

        args.run, args.control = args.model, "eval"
        return cmd_control(args)
    for name, v in (("--limit", args.limit), ("--batch-size", args.batch_size), ("--max-new-tokens", args.max_new_tokens)):
        if v is not None and v < 1:
            raise CliError(f"eval: {name} must be at least 1, not {v}")
    if args.num_fewshot is not None and args.num_fewshot < 0:
        raise CliError(f"eval: --num-fewshot must be 0 or more, not {args.num_fewshot}")
    import importlib.util

    if importlib.util.find_spec("lm_eval") is None:
        raise CliError("eval: lm-evaluation-harness is not installed: pip install 'tunebench[eval]' (or lm-eval)")
    if not args.allow_download:  # before any ML import: the hub libraries read these once, at import
        os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    from engine.checkpoints.bench_results import record
    from engine.checkpoints.benchmark import BenchmarkError, resolve_tasks, run_benchmark, scratch_dir
    from engine.checkpoints.refs import resolve_ref
    from engine.rundir.runs import runs_dir_from
    from tunebench.commands.compare import pick_device

    items = [t for arg in args.tasks for t in arg.split(",") if t]
    ref = resolve_ref(args.model)
    work = scratch_dir()
    phase = (lambda text: None) if args.json else (lambda text: print(f"· {text}", file=sys.stderr))
    try:
        specs = resolve_tasks(items, work, args.max_new_tokens)
        device = pick_device(args.device, ref, ref)
        result = run_benchmark(ref, specs, device=device, with_base=not args.no_base, batch_size=args.batch_size,
                               limit=args.limit, num_fewshot=args.num_fewshot, chat=args.chat,
                               offline=not args.allow_download, seed=args.seed, on_phase=phase)
    except BenchmarkError as e:
        raise CliError(f"eval: {e}") from None
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    where = record(result, runs_dir_from(None), ref.run if ref.kind == "checkpoint" else None)
    result["recorded"] = where
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    print_table(result)
    note = f"benchmark event added to run {ref.run.id}" if where["event"] else f"no run event: {where['why_no_event']}"
    print(f"saved {where['report']}; {note}", file=sys.stderr)
    return 0


def print_table(result: dict) -> None:
    """task, metric, base, model and the difference, one row per metric."""
    from rich.console import Console
    from rich.table import Table

    base = result.get("base")
    table = Table(title=f"{result['model']['label']}" + (f" vs {base}" if base else ""))
    for col in ("task", "metric", "n") + (("base",) if base else ()) + ("model",) + (("Δ",) if base else ()):
        table.add_column(col, justify="left" if col in ("task", "metric") else "right")
    for task, t in result["tasks"].items():
        for name, v in t["metrics"].items():
            row = [task, name, str(t.get("samples") or "-")]
            if base:
                b = v.get("base")
                row.append("-" if b is None else f"{b:.4f}")
            row.append(f"{v['model']:.4f}")
            if base:
                row.append("-" if v.get("base") is None else f"{v['model'] - v['base']:+.4f}")
            table.add_row(*row)
    Console().print(table)
