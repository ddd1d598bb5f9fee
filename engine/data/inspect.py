"""The inspection report of a dataset, shared by `tunebench inspect` and the workbench's dataset pane.

`report(spec, ...)` validates every row the way a run would and, given a tokenizer, measures what the
model will see: token lengths, truncation at max_length, trained-token share, whether targets end with
the end-of-turn token, and one example rendered with its trained tokens marked. Without a tokenizer it
reports what the text alone tells (lengths in characters, with a token estimate of characters / 4).
Light at import; the tokenizer side imports transformers only through the tokenizer it is given.
"""
from __future__ import annotations

from collections import Counter

from engine.config import Config

CHARS_PER_TOKEN = 4  # the rough rule for English BPE text; only used, and labelled, when no tokenizer is given
LIST_INVALID = 200  # invalid rows listed in the report (all are counted)
SAMPLE = 10_000  # rows whose tokens are measured when no --sample is given (every row is still validated)


def _cfg(spec, method: str, fmt: str, max_length: int, columns, eval_spec=None, **data) -> Config:
    return Config(method=method).replace(data=dict(train=spec, eval=eval_spec, format=fmt, max_length=max_length,
                                                   columns=columns or [], **data))


def stats(values: list[int], max_length: int | None = None, bins: int = 12) -> dict | None:
    """min, median, p95, max, mean and a histogram (`bins` equal-width bins over [min, max])."""
    if not values:
        return None
    v = sorted(values)
    pick = lambda q: v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))]  # noqa: E731 - nearest-rank percentile
    lo, hi = v[0], v[-1]
    width = max(1, -(-(hi - lo + 1) // bins))
    counts = Counter((x - lo) // width for x in v)
    edges = [lo + i * width for i in range(bins + 1)]
    out = {"min": lo, "median": pick(0.5), "p95": pick(0.95), "max": hi, "mean": round(sum(v) / len(v), 1),
           "histogram": {"edges": edges, "counts": [counts.get(i, 0) for i in range(bins)]}}
    return out


def _segments(tok, ids: list[int], mask: list[int], max_length: int) -> list[dict]:
    """The example as runs of text, each marked trained or not (and truncated when past max_length)."""
    out, start = [], 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or mask[i] != mask[start] or i == max_length:
            out.append({"text": tok.decode(ids[start:i]), "trained": bool(mask[start]), "truncated": start >= max_length})
            start = i
    return out


def _plain_example(row: dict) -> str:
    if "messages" in row:
        return "\n".join(f"<{m['role']}> {m.get('content') or ''}" for m in row["messages"])
    parts = []
    for key in ("prompt", "text", "text_pair", "completion", "chosen", "rejected", "label"):
        if key in row:
            val = row[key]
            if isinstance(val, list):
                val = "\n".join(f"<{m['role']}> {m.get('content') or ''}" for m in val)
            parts.append(f"[{key}] {val}")
    return "\n".join(parts)


def _text_length(row: dict) -> int:
    def size(v):
        if isinstance(v, str):
            return len(v)
        if isinstance(v, list):
            return sum(len(m.get("content") or "") for m in v if isinstance(m, dict))
        return 0
    keys = ("messages", "text", "text_pair", "prompt", "completion", "chosen")
    return sum(size(row[k]) for k in keys if k in row)


def report(spec, method: str = "sft", fmt: str = "auto", max_length: int = 1024, tokenizer=None, columns=None,
           sample: int | None = None, seed: int = 0, loss_on: str = "completion", cfg: Config | None = None,
           progress=None) -> dict:
    """The whole inspection as one JSON-able dict (keys: see README, `tunebench inspect`).

    Every row is validated in one streaming pass (engine.data.check: bounded memory, every core); tokens are
    measured on a seeded sample of `sample` rows (SAMPLE when not given; every row when there are no more);
    `cfg` gives a full config instead (its data section and method are used).
    """
    from engine.data.check import check

    cfg = cfg or _cfg(spec, method, fmt, max_length, columns)
    method, max_length, k = cfg.method, cfg.data.max_length, sample or SAMPLE
    checked = check(cfg, progress=progress, sample=k, raise_invalid=False)
    info, log = checked.info, checked.log
    out = {"source": str(cfg.data.train), "format": info["format"], "method": method,
           "rows": info["source_rows"], "valid_rows": checked.valid, "max_length": max_length, "tokenizer": None,
           "warnings": []}
    if "labels" in info:
        names = info["labels"]
        counts = Counter()
        for p in checked.passes:
            for value, n in p.labels.items():  # an integer that is no label name is an index, as encode_labels reads it
                named = isinstance(value, int) and str(value) not in names and 0 <= value < len(names)
                counts[names[value] if named else str(value)] += n
        out["labels"], out["label_counts"] = names, dict(counts)
    measured = checked.sample(k)
    if checked.valid > len(measured):
        out["sampled_rows"] = len(measured)
    problems: list = []
    if tokenizer is None:
        chars = [_text_length(row) for _, row in measured]
        est = [max(1, c // CHARS_PER_TOKEN) for c in chars]
        out.update(char_lengths=stats(chars), token_lengths=stats(est), token_lengths_estimated=True,
                   truncated_fraction=_frac(sum(t > max_length for t in est), len(est)),
                   trained_token_fraction=None, ends_with_eot_fraction=None, template=None)
        if measured:
            out["example"] = {"location": measured[0][0], "text": _plain_example(measured[0][1]), "segments": None}
        out["warnings"].append(f"no --model: lengths are estimated as characters / {CHARS_PER_TOKEN}; give --model "
                               "DIR for token counts, the chat template and the trained tokens")
    else:
        out.update(_token_report(tokenizer, cfg, measured, problems))
    out["valid_rows"] = checked.valid - len(problems)
    by = Counter(log.counts)
    by.update(p.kind for p in problems)
    out["invalid_count"] = sum(by.values())
    out["invalid_by_reason"] = dict(by)
    out["invalid"] = [p.as_dict() for p in (log.kept + problems)[:LIST_INVALID]]
    return out


def _frac(n: int, d: int) -> float | None:
    return round(n / d, 4) if d else None


def _token_report(tok, cfg: Config, pairs: list, problems: list) -> dict:
    from engine.data.prepare import Problem
    from engine.data import seq2seq
    from engine.data.tokens import Measurer, too_long_detail

    d, method = cfg.data, cfg.method
    max_length = d.max_length
    m = Measurer(tok, method, max_length, d.loss_on, d.truncation, d.min_completion_tokens)
    results = m.measure_many([row for _, row in pairs])
    ok = []
    cut = {"policy": d.truncation, "max_length": max_length, "rows_cut": 0, "rows_dropped": 0, "tokens_cut": 0,
           "measured_rows": len(pairs)}
    for (loc, _), r in zip(pairs, results):
        if "error" in r:
            problems.append(Problem(loc, "chat template error", r["error"]))
        elif r["cut"] == "refused" and method not in ("grpo", "rloo", "classification"):
            why = (seq2seq.too_long_detail if method == "seq2seq" else too_long_detail)(r["prompt_length"], max_length)
            problems.append(Problem(loc, "too long", why))
        else:
            ok.append(r)
            if r["cut"] in ("cut", "dropped") and method not in ("grpo", "rloo", "classification"):
                cut["rows_" + r["cut"]] += 1
                cut["tokens_cut"] += r["tokens_cut"]
    lengths = [r["length"] for r in ok]
    target_rows = [r for r in ok if r["has_target"]]
    ends = [r["ends_eot"] for r in target_rows if r["ends_eot"] is not None]
    total_in = sum(min(n, max_length) for n in lengths)
    uses_template = any("messages" in row or isinstance(row.get("prompt"), list) for _, row in pairs[:50])
    plan = m.plan if uses_template else None
    out = {"tokenizer": getattr(tok, "name_or_path", None), "token_lengths": stats(lengths),
           "token_lengths_estimated": False,
           "truncated_fraction": _frac(sum(n > max_length for n in lengths), len(lengths)),
           "trained_token_fraction": _frac(sum(r["trained"] for r in ok), total_in) if target_rows else None,
           "ends_with_eot_fraction": _frac(sum(ends), len(ends)) if target_rows else None,
           "template": {k: plan[k] for k in ("mode", "stop_token_trained", "note")} if plan else None,
           "truncation": cut}
    warnings = []
    if plan and plan["note"]:
        warnings.append(plan["note"])
    if out["ends_with_eot_fraction"] is not None and out["ends_with_eot_fraction"] < 1:
        warnings.append(f"{1 - out['ends_with_eot_fraction']:.0%} of the targets do not end with an end-of-turn "
                        "token: the model may not learn to stop")
    if out["truncated_fraction"]:
        what = {"prompt_left": "cut (the prompt loses its oldest tokens first)", "right": "cut at the end",
                "drop": "dropped", "refuse": "cut at the end"}[d.truncation]
        warnings.append(f"{out['truncated_fraction']:.1%} of the rows are longer than max_length {max_length} "
                        f"and will be {what} (data.truncation {d.truncation})")
    out["warnings"] = warnings
    good = next(((loc, row) for (loc, row), r in zip(pairs, results) if "error" not in r), None)
    if good:
        enc = m.encode(good[1])
        segments = _segments(tok, enc["ids"], enc["mask"], max_length)
        if method == "seq2seq":  # two sequences, each as data.truncation leaves it: what the encoder and decoder get
            e = seq2seq.encode_rows(tok, [good[1]], max_length, d.truncation)[0]
            segments = _segments(tok, e.input_ids, [0] * len(e.input_ids), len(e.input_ids) + 1) + \
                _segments(tok, e.labels, [1] * len(e.labels), len(e.labels) + 1)
        out["example"] = {"location": good[0], "text": tok.decode(enc["ids"]), "segments": segments}
    return out


def load_tokenizer(model_dir: str, trust_remote_code: bool = False):
    """The model's tokenizer (heavy: imports transformers); a pad token is not needed to measure."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    tok.model_max_length = 1 << 60  # measuring long rows is the point: no "sequence longer than" warning per row
    return tok


segments = _segments  # public names: the workbench's helper ops render rows with these
plain_example = _plain_example


def fitting_methods(spec, fmt: str = "auto", columns=None, split: str | None = None,
                    subset: str | None = None) -> tuple[str, list[str]]:
    """(the data's format, the methods it fits, in METHODS order) from its first rows: what `inspect` reports
    when no --method is given, instead of refusing data that does not fit sft."""
    from engine.config import METHODS
    from engine.data import stream
    from engine.data.convert import ACCEPTS
    from engine.data.errors import DataError, Row
    from engine.data.formats import KIND, detect, parse_columns, remap

    if fmt == "auto":
        rows = stream.head(stream.plan(spec, split, subset))
        if not rows:
            raise DataError(f"{spec}: no rows")
        mapping = parse_columns(columns)
        if mapping:
            rows = [Row(remap(r.data, mapping), r.location) if r.data is not None else r for r in rows]
        try:
            fmt = detect(rows)
        except DataError:  # two columns such as document/summary: only seq2seq reads them as prompt_completion
            return detect(rows, "seq2seq"), ["seq2seq"]
    kind = KIND[fmt]
    return fmt, [m for m in METHODS if kind in ACCEPTS[m]]
