"""Data mixing and data.order for the methods whose rows stay in memory (dpo, kto, reward, classification,
grpo/rloo): each source read and converted on its own, then one table, and the sampler's plan.

Light (numpy only when called). sft prepares its sources as tokens (engine.data.pipeline); these methods hand
rows to their trainer as one table, so every source's rows must share a shape (engine.data.mixture.format_clash,
refused naming the sources and their formats). The semantics are sft's: the epoch, the shares, the held-out
eval rows (from the task sources only) and the order are engine.data.mixture's, a pure function of (seed,
epoch). Keys of data.order column:NAME come from the source rows (a number in every row, else the row is
invalid); length keys are counted by the method from the rows its trainer tokenised (engine.training.sampling).
"""
from __future__ import annotations

from engine.config import Config
from engine.data import mixture
from engine.data.errors import DataError, Problem


def applies(cfg: Config) -> bool:
    return cfg.method != "sft" and (mixture.is_mixture(cfg.data) or (cfg.data.order or "shuffle") != "shuffle")


def _order_value(raw, column: str):
    """A row's data.order column value as a float, or a Problem naming the row."""
    value = (raw.data or {}).get(column) if raw.data is not None else None
    if not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    return Problem(raw.location, "no order value",
                   f"data.order column:{column}: {value!r} is not a number (every row needs one)")


def prepare_pairs(cfg: Config, tokenizer=None):
    """engine.data.prepare.prepare_pairs over a mixture's sources: ([(location, row)], [(location, row)], info,
    problems); info["sampling"] holds the sampler's plan (engine.data.mixture.plan) for the train rows in order."""
    import numpy as np

    from engine.data import prepare as prep
    from engine.data.sources import load

    d, method = prep.data_options(cfg), cfg.method
    mix = mixture.sources(d) if mixture.is_mixture(d) else None
    srcs = mix or [mixture.Source(d["train"], 1.0)]
    kind, column = mixture.parse_order(d.get("order") or "shuffle")
    column = column if kind == "column" else None
    fmt = None if d.get("format", "auto") == "auto" else d["format"]
    train, src, keys, problems, fmts, n_raw = [], [], [], [], [], 0
    for i, s in enumerate(srcs):
        opts = {**d, "format": "auto", "columns": []} if s.general else d
        label = "data.general_mix's general data" if s.general else f"data.train source {i + 1}"
        try:
            raw = load(s.path, split=d.get("split"), subset=d.get("subset"))
            pairs, bad, f, n = prep.pairs_of(raw, opts, method, None if s.general else fmt)
        except DataError as e:
            raise DataError(f"{label} ({s.path}): {e}") from None
        if column:
            value = {r.location: _order_value(r, column) for r in raw}
            bad += [v for v in value.values() if isinstance(v, Problem)]
            pairs = [(loc, row) for loc, row in pairs if not isinstance(value[loc], Problem)]
            keys += [value[loc] for loc, _ in pairs]
        train += pairs
        src += [i] * len(pairs)
        problems += bad
        fmts.append(f)
        n_raw += n
    shapes = []
    for i in range(len(srcs)):
        seen = prep.Counter(prep._shape(row) for (_, row), j in zip(train, src) if j == i)
        shapes.append(seen.most_common(1)[0][0] if seen else ())
    labels = [f"{'general data' if s.general else f'source {i + 1}'} {s.path}" for i, s in enumerate(srcs)]
    clash = mixture.format_clash(method, labels, fmts, shapes)
    if clash:
        raise DataError(f"data.train: {clash}")
    evals = []
    if d.get("eval"):
        evals, bad, _, n = prep.load_pairs(d["eval"], d, method, fmt=fmts[0] if fmt else None)
        problems += bad
        n_raw += n
    info: dict = {"format": fmts[0], "method": method, "source_rows": n_raw}
    _, shape_bad = prep.shape_problems(train + evals)  # one table: every row of the main shape
    problems += shape_bad
    drop = {p.location for p in shape_bad}
    if method == "classification":
        info["labels"] = names = prep.label_names(train, d.get("labels") or [])
        evals, bad = prep.encode_labels(evals, names)
        problems += bad
        for i, pair in enumerate(train):  # one by one: a refused label drops its row, the rest keep their place
            encoded, bad = prep.encode_labels([pair], names)
            train[i] = encoded[0] if encoded else None
            problems += bad
    keep = [i for i, p in enumerate(train) if p is not None and p[0] not in drop]
    evals = [p for p in evals if p[0] not in drop]
    if tokenizer is not None:
        from engine.data.tokens import apply_truncation

        kept, too_long, info["truncation"] = apply_truncation(
            [train[i] for i in keep] + evals, tokenizer, d["max_length"], method, d.get("loss_on", "completion"),
            d.get("truncation", "refuse"), d.get("min_completion_tokens", 1))
        problems += too_long
        alive = {id(row) for _, row in kept}
        keep = [i for i in keep if id(train[i][1]) in alive]
        evals = [p for p in evals if id(p[1]) in alive]
    rows = [train[i] for i in keep]
    src = np.asarray(src, np.int64)[keep] if keep else np.zeros(0, np.int64)
    order_keys = np.asarray(keys, np.float64)[keep] if column else None
    if not d.get("eval") and d.get("eval_fraction", 0) > 0:
        general = np.array([bool(mix and s.general) for s in srcs])
        task = np.nonzero(~general[src])[0]  # eval rows come from the task data, never the general share
        strata = [rows[j][1]["label"] for j in task] if method == "classification" else None
        held = prep.held_indices(len(task), d["eval_fraction"], cfg.training.seed, strata)
        mask = np.zeros(len(rows), bool)
        mask[task[sorted(held)]] = True
        evals = [rows[j] for j in np.nonzero(mask)[0]]
        rows = [rows[j] for j in np.nonzero(~mask)[0]]
        src = src[~mask]
        order_keys = order_keys[~mask] if order_keys is not None else None
    if rows:
        info["sampling"] = mixture.plan(d, mix, src, order_keys, len(srcs), cfg.training.seed)
        info.update(info["sampling"]["describe"])
        if mix:
            info["mixture"]["formats"] = fmts
    return rows, evals, info, problems

