"""`tunebench inspect DATA [--model DIR] [--method M] [--format F] [--max-length N] [--json]`: the data report.

Every row is validated the way a run would; with --model the report adds token counts, truncation, the
trained-token share, end-of-turn checks and one example rendered with its trained tokens marked.
Exit status 0 when the report is made (1 with --strict when rows are invalid), 2 when the data cannot be read.
"""
from __future__ import annotations

import json
import sys

from engine.config import METHODS, SCHEMA


def add_parser(sub):
    p = sub.add_parser("inspect", help="validate a dataset and report what the model will see")
    p.add_argument("data", nargs="+", help="data file(s), a glob, a save_to_disk directory or a hub dataset id")
    p.add_argument("--model", metavar="DIR", help="model (directory or hub id) whose tokenizer and chat template to use")
    p.add_argument("--method", choices=METHODS, help="the training method the data is for (default: the first the "
                   "detected format fits: sft for chat, completion and text data, dpo for preference pairs, ...)")
    p.add_argument("--format", default="auto", choices=SCHEMA["data"]["format"].choices,
                   help="the row format (default: detected from the columns)")
    p.add_argument("--max-length", type=int, default=SCHEMA["data"]["max_length"].default, metavar="N",
                   help="sequence length in tokens the run would use (default %(default)s)")
    p.add_argument("--columns", metavar="NAME=COL,...", help="column mapping, e.g. text=sentence,label=polarity")
    p.add_argument("--split", help="split of a hub dataset or DatasetDict directory")
    p.add_argument("--subset", help="subset (configuration) of a hub dataset")
    p.add_argument("--loss-on", default="completion", choices=("completion", "all"), help="which tokens train")
    p.add_argument("--truncation", default=SCHEMA["data"]["truncation"].default,
                   choices=SCHEMA["data"]["truncation"].choices, help="what happens to rows longer than --max-length "
                                                                     "(default %(default)s; see data.truncation)")
    p.add_argument("--min-completion-tokens", type=int, default=SCHEMA["data"]["min_completion_tokens"].default,
                   metavar="N", help="prompt_left: answer tokens a cut row keeps at least (default %(default)s)")
    p.add_argument("--sample", type=int, metavar="N", help="measure tokens on a seeded sample of N rows (default "
                                                           "10000; all rows are still validated)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--strict", action="store_true", help="exit 1 when any row is invalid")
    p.add_argument("--trust-remote-code", action="store_true", help="allow the model's own tokenizer code")
    p.add_argument("--chat-template", default="auto", metavar="T",
                   help="with --model: the data.chat_template to render with (auto, chatml, llama3, ..., "
                        "from:DIR or a Jinja file)")
    p.set_defaults(func=run)


def run(args) -> int:
    from engine.data import inspect as insp

    spec = args.data[0] if len(args.data) == 1 else list(args.data)
    fits = None
    if args.method is None:  # report on the data as it is; refuse only a --method the data does not fit
        fmt, fits = insp.fitting_methods(spec, args.format, args.columns, args.split, args.subset)
        args.method = fits[0] if fits else "sft"
    cfg = insp._cfg(spec, args.method, args.format, args.max_length, args.columns, split=args.split,
                    subset=args.subset, loss_on=args.loss_on, truncation=args.truncation,
                    min_completion_tokens=args.min_completion_tokens)
    tok = None
    if args.model:
        tok = insp.load_tokenizer(args.model, args.trust_remote_code)
        from engine.data import chat_templates, templates

        try:
            templates.apply(tok, chat_templates.resolve(args.chat_template))
        except chat_templates.TemplateError as e:
            print(f"tunebench inspect: {e}", file=sys.stderr)
            return 2
    live = sys.stderr.isatty() and not args.json

    def progress(**p):
        if live and not p.get("final"):
            total = f" of ~{p['rows_total']:,}" if p.get("rows_total") else ""
            print(f"\rreading {p['pass']} rows: {p['rows_done']:,}{total}, {p['invalid']:,} invalid   ", end="",
                  file=sys.stderr, flush=True)

    try:
        rep = insp.report(spec, tokenizer=tok, sample=args.sample, loss_on=args.loss_on, cfg=cfg, progress=progress)
    finally:
        if live:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
    from engine.data import mixture

    if mixture.is_mixture(cfg.data):
        from engine.data.check import mixture_check  # each source on its own: rows, the share each epoch draws

        rep["mixture"] = mixture_check(cfg)["mixture"]
    if fits is not None:
        rep["fits_methods"] = fits
        rep.setdefault("warnings", []).insert(0, f"{rep.get('format', fmt)} data fits method(s) {', '.join(fits)}; "
                                                 f"reported for {args.method} (--method chooses)")
    if args.json:
        json.dump(rep, sys.stdout, ensure_ascii=False, default=str)
        sys.stdout.write("\n")
    else:
        print_report(rep)
    return 1 if args.strict and rep["invalid_count"] else 0


