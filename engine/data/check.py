"""The whole-data check before a run exists: every row of train and eval read, validated and converted in one
streaming pass (engine.data.scan), no tokenizer; what `tunebench train` refuses and `inspect` reports.

Light module. It reaches the verdict engine.data.prepare.prepare(cfg) reaches on the same data (the same row
functions, the same odd-shape and label rules, the same counts), in bounded memory and on every core.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from engine.config import Config
from engine.data.errors import DataError, ProblemLog, summarize
from engine.data.prepare import _shape, conversational, data_options, label_names
from engine.data.scan import KEEP, Pass, held_count, odd_shapes, one_pass, procs_for, shape_log


@dataclass
class Checked:
    """What the check found: info (as prepare's: format, method, source_rows, train_rows, eval_rows, labels,
    dropped, warnings), every problem (counted; the first of each reason kept) and the passes' samples."""

    info: dict
    log: ProblemLog
    passes: list[Pass] = field(default_factory=list)
    valid: int = 0  # valid method rows, train and eval together
    main: tuple | None = None  # the shape most rows have (rows of another shape are invalid)

    def sample(self, k: int) -> list[tuple[str, dict]]:
        """Up to k valid rows: every one, in file order, when there are no more; else the shards' reservoir
        samples joined in proportion to their rows (seeded, so the same rows each time)."""
        pool = []
        for p in self.passes:
            for part in p.parts:
                rows = [(loc, row) for loc, row in part["sample"] if _shape(row) == self.main]
                pool.append((part["rows"], rows))
        total = sum(n for n, _ in pool)
        if total <= k:
            return [pair for _, rows in pool for pair in rows]
        quota = [k * n // total for n, _ in pool]  # largest remainders get the rows rounding left over
        for i in sorted(range(len(pool)), key=lambda i: -(k * pool[i][0] % total))[:k - sum(quota)]:
            quota[i] += 1
        return [pair for q, (_, rows) in zip(quota, pool) for pair in rows[:q]]

    @property
    def first(self):
        return next((p.first for p in self.passes if p.first), None)


def check(cfg: Config, progress=None, sample: int = 0, raise_invalid: bool = True, should_stop=None) -> Checked:
    """Validate every row of cfg.data for cfg.method; raises InvalidRows (unless data.skip_invalid or
    raise_invalid is off) or DataError when no training row is usable. progress(pass=, rows_done=, ...)."""
    d, method = data_options(cfg), cfg.method
    procs = procs_for(cfg.data.num_proc)
    names = list(d.get("labels") or [])

    def reporter(name):
        return (lambda **kw: progress(**{"pass": name, **kw})) if progress else None

    train = one_pass("train", d["train"], d, method, procs, progress=reporter("train"), should_stop=should_stop,
                     label_names=names, sample=sample, seed=cfg.training.seed)
    info: dict = {"format": train.fmt, "method": method, "source_rows": train.source_rows}
    if method == "classification":
        names = label_names([(None, {"label": v}) for v in train.labels], names)
        info["labels"] = names
    passes = [train]
    if d.get("eval"):
        fmt = train.fmt if d.get("format", "auto") != "auto" else None
        passes.append(one_pass("eval", d["eval"], d, method, procs, fmt=fmt, progress=reporter("eval"),
                               should_stop=should_stop, label_names=names if method == "classification" else [],
                               sample=sample, seed=cfg.training.seed))
        info["source_rows"] += passes[1].source_rows
    main, odd = odd_shapes(passes)
    log = ProblemLog(KEEP)
    for p in passes:
        log.merge(p.log)
    log.merge(shape_log(main, odd))
    n_train = train.rows - sum(train.shapes.get(s, 0) for s in odd)
    n_eval = sum(p.rows - sum(p.shapes.get(s, 0) for s in odd) for p in passes[1:])
    labels = Counter(train.labels) if method == "classification" else None
    held = held_count(n_train, d.get("eval_fraction", 0) or 0, labels) if not d.get("eval") else 0
    info.update(train_rows=n_train - held, eval_rows=n_eval + held, warnings=[], conversational=conversational(main),
                shape=[list(x) for x in main or ()])
    out = Checked(info, log, passes, n_train + n_eval, main)
    if log:
        info["dropped"] = log.dropped()
        info["warnings"].append(f"data.skip_invalid: dropped {len(log)} invalid row(s): "
                                + ", ".join(f"{k} {n}" for k, n in info["dropped"]["by_reason"].items()))
    if raise_invalid:
        check_verdict(out, d)
    return out


CHECK_VERSION = 3  # 2: info["conversational"]; 3: info["shape"], the main row shape (a mixture's sources are compared by it)
NOT_IN_CHECK = ("max_length", "truncation", "min_completion_tokens", "loss_on", "packing", "cache", "num_proc",
                "general_eval", "skip_invalid")  # keys the tokenizer-free check does not depend on


def cached_check(cfg: Config, progress=None) -> dict:
    """check(cfg) remembered in the user's cache (engine.data.cache) under the data files' identity and the
    keys the check reads: a second `tunebench train` on the same data answers at once. Returns the info;
    raises as check() does (the same verdict, from the remembered problems)."""
    from engine.data import cache, mixture, stream

    d = data_options(cfg)
    if mixture.is_mixture(d):
        return mixture_check(cfg, progress)
    idents = [stream.identity(d[k], d.get("split"), d.get("subset")) for k in ("train", "eval") if d.get(k)]
    key = None
    if cfg.data.cache and all(i is not None for i in idents):
        doc = {"check": CHECK_VERSION, "data": idents, "method": cfg.method, "seed": cfg.training.seed,
               "options": {k: v for k, v in d.items() if k not in NOT_IN_CHECK}}
        key = cache.make_key(doc)
        entry, meta = cache.lookup(key)
        if entry is not None:
            found = Checked(meta["info"], ProblemLog.from_json(meta["problems"], KEEP))
            return {**check_verdict(found, d), "checked_from_cache": True}
    out = check(cfg, progress, raise_invalid=False)
    if key is not None:
        tmp = cache.staging(key)
        cache.publish(tmp, key, {"info": out.info, "problems": out.log.as_json(), "files": []})
    return check_verdict(out, d)


def mixture_check(cfg: Config, progress=None) -> dict:
    """cached_check over each source of a mixture on its own (data.eval with the first): the rows of every source
    read and convert; info sums them and lists the sources. DataError names the source."""
    from engine.data import mixture

    d = data_options(cfg)
    srcs = mixture.sources(d)
    infos = []
    for i, s in enumerate(srcs):
        one = {"train": s.path, "general_mix": 0.0, "general_mix_data": None, "order": "shuffle"}
        if i:
            one.update(eval=None, eval_fraction=0.0)
        if s.general:
            one.update(format="auto", columns=[])
        try:
            infos.append(cached_check(cfg.replace(data=one), progress))
        except DataError as e:
            role = "data.general_mix's general data" if s.general else f"data.train source {i + 1}"
            raise DataError(f"{role} ({s.path}): {e}") from None
    labels = [f"{'general data' if s.general else f'source {i + 1}'} {s.path}" for i, s in enumerate(srcs)]
    clash = mixture.format_clash(cfg.method, labels, [x["format"] for x in infos], [x.get("shape") for x in infos])
    if clash:
        raise DataError(f"data.train: {clash}")
    info = dict(infos[0])
    info["source_rows"] = sum(x["source_rows"] for x in infos)
    info["train_rows"] = sum(x["train_rows"] for x in infos)
    info["warnings"] = [w for x in infos for w in x.get("warnings") or []]
    info["conversational"] = any(x.get("conversational") for x in infos)  # a template renders any source's
    sizes = [x["train_rows"] for x in infos]
    drawn = mixture.counts(sizes, srcs, d.get("general_mix") or 0)
    info["mixture"] = mixture.describe(srcs, sizes, drawn, d.get("order") or "shuffle", d.get("curriculum_epochs") or 0)
    info["mixture"]["formats"] = [x["format"] for x in infos]
    return info


def check_verdict(out: Checked, d: dict) -> dict:
    """Raise what check() raises for this outcome (InvalidRows, no usable row); else its info."""
    log, info = out.log, out.info
    if log and not d.get("skip_invalid"):
        raise log.error(info["source_rows"])
    if not info["train_rows"]:
        raise DataError(f"{d['train']}: no usable training row"
                        + (f"\n{summarize(log.kept, counts=log.counts)}" if log else ""))
    return info


def streamed_reader(progress=None):
    """engine.planning.preflight's `read` on this streaming, cached check: (None, None, info), no rows held, so
    the CLI's and the workbench's preflight stay in bounded memory on a file of any size."""
    return lambda cfg: (None, None, cached_check(cfg, progress))
