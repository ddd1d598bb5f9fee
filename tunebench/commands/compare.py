"""`tunebench compare A B [--prompts FILE] [--max-new-tokens N] [--seed S] [--json]`: two models, same prompts.

A and B are checkpoint directories, run ids (their final model; RUN@STEP for one checkpoint) or base
model directories. Without --json it prints each prompt's two answers with the words that differ
marked, then eval loss and perplexity of both; with --json one object {prompts, metrics, models}.
"""
from __future__ import annotations

import json
import sys

from tunebench.errors import CliError


def add_sampling_args(p) -> None:
    """The decoding options compare and chat share."""
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (with --sample)")
    p.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling mass (with --sample)")
    p.add_argument("--top-k", type=int, default=0, help="keep the k likeliest tokens (0 = off; with --sample)")
    p.add_argument("--repetition-penalty", type=float, default=1.0, help="penalise repeated tokens (1 = off)")


def add_parser(sub):
    p = sub.add_parser("compare", help="compare two checkpoints (or a checkpoint and its base) on the same prompts")
    p.add_argument("a", help="model A: a checkpoint dir, a run id (its final model), RUN@STEP, or a base model dir")
    p.add_argument("b", help="model B, the same kinds as A")
    p.add_argument("--prompts", metavar="FILE", help="prompts: .txt (one a line) or JSONL/JSON/CSV rows "
                   "(messages, prompt, instruction or text); default: the eval split of A's run")
    p.add_argument("--limit", type=int, default=8, metavar="N", help="at most N prompts (default 8)")
    p.add_argument("--max-new-tokens", type=int, default=128, metavar="N", help="tokens to generate per answer")
    p.add_argument("--seed", type=int, default=0, help="sampling seed, the same for A and B (default 0)")
    add_sampling_args(p)
    p.add_argument("--eval", metavar="FILE", help="eval data for loss/perplexity (default: the run's eval split)")
    p.add_argument("--max-eval", type=int, default=200, metavar="N", help="score at most N eval rows (default 200)")
    p.add_argument("--no-metrics", action="store_true", help="skip eval loss and perplexity")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where to load the models; auto = the GPU when one is visible and not held by a run")
    p.add_argument("--json", action="store_true", help="print one JSON object: prompts, metrics, models")
    p.set_defaults(func=run)


def pick_device(choice: str, a, b) -> str:
    """auto: the GPU unless a training run holds it with too little free memory, then the CPU (and say so)."""
    if choice != "auto":
        return choice
    from engine.checkpoints.refs import busy_runs, device_advice, weights_bytes
    from engine.system.telemetry import Nvml

    advice = device_advice(Nvml().devices(), weights_bytes(a) + weights_bytes(b), busy_runs())
    if advice["ask"]:
        print(f"tunebench: {advice['message']}; comparing on the CPU (pass --device cuda to go ahead anyway)",
              file=sys.stderr)
        return "cpu"
    return advice["device"]


def run(args) -> int:
    import warnings

    from engine.checkpoints.compare import run_comparison
    from engine.checkpoints.display import word_diff
    from engine.checkpoints.prompts import read_prompts, run_split
    from engine.checkpoints.refs import resolve_ref
    from engine.checkpoints.settings import Decoding

    warnings.filterwarnings("ignore", category=FutureWarning)  # library deprecation notes are not the user's business
    dec = Decoding(max_new_tokens=args.max_new_tokens, sample=args.sample, temperature=args.temperature,
                   top_p=args.top_p, top_k=args.top_k, repetition_penalty=args.repetition_penalty, seed=args.seed)
    problems = dec.problems() + ([f"--limit: {args.limit} must be at least 1"] if args.limit < 1 else [])
    if problems:
        raise CliError("compare: " + "; ".join(problems))
    a, b = resolve_ref(args.a), resolve_ref(args.b)
    prompts = read_prompts(args.prompts)[: args.limit] if args.prompts else None
    eval_rows, source = run_split(a, args.eval) if args.eval else (None, "")
    if prompts is None and a.method not in ("classification", "reward"):
        from engine.checkpoints.prompts import default_prompts

        prompts = default_prompts(a, b, args.limit)[0]
    device = pick_device(args.device, a, b)
    quiet = args.json
    phase = (lambda text: None) if quiet else (lambda text: print(f"· {text}", file=sys.stderr))
    on_row = None
    if not args.json:
        from rich.console import Console

        console = Console()
        console.print(f"A: {a.label}\nB: {b.label}\n")
        refs = [p.get("reference") for p in prompts or []]
        on_row = lambda i, row: print_row(console, i, row, word_diff, refs[i] if i < len(refs) else None)  # noqa: E731
    result = run_comparison(a, b, prompts, dec, device=device, eval_rows=eval_rows, eval_source=source,
                            max_eval=args.max_eval, metrics=not args.no_metrics, on_phase=phase, on_row=on_row)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    print_metrics(console, result)
    return 0