def print_mixture(c, mix: dict) -> None:
    c.print(f"mixture: {mix['epoch_rows']:,} rows an epoch, order {mix['order']}"
            + (f" for {mix['curriculum_epochs']} epoch(s)" if mix["order"] != "shuffle" and mix["curriculum_epochs"] else ""))
    for src, fmt in zip(mix["sources"], mix.get("formats") or [None] * len(mix["sources"])):
        c.print(f"  {src['path']}: weight {src['weight']:g}{' (general)' if src['general'] else ''}, {src['rows']:,} rows"
                f", {src['drawn']:,} drawn an epoch ({src['share']:.0%})" + (f", format {fmt}" if fmt else ""),
                markup=False)


def _fmt_stats(s: dict | None, unit: str) -> str:
    if not s:
        return "n/a"
    return f"min {s['min']}, median {s['median']}, p95 {s['p95']}, max {s['max']} {unit}"


def print_report(rep: dict) -> None:
    from rich.console import Console
    from rich.text import Text

    c = Console(highlight=False, soft_wrap=True)  # soft wrap: no newlines inserted into paths and text
    est = " (estimated: characters / 4)" if rep.get("token_lengths_estimated") else ""
    c.print(f"[bold]{rep['source']}[/]: format {rep['format']} for method {rep['method']}")
    c.print(f"rows: {rep['rows']} ({rep['valid_rows']} valid, {rep['invalid_count']} invalid)"
            + (f"; tokens measured on a sample of {rep['sampled_rows']}" if rep.get("sampled_rows") else ""))
    if rep.get("labels"):
        counts = rep.get("label_counts", {})
        c.print("labels: " + ", ".join(f"{i}={name} ({counts.get(name, 0)})" for i, name in enumerate(rep["labels"])))
    if rep.get("mixture"):
        print_mixture(c, rep["mixture"])
    c.print(f"token lengths{est}: {_fmt_stats(rep['token_lengths'], 'tokens')}")
    h = (rep.get("token_lengths") or {}).get("histogram")
    if h and sum(h["counts"]):
        peak = max(h["counts"])
        bins = list(zip(h["edges"], h["edges"][1:], h["counts"]))
        i = 0
        while i < len(bins):
            lo, hi, n = bins[i]
            if not n:  # a run of empty bins is one line: the gap, not a column of zeros
                while i + 1 < len(bins) and not bins[i + 1][2]:
                    i += 1
                hi = bins[i][1]
            c.print(f"  {lo:>7}-{hi - 1:<7} {'#' * max(1 if n else 0, round(30 * n / peak)):<30} {n or 'none'}")
            i += 1
    if rep.get("truncated_fraction") is not None:
        c.print(f"longer than max_length {rep['max_length']}: {rep['truncated_fraction']:.1%}")
    t = rep.get("truncation")
    if t and (t["rows_cut"] or t["rows_dropped"]):
        of = f" of the {t['measured_rows']:,} measured" if rep.get("sampled_rows") else ""
        c.print(f"data.truncation {t['policy']}: {t['rows_cut']:,} row(s){of} cut, {t['rows_dropped']:,} dropped, "
                f"{t['tokens_cut']:,} tokens cut")
    if rep.get("trained_token_fraction") is not None:
        c.print(f"tokens that train: {rep['trained_token_fraction']:.1%}")
    if rep.get("ends_with_eot_fraction") is not None:
        c.print(f"targets ending with the end-of-turn token: {rep['ends_with_eot_fraction']:.1%}")
    if rep.get("template"):
        t = rep["template"]
        c.print(f"chat template: {t['mode']} (end-of-turn token trained: {t['stop_token_trained']})")
    if rep["invalid_count"]:
        c.print(f"[bold red]{rep['invalid_count']} invalid row(s):[/]")
        for kind, n in rep["invalid_by_reason"].items():
            c.print(f"  {kind}: {n}")
            for p in [p for p in rep["invalid"] if p["kind"] == kind][:3]:
                c.print(f"    {p['location']}: {p['reason']}", markup=False)
    for w in rep.get("warnings", []):
        c.print(f"[yellow]warning:[/] {w}")
    ex = rep.get("example")
    if ex:
        marked = " (trained tokens in green, between ⟦ ⟧ when not on a terminal)" if ex.get("segments") else ""
        c.print(f"\n[bold]example[/] {ex['location']}{marked}:", markup=True)
        if ex.get("segments"):
            text = Text()
            plain = not c.is_terminal
            cut = False
            for s in ex["segments"]:
                if s["truncated"] and not cut:
                    cut = True
                    text.append(f"\n--- cut at max_length {rep['max_length']}: the model never sees what follows ---\n",
                                style="bold red")
                body = f"⟦{s['text']}⟧" if plain and s["trained"] and not s["truncated"] else s["text"]
                text.append(body, style="dim" if s["truncated"] else ("bold green" if s["trained"] else ""))
            c.print(text)
        else:
            c.print(ex["text"], markup=False)
