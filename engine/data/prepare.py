"""From the config's data section to train/eval rows in the method's shape, with a report of what was done.

Light module (no `datasets`/torch unless a hub id or a tokenizer is given). `prepare(cfg)` is the one entry
point for every method; invalid rows stop it with a summary (InvalidRows) unless data.skip_invalid is set,
in which case they are dropped and counted in info["dropped"]: nothing is dropped silently.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from collections import Counter

from engine.config import Config
from engine.data import convert, formats
from engine.data.errors import SHOW_PER_REASON, DataError, InvalidRows, Problem, Row, dropped_info, summarize  # noqa: F401
from engine.data.formats import Invalid
from engine.data.sources import load


def convert_row(r: Row, fmt: str, method: str, columns: dict) -> tuple[list[dict], Problem | None]:
    """One source row -> its method rows (kto unpairs one into two), or the problem that stops it."""
    if r.error:
        kind, _, detail = r.error.partition(": ")
        return [], Problem(r.location, kind, detail)
    try:
        ex = formats.normalize(formats.remap(r.data, columns), fmt, method)
        return convert.for_method(ex, fmt, method), None
    except Invalid as e:
        return [], Problem(r.location, e.kind, e.detail)


def collect(raw: list[Row], fmt: str, method: str, columns: dict) -> tuple[list[tuple[str, dict]], list[Problem]]:
    """Normalise and convert every row; returns ((location, method row) pairs, problems)."""
    out, problems = [], []
    for r in raw:
        rows, problem = convert_row(r, fmt, method, columns)
        if problem:
            problems.append(problem)
        out += [(r.location, row) for row in rows]
    return out, problems


SHAPE_KEYS = ("messages", "prompt", "completion", "chosen", "rejected", "text", "text_pair")


def _shape(row: dict) -> tuple:
    return tuple((k, "messages" if isinstance(row[k], list) else "string") for k in SHAPE_KEYS if k in row)


def conversational(shape: tuple | None) -> bool | None:
    """Whether rows of this shape are conversations (a message list anywhere), which a chat template renders; None
    when there is no row to say. info["conversational"] of the check and of prepare."""
    return None if shape is None else any(kind == "messages" for _, kind in shape)


def shape_detail(mine: tuple, main: tuple) -> str:
    said = ", ".join(f"{k} as {kind}" for k, kind in main)
    return f"this row has {', '.join(f'{k} as {kind}' for k, kind in mine)}; most rows have {said}"


def shape_problems(pairs: list[tuple[str, dict]]) -> tuple[list[tuple[str, dict]], list[Problem]]:
    """Rows whose shape differs from most rows (a string prompt among message-list prompts, a missing
    text_pair): one Arrow table, as the trainers build, cannot hold both."""
    if not pairs:
        return pairs, []
    shapes = Counter(_shape(row) for _, row in pairs)
    if len(shapes) == 1:
        return pairs, []
    main = shapes.most_common(1)[0][0]
    keep, problems = [], []
    for loc, row in pairs:
        if _shape(row) == main:
            keep.append((loc, row))
        else:
            problems.append(Problem(loc, "inconsistent shape", shape_detail(_shape(row), main)))
    return keep, problems


def label_names(pairs: list[tuple[str, dict]], given: list[str]) -> list[str]:
    """The label set in id order: data.labels when given, else the integers 0..max or the sorted names seen."""
    if given:
        return list(given)
    values = [row["label"] for _, row in pairs]
    if values and all(isinstance(v, int) for v in values):
        return [str(i) for i in range(max(values) + 1)] if min(values) >= 0 else sorted({str(v) for v in values})
    return sorted({str(v) for v in values})


def encode_labels(pairs: list[tuple[str, dict]], names: list[str]) -> tuple[list[tuple[str, dict]], list[Problem]]:
    """Labels -> integer ids in `names`; a label outside the set is a problem naming the row."""
    index = {n: i for i, n in enumerate(names)}
    numeric = all(n == str(i) for i, n in enumerate(names))
    out, problems = [], []
    for loc, row in pairs:
        v = row["label"]
        if isinstance(v, int) and (numeric or str(v) not in index):
            ok = 0 <= v < len(names)
            ident = v
        else:
            ident = index.get(str(v))
            ok = ident is not None
        if not ok:
            problems.append(Problem(loc, "label not in label set", f"label {v!r} is not one of {names[:20]}"))
            continue
        out.append((loc, {**row, "label": ident}))
    return out, problems


def split(rows: list, fraction: float, seed: int, strata=None) -> tuple[list, list]:
    """Hold out `fraction` of rows for eval by a seeded shuffle; `strata(row)` keeps each class's share."""
    if fraction <= 0:
        return rows, []
    held = held_indices(len(rows), fraction, seed, [strata(r) for r in rows] if strata else None)
    return [r for i, r in enumerate(rows) if i not in held], [rows[i] for i in sorted(held)]