def print_row(console, i: int, row: dict, word_diff, reference: str | None = None) -> None:
    """One prompt with both answers, the words that differ in bold and underlined."""
    from rich.text import Text

    from engine.checkpoints.display import printable

    console.print(Text(f"[{i + 1}] {printable(row['prompt'])}", style="bold"))
    sa, sb = word_diff(printable(row["a"]), printable(row["b"]))
    for name, segs in (("A", sa), ("B", sb)):
        line = Text(f"  {name}: ")
        for seg, differs in segs:
            line.append(seg, style="bold underline" if differs else "")
        console.print(line)
    if row["a"] == row["b"]:
        console.print(Text("  (identical)", style="dim"))
    if reference:  # scored against it once every prompt is answered (the table after the last prompt)
        console.print(Text(f"  reference: {printable(reference)}", style="dim"))


def print_metrics(console, result: dict) -> None:
    """Eval loss, perplexity (or accuracy and F1) and generation speed of both, as a table."""
    from rich.table import Table

    m = result["metrics"]
    if m.get("eval"):
        console.print(f"metrics on {m['eval']}")
    table = Table()
    table.add_column("metric")
    table.add_column("A", justify="right")
    table.add_column("B", justify="right")
    for key in ("eval_loss", "perplexity", "accuracy", "macro_f1", "gen_tokens_per_s"):
        va, vb = m.get("a", {}).get(key), m.get("b", {}).get(key)
        if va is not None or vb is not None:
            table.add_row(key, "N/A" if va is None else f"{va:.4f}", "N/A" if vb is None else f"{vb:.4f}")
    console.print(table)
    print_task_metrics(console, result)
    console.print(f"decoding: {'sampled' if m['decoding']['sample'] else 'greedy'}, seed {m['decoding']['seed']}, "
                  f"on {m['device']}" + (", one base model shared by A and B" if m.get("shared_base") else ""))


def print_task_metrics(console, result: dict) -> None:
    """Both answers scored against the prompts' references, and each checkpoint's own eval metrics at its step
    (from its run's eval events), as one table: the step each side's figures come from heads its column."""
    from rich.table import Table

    from engine.rundir.evalkeys import fmt_metric

    answers = result["metrics"].get("answers")
    runs = {side: (result["models"][side].get("run_eval") or {}) for side in ("a", "b")}
    if not answers and not any(runs.values()):
        return
    table = Table()
    table.add_column("task metric")
    for side in ("a", "b"):
        step = runs[side].get("step")
        table.add_column(side.upper() + (f" (run eval @ {step})" if step is not None else ""), justify="right")
    if answers:
        for k in answers["metrics"]:
            table.add_row(f"{k} vs reference ({answers['rows']} prompts)",
                          fmt_metric(k, answers["a"].get(k)), fmt_metric(k, answers["b"].get(k)))
    keys = list(dict.fromkeys(k for side in ("a", "b") for k in runs[side] if k != "step"))
    for k in keys:
        va, vb = runs["a"].get(k), runs["b"].get(k)
        table.add_row(f"{k} at the run's eval", "-" if va is None else fmt_metric(k, va),
                      "-" if vb is None else fmt_metric(k, vb))
    console.print(table)
    if answers:
        console.print(f"answers scored with {', '.join(answers['metrics'])} ({answers['chosen_by']})")
