"""Data mixing and curriculum: which rows an epoch draws from each source, and in what order.

Light (numpy only, imported where used). `data.train` is a mixture when an entry carries a weight — a
`{path, weight}` mapping or a `"path:weight"` string (validation turns mappings into such strings) — or when
`data.general_mix` draws a share of each epoch from general data. A plain list of paths stays what it always
was: the files concatenated, every row once an epoch.

The epoch: as many rows as the task sources hold together (after invalid rows and held-out eval rows go),
N. Each task source i draws round(N x w_i / sum w) rows (largest remainders share out the rounding, so the
counts are exact), down-sampled without replacement or up-sampled by whole copies plus a draw for the rest.
With data.general_mix g > 0 the general data adds rows on top, so that they are the share g of the epoch:
the epoch is round(N / (1 - g)) rows, the task sources keep their N.

The order: data.order shuffle (the default), length (shortest first), or column:NAME (the column's values
ascending) for the first data.curriculum_epochs epochs (0 = every epoch), shuffled after. Everything here
is a pure function of (seed, epoch): a resumed run draws and orders the same rows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from engine.config.sources import normalise_train, order_problem, parse_order, split_weight  # noqa: F401


@dataclass(frozen=True)
class Source:
    path: str
    weight: float
    general: bool = False

    @property
    def label(self) -> str:
        return f"{self.path} (general)" if self.general else self.path


def task_sources(train) -> list[Source]:
    """data.train's entries as weighted sources (weight 1 where none is given)."""
    entries = [train] if isinstance(train, str) else list(train or [])
    out = []
    for e in entries:
        path, w = split_weight(str(e))
        out.append(Source(path, 1.0 if w is None else w))
    return out


def weighted(train) -> bool:
    entries = [train] if isinstance(train, str) else list(train or [])
    return any(isinstance(e, dict) or (isinstance(e, str) and split_weight(e)[1] is not None) for e in entries)


def general_spec(d) -> str | None:
    """The file general_mix draws from: data.general_mix_data, else data.general_eval."""
    get = d.get if isinstance(d, dict) else lambda k: getattr(d, k)
    return get("general_mix_data") or get("general_eval")


def is_mixture(d) -> bool:
    """Whether cfg.data (or its options dict) mixes sources by weight or a general share."""
    get = d.get if isinstance(d, dict) else lambda k: getattr(d, k)
    return weighted(get("train")) or (get("general_mix") or 0) > 0


def sources(d) -> list[Source]:
    """Every source a mixture draws from: data.train's, then the general data when general_mix > 0."""
    get = d.get if isinstance(d, dict) else lambda k: getattr(d, k)
    out = task_sources(get("train"))
    g = get("general_mix") or 0
    if g > 0:
        out.append(Source(general_spec(d), g, general=True))
    return out


def plain_paths(train) -> object:
    """data.train with the weights taken off (every file once): what readers that concatenate take."""
    if isinstance(train, str):
        return split_weight(train)[0]
    return [split_weight(str(e))[0] for e in train or []]


def counts(sizes: list[int], srcs: list[Source], general_mix: float = 0.0) -> list[int]:
    """Rows each source gives one epoch (see the module's doc): exact, by largest remainders."""
    task = [i for i, s in enumerate(srcs) if not s.general]
    n_task = sum(sizes[i] for i in task)
    out = [0] * len(srcs)
    _share(out, task, [srcs[i].weight for i in task], n_task)
    gen = [i for i, s in enumerate(srcs) if s.general]
    if gen and general_mix > 0:
        n_gen = round(n_task / (1 - general_mix)) - n_task
        _share(out, gen, [1.0] * len(gen), n_gen)
    for i, n in enumerate(sizes):
        if not n:
            out[i] = 0
    return out


def _share(out: list[int], which: list[int], weights: list[float], total: int) -> None:
    if not which:
        return
    s = sum(weights)
    exact = [total * w / s for w in weights]
    base = [math.floor(x) for x in exact]
    left = total - sum(base)
    for j in sorted(range(len(which)), key=lambda j: base[j] - exact[j])[:left]:
        base[j] += 1
    for i, n in zip(which, base):
        out[i] = n