def held_indices(n: int, fraction: float, seed: int, strata: list | None = None) -> set[int]:
    """The indices split() holds out of n rows (a seeded shuffle per stratum): the same rows every run."""
    groups: dict = {}
    for i in range(n):
        groups.setdefault(strata[i] if strata else 0, []).append(i)
    rng = random.Random(seed)
    held: set[int] = set()
    for key in sorted(groups, key=str):
        idx = groups[key]
        rng.shuffle(idx)
        held.update(idx[:round(len(idx) * fraction)])
    if not held and n:
        held = {rng.randrange(n)}
    return held


def _key(row: dict) -> str:
    return hashlib.blake2b(json.dumps(row, sort_keys=True, default=str).encode(), digest_size=12).hexdigest()


def overlap(train: list[dict], evals: list[dict]) -> int:
    """How many eval rows also appear, identical, in train (a leak that flatters the eval loss)."""
    seen = {_key(r) for r in train}
    return sum(_key(r) in seen for r in evals)


def load_pairs(spec, d: dict, method: str, fmt: str | None = None):
    """Read and convert one data spec; returns (pairs, problems, format, raw row count)."""
    return pairs_of(load(spec, split=d.get("split"), subset=d.get("subset")), d, method, fmt)


def pairs_of(raw: list[Row], d: dict, method: str, fmt: str | None = None):
    """load_pairs on rows already read (engine.data.mixrows keeps them for their data.order column)."""
    columns = formats.parse_columns(d.get("columns"))
    if fmt is None:
        fmt = d.get("format", "auto")
        if fmt == "auto":
            fmt = formats.detect([Row(formats.remap(r.data, columns), r.location) if r.data else r
                                  for r in raw[:400]], method)
    convert.check_fit(fmt, method, d.get("train_on_chosen", False))
    pairs, problems = collect(raw, fmt, method, columns)
    return pairs, problems, fmt, len(raw)


def data_options(cfg: Config) -> dict:
    """cfg.data as the options dict the loaders read, with the classification section's column names folded
    into `columns` and its label names as `labels`."""
    d = dataclasses.asdict(cfg.data)
    if cfg.method == "classification":
        c = cfg.classification
        columns = formats.parse_columns(d.get("columns"))
        if c.text_column not in (None, "", "auto"):
            columns.setdefault("text", c.text_column)
        if c.text_pair_column:
            columns.setdefault("text_pair", c.text_pair_column)
        if c.label_column not in (None, "", "label"):
            columns.setdefault("label", c.label_column)
        d["columns"] = [f"{k}={v}" for k, v in columns.items()]
        d["labels"] = c.labels or []
    return d