def epoch_indices(groups: list, per_source: list[int], seed: int, epoch: int, keys=None,
                  curriculum_epochs: int = 0):
    """The dataset positions epoch `epoch` trains on, in order: a pure function of its arguments.

    groups[i]: the positions of source i's rows; per_source[i]: rows it gives an epoch. keys (one number per
    position, or None): sort key of the curriculum, ascending, for epochs below curriculum_epochs (0: every
    epoch); ties keep the shuffled order. Else shuffled."""
    import numpy as np

    rng = np.random.default_rng([seed, epoch, 7919])
    drawn = []
    for g, n in zip(groups, per_source):
        g = np.asarray(g, dtype=np.int64)
        if not n or not len(g):
            continue
        full, rest = divmod(n, len(g))
        drawn += [g] * full
        if rest:
            drawn.append(rng.choice(g, rest, replace=False))
    idx = np.concatenate(drawn) if drawn else np.zeros(0, np.int64)
    rng.shuffle(idx)
    if keys is not None and (curriculum_epochs == 0 or epoch < curriculum_epochs):
        idx = idx[np.argsort(np.asarray(keys)[idx], kind="stable")]
    return idx


def ordered_now(order: str, curriculum_epochs: int, epoch: int) -> bool:
    return order != "shuffle" and (curriculum_epochs == 0 or epoch < curriculum_epochs)


def describe(srcs: list[Source], sizes: list[int], drawn: list[int], order: str, curriculum_epochs: int) -> dict:
    """The mixture and order as the run's `data` event and `inspect` record them."""
    total = sum(drawn) or 1
    return {"sources": [{"path": s.path, "weight": s.weight, "general": s.general, "rows": n, "drawn": k,
                         "share": round(k / total, 4)} for s, n, k in zip(srcs, sizes, drawn)],
            "epoch_rows": sum(drawn), "order": order, "curriculum_epochs": curriculum_epochs}


def plan(d: dict, mix, src, keys, n_src: int, seed: int) -> dict | None:
    """What the trainer's sampler needs (engine.training.sampling): the positions of each source's rows in the
    train dataset (src[i]: the source of row i), the rows each gives an epoch, the order and its keys (None:
    computed by the method from its tokenised rows). None for plain data in shuffled order (the trainer's own
    sampler)."""
    import numpy as np

    from engine.data.errors import DataError

    order = d.get("order") or "shuffle"
    if mix is None and order == "shuffle":
        return None
    srcs = mix or [Source(str(d["train"]), 1.0)]
    src = np.asarray(src)
    groups = [np.nonzero(src == i)[0] for i in range(n_src)]
    sizes = [len(g) for g in groups]
    for s, n in zip(srcs, sizes):
        if not n:
            raise DataError(f"{s.path}: no usable training row in this source of the mixture (data.train)")
    per_source = counts(sizes, srcs, d.get("general_mix") or 0)
    cur = d.get("curriculum_epochs") or 0
    return {"groups": groups, "per_source": per_source, "keys": keys, "order": order, "seed": seed,
            "curriculum_epochs": cur,
            "describe": {"order": order, "curriculum_epochs": cur,
                         **({"mixture": describe(srcs, sizes, per_source, order, cur)} if mix else {})}}


def shape_text(shape) -> str:
    """A row shape ((key, "string" | "messages"), ...) as words: "prompt, chosen, rejected as text"."""
    kinds: dict = {}
    for key, kind in shape:
        kinds.setdefault("conversations" if kind == "messages" else "text", []).append(key)
    return "; ".join(f"{', '.join(keys)} as {kind}" for kind, keys in kinds.items()) or "no columns"


def format_clash(method: str, labels: list[str], formats: list[str], shapes: list) -> str | None:
    """Why the sources of a mixture cannot make one table for `method` (None when they can).

    sft rows reach the trainer as tokens, so any formats mix there. The other methods hand their rows to the
    trainer as one table: every source's rows must have the same columns, each text or conversation alike."""
    if method == "sft":
        return None
    seen = {tuple(map(tuple, s)) for s in shapes if s}
    if len(seen) <= 1:
        return None
    listed = "; ".join(f"{label}: format {fmt} ({shape_text(s)})" for label, fmt, s in zip(labels, formats, shapes))
    return (f"the sources of the mixture do not share a format for method {method}, so their rows cannot make "
            f"one table: {listed}. Convert them to one format (all plain-text or all conversation prompts and "
            "answers), or train on them separately")