def prepare_pairs(cfg: Config, tokenizer=None):
    """Like prepare() but keeps each row's location: ([(location, row)], [(location, row)], info, problems)."""
    d, method = data_options(cfg), cfg.method
    train, problems, fmt, n_raw = load_pairs(d["train"], d, method)
    evals: list = []
    if d.get("eval"):
        evals, eval_problems, _, n_eval_raw = load_pairs(d["eval"], d, method, fmt=fmt if d.get("format", "auto") != "auto" else None)
        problems += eval_problems
        n_raw += n_eval_raw
    info: dict = {"format": fmt, "method": method, "source_rows": n_raw}
    _, shape_bad = shape_problems(train + evals)  # judged together: train and eval become one kind of table
    main = Counter(_shape(row) for _, row in train + evals).most_common(1)
    info["conversational"] = conversational(main[0][0] if main else None)
    if shape_bad:
        problems += shape_bad
        bad = {p.location for p in shape_bad}
        train = [p for p in train if p[0] not in bad]
        evals = [p for p in evals if p[0] not in bad]
    if method == "classification":
        names = label_names(train, d.get("labels") or [])
        train, p1 = encode_labels(train, names)
        evals, p2 = encode_labels(evals, names)
        problems += p1 + p2
        info["labels"] = names
    if tokenizer is not None:
        from engine.data.tokens import apply_truncation

        kept, too_long, info["truncation"] = apply_truncation(
            train + evals, tokenizer, d["max_length"], method, d.get("loss_on", "completion"),
            d.get("truncation", "refuse"), d.get("min_completion_tokens", 1))
        problems += too_long
        keep = {id(row) for _, row in kept}  # rows the policy dropped go too (counted in info["truncation"])
        train = [p for p in train if id(p[1]) in keep]
        evals = [p for p in evals if id(p[1]) in keep]
    if not d.get("eval") and d.get("eval_fraction", 0) > 0:
        strata = (lambda p: p[1]["label"]) if method == "classification" else None
        train, evals = split(train, d["eval_fraction"], cfg.training.seed, strata)
    return train, evals, info, problems


def prepare(cfg: Config, tokenizer=None, pairs=None) -> tuple[list[dict], list[dict], dict]:
    """Train rows, eval rows and info for cfg.method; raises InvalidRows unless data.skip_invalid.

    With a tokenizer, data.truncation is applied as the trainer will (engine.data.tokens.apply_truncation):
    under `refuse` a row whose prompt alone reaches data.max_length is invalid; under `drop` (or with nothing
    left to train) a row goes and is counted in info["truncation"]. info: format, method, train_rows,
    eval_rows, source_rows, labels (classification), dropped ({count, by_reason, first}), truncation and
    warnings (e.g. eval rows that also appear in train). The sft engine prepares its rows with
    engine.data.pipeline instead (tokenised, in parallel, cached); this is the in-memory path of the rest.
    `pairs`: prepare_pairs' stand-in (engine.data.mixrows.prepare_pairs for a mixture or data.order, whose info
    carries the sampler's plan as "sampling").
    """
    train, evals, info, problems = (pairs or prepare_pairs)(cfg, tokenizer)
    d = cfg.data
    if problems and not d.skip_invalid:
        raise InvalidRows(problems, info["source_rows"])
    if not train:
        raise DataError(f"{d.train}: no usable training row" + (f"\n{summarize(problems)}" if problems else ""))
    train_rows, eval_rows = [r for _, r in train], [r for _, r in evals]
    info.update(train_rows=len(train_rows), eval_rows=len(eval_rows), warnings=[])
    if problems:
        info["dropped"] = dropped_info(problems)
        info["warnings"].append(f"data.skip_invalid: dropped {len(problems)} invalid row(s): "
                                + ", ".join(f"{k} {n}" for k, n in info["dropped"]["by_reason"].items()))
    if info.get("truncation", {}).get("rows_dropped"):
        t = info["truncation"]
        info["warnings"].append(f"data.truncation {t['policy']}: dropped {t['rows_dropped']} row(s) longer than "
                                f"data.max_length {t['max_length']}")
    shared = overlap(train_rows, eval_rows) if eval_rows else 0
    if shared:
        where = "data.eval" if d.eval else "data.eval_fraction"
        info["warnings"].append(f"{where}: {shared} of {len(eval_rows)} eval rows also appear in train (duplicates); "
                                "the eval loss will look better than it is")
    return train_rows, eval_rows, info


def prepare_sft(cfg: Config, tokenizer=None) -> tuple[list[dict], list[dict], dict]:
    """The sft rows (kept for callers written before prepare() covered every method)."""
    return prepare(cfg.replace(method="sft"), tokenizer)
