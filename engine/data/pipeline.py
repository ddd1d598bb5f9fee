"""sft data prepared for the trainer: one parallel pass that validates, converts, tokenises and truncates every
row and writes Arrow files into the cache (engine.data.cache); a resume or a later run with the same key reads
them back at once.

Takes the tokenizer the engine loaded (forked workers share it). The pass is engine.data.scan's with a
TokenSink: rows are tokenised by engine.data.encode (as TRL's SFTTrainer would) and cut by data.truncation,
then written in batches to one Arrow stream file per shard ({input_ids, labels}, int32), so memory stays flat
whatever the row count. Row problems are counted and kept as engine.data.check counts them; the shapes and
row hashes each shard records let the odd-shaped rows, the held-out eval rows and the train/eval duplicates be
decided after the pass, over train and eval together, without reading the rows again.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import shutil
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from engine.config import Config
from engine.data import cache, mixture, stream
from engine.data.encode import SFTEncoder, Unusable, too_long_detail, truncate
from engine.data.errors import DataError, Problem, ProblemLog
from engine.data.prepare import _shape, data_options, held_indices
from engine.data.scan import KEEP, Pass, Sink, odd_shapes, one_pass, procs_for, shape_log

VERSION = 1  # of the prepared layout and its tokenisation: a change here makes every old entry a miss
BATCH = 1000  # rows per Arrow record batch


def row_hash(row: dict) -> int:
    """The identity of a method row (prepare.overlap's test for an eval row that is also a train row); the
    normaliser writes keys in one order, so the JSON needs no sorting (~4 us a row instead of ~7)."""
    return int.from_bytes(hashlib.blake2b(json.dumps(row, default=str).encode(), digest_size=8).digest(), "little")


class TokenSink(Sink):
    """Tokenises and truncates each row of a shard and writes it to the shard's Arrow file."""

    def __init__(self, job, index):
        super().__init__(job, index)
        x = job.extra
        self.enc, self.max_length, self.policy = x["encoder"], x["max_length"], x["policy"]
        self.min_completion, self.bos = x["min_completion"], x["bos"]
        self.order_column = x.get("order_column")
        self.keys = array("d")
        self.raw = None
        self.name = f"{job.name}-{index:05d}"
        self.dir = Path(x["dir"])
        self.ids: list = []
        self.labels: list = []
        self.codes, self.hashes = array("B"), array("Q")
        self.shape_codes: dict = {}
        self.trunc = Counter()
        self.writer = self.sink_file = None
        self.tokens = 0

    def add(self, location: str, row: dict) -> Problem | None:
        try:
            enc = self.enc.encode(row)
        except Unusable as e:
            return Problem(location, e.kind, e.detail)
        except Exception as e:  # noqa: BLE001 - a template that refuses this row: reported with the row
            return Problem(location, "chat template error", " ".join(f"{type(e).__name__}: {e}".split())[:300])
        cut = truncate(enc["input_ids"], enc["labels"], self.max_length, self.policy, self.min_completion, self.bos)
        if cut.verdict == "refused":
            return Problem(location, "too long", too_long_detail(cut.prompt_tokens, self.max_length))
        if cut.verdict != "kept":
            self.trunc["rows_" + cut.verdict] += 1
            self.trunc["tokens_cut"] += cut.tokens_cut
        if cut.verdict == "dropped":
            return None
        if self.order_column:
            value = (self.raw or {}).get(self.order_column)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                try:
                    value = float(value)
                except (TypeError, ValueError):
                    return Problem(location, "no order value", f"data.order column:{self.order_column}: "
                                   f"{value!r} is not a number (every row needs one)")
            self.keys.append(float(value))
        super().add(location, row)
        shape = _shape(row)
        self.codes.append(self.shape_codes.setdefault(shape, len(self.shape_codes)))
        self.hashes.append(row_hash(row))
        self.ids.append(cut.input_ids)
        self.labels.append(cut.labels)
        self.tokens += len(cut.input_ids)
        if len(self.ids) >= BATCH:
            self._flush()
        return None

    def _flush(self) -> None:
        import pyarrow as pa

        if not self.ids:
            return
        ints = pa.list_(pa.int32())
        if self.writer is None:
            schema = pa.schema([("input_ids", ints), ("labels", ints)])
            self.sink_file = pa.OSFile(str(self.dir / f"{self.name}.arrow"), "wb")
            self.writer = pa.ipc.new_stream(self.sink_file, schema)
        self.writer.write_batch(pa.record_batch([pa.array(self.ids, ints), pa.array(self.labels, ints)],
                                                names=["input_ids", "labels"]))
        self.ids, self.labels = [], []

    def finish(self) -> dict:
        self._flush()
        files = []
        if self.writer is not None:
            self.writer.close()
            self.sink_file.close()
            arrow = self.dir / f"{self.name}.arrow"
            files.append({"name": arrow.name, "bytes": arrow.stat().st_size, "rows": self.rows})
            sides = [("codes", self.codes), ("hashes", self.hashes)] + ([("keys", self.keys)] if self.order_column else [])
            for kind, values in sides:
                side = self.dir / f"{self.name}.{kind}"
                side.write_bytes(values.tobytes())
                files.append({"name": side.name, "bytes": side.stat().st_size})
        out = super().finish()
        out.update(name=self.name, files=files, shape_codes=[[list(map(list, s)), c] for s, c in self.shape_codes.items()],
                   trunc=dict(self.trunc), tokens=self.tokens, sample=[], first=None)
        return out


def tokenizer_fingerprint(tok) -> str:
    """The tokenizer's whole content (vocabulary, merges, normaliser, special tokens) and chat template."""
    h = hashlib.sha256()
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):
        h.update(backend.to_str().encode())
    else:
        h.update(json.dumps(sorted(tok.get_vocab().items())).encode())
    h.update(json.dumps({"class": type(tok).__name__, "template": tok.chat_template, "special": tok.special_tokens_map,
                         "init": {k: v for k, v in tok.init_kwargs.items() if k.startswith(("add_", "clean_"))}},
                        sort_keys=True, default=str).encode())
    return h.hexdigest()


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("transformers", "tokenizers", "trl", "pyarrow"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


@dataclass
class Part:
    """One prepared spec (train or eval): its entry directory and what the pass recorded."""

    name: str
    dir: Path
    meta: dict
    cached: bool
    key: str = ""  # its cache key (scores of its rows are cached under it: engine.training.scoring); "" uncached

    def shards(self) -> list[dict]:
        return self.meta["shards"]

    def as_pass(self) -> Pass:
        """The recorded pass in the shape engine.data.scan merges (shapes keyed by their tuples again)."""
        shapes, first = Counter(), {}
        for s in self.shards():
            for shape, n in s["shapes"]:
                shapes[_tuple(shape)] += n
            for shape, locs in s["shape_first"]:
                first.setdefault(_tuple(shape), []).extend(locs)
        return Pass(self.meta["format"], self.meta["source_rows"], sum(s["rows"] for s in self.shards()),
                    ProblemLog.from_json(self.meta["problems"], KEEP), shapes, first, Counter(), [])


def _tuple(shape) -> tuple:
    return tuple(tuple(x) for x in shape)


@dataclass
class Prepared:
    """What the trainer reads: Arrow files per split and, when rows were set aside, the indices to keep."""

    train_files: list[str]
    eval_files: list[str]
    train_index: list[int] | None
    eval_index: list[int] | None
    info: dict
    held: list[Path] = field(default_factory=list)  # uncached builds, removed when the process ends
    sampling: dict | None = None  # the mixture / curriculum sampler's plan (mixture.plan); None: the trainer's own
    train_keys: list[str] = field(default_factory=list)  # the train parts' cache keys, in train_files' order


def _key_doc(cfg: Config, d: dict, ident: list, fingerprint: str, fmt: str | None) -> dict:
    return {"version": VERSION, "data": ident, "method": cfg.method, "format": fmt or d["format"],
            "columns": d.get("columns"), "train_on_chosen": d.get("train_on_chosen"), "max_length": d["max_length"],
            "truncation": d["truncation"], "min_completion_tokens": d["min_completion_tokens"],
            "loss_on": d["loss_on"], "tokenizer": fingerprint, "versions": _versions(),
            **({"order_column": _order_column(d)} if _order_column(d) else {})}


def _order_column(d: dict) -> str | None:
    kind, name = mixture.parse_order(d.get("order") or "shuffle")
    return name if kind == "column" else None


def _build(name: str, spec, cfg: Config, d: dict, tok, encoder, fingerprint: str, procs: int, fmt, progress,
           should_stop) -> Part:
    """One spec from the cache, or prepared now (and kept in the cache when data.cache is on)."""
    ident = stream.identity(spec, d.get("split"), d.get("subset"))
    key = cache.make_key(_key_doc(cfg, d, ident, fingerprint, fmt))
    use_cache = cfg.data.cache and ident is not None  # a hub id's rows can change under the same name
    if use_cache:
        entry, found = cache.lookup(key)
        if entry is not None:
            return Part(name, entry, found, True, key)
        if found and progress:
            progress(phase="cache", note=f"the cached {name} data was damaged ({found}); preparing it again")
    tmp = cache.staging(key)
    t0 = time.monotonic()
    report = (lambda **kw: progress(phase="prepare", **{"pass": name, **kw})) if progress else None
    try:
        p = one_pass(name, spec, d, cfg.method, procs, fmt=fmt, sink=TokenSink, progress=report,
                     should_stop=should_stop,
                     extra={"encoder": encoder, "max_length": d["max_length"], "policy": d["truncation"],
                            "min_completion": d["min_completion_tokens"], "bos": tok.bos_token_id, "dir": str(tmp),
                            "order_column": _order_column(d)})
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shards = [{k: part[k] for k in ("name", "files", "rows", "trunc", "tokens", "shape_codes")} |
              {"shapes": [[list(map(list, s)), n] for s, n in part["shapes"].items()],
               "shape_first": [[list(map(list, s)), locs] for s, locs in part["shape_first"].items()]}
              for part in p.parts]
    meta = {"format": p.fmt, "source_rows": p.source_rows, "problems": p.log.as_json(), "shards": shards,
            "files": [f for s in shards for f in s["files"]], "seconds": round(time.monotonic() - t0, 2),
            "spec": str(spec)}
    if use_cache:
        final = cache.publish(tmp, key, meta)
        if final != tmp:
            return Part(name, final, cache.lookup(key)[1] or meta, False, key)
    else:
        cache.write_meta(tmp, meta)
    atexit.register(shutil.rmtree, tmp, True)  # not kept: the files live as long as this process reads them
    return Part(name, tmp, meta, False, key if use_cache else "")  # no key: a hub id's rows may change


def _selection(part: Part, main: tuple | None) -> tuple[list[str], list[int] | None, "array"]:
    """The part's Arrow files, the indices of its rows of the main shape (None: every row) and their hashes."""
    files, index, hashes, _ = _select(part, main)
    return files, index, hashes


def _select(part: Part, main: tuple | None):
    """_selection's answer and the kept rows' order keys (data.order column:NAME; None without)."""
    import numpy as np

    files, keep, hashes, keys, offset, odd = [], [], [], [], 0, False
    for s in part.shards():
        if not s["rows"]:
            continue
        files.append(str(part.dir / f"{s['name']}.arrow"))
        codes = np.fromfile(part.dir / f"{s['name']}.codes", dtype=np.uint8)
        h = np.fromfile(part.dir / f"{s['name']}.hashes", dtype=np.uint64)
        want = next((c for shape, c in s["shape_codes"] if _tuple(shape) == main), None)
        ok = codes == want if main is not None else np.ones(len(codes), bool)
        odd = odd or not ok.all()
        keep.append(np.nonzero(ok)[0] + offset)
        hashes.append(h[ok])
        side = part.dir / f"{s['name']}.keys"
        if side.exists():
            keys.append(np.fromfile(side, dtype=np.float64)[ok])
        offset += s["rows"]
    index = np.concatenate(keep) if keep else np.zeros(0, np.int64)
    return (files, (index.tolist() if odd else None), (np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)),
            (np.concatenate(keys) if keys else None))


def prepare_sft(cfg: Config, tok, progress=None, should_stop=None) -> Prepared:
    """The tokenised train and eval data of an sft config, from the cache or prepared now.

    Raises InvalidRows (unless data.skip_invalid) or DataError as prepare() does. progress(**fields) receives
    {"phase": "prepare", "pass", "rows_done", "rows_total", "rows_per_s", "invalid", "elapsed_s"} while rows
    are read and tokenised. info: prepare()'s keys plus truncation (rows cut, dropped, tokens cut), cache
    (hit per split) and tokens (in the kept rows, and how many train).
    """
    import numpy as np

    d, t0 = data_options(cfg), time.monotonic()
    if d["truncation"] not in ("prompt_left", "right", "drop", "refuse"):
        raise DataError(f"data.truncation: {d['truncation']!r} is not a policy")
    value = cfg.data.chat_template
    encoder = SFTEncoder(tok, d["loss_on"], name="the tokenizer's chat template" if value == "auto"
                         else f"data.chat_template {value}")
    encoder.plan  # computed once here, before workers fork: each shares it  # noqa: B018
    fingerprint = tokenizer_fingerprint(tok)
    procs = procs_for(cfg.data.num_proc)
    fmt = None if d.get("format", "auto") == "auto" else d["format"]
    mix = mixture.sources(d) if mixture.is_mixture(d) else None
    specs = [("train", d["train"], fmt)] if mix is None else \
        [("general" if s.general else "train" if not i else f"train {i + 1}", s.path, None if s.general else fmt)
         for i, s in enumerate(mix)]
    parts = [_build(name, spec, cfg, d, tok, encoder, fingerprint, procs, f, progress, should_stop)
             for name, spec, f in specs]
    n_src = len(parts)
    if d.get("eval"):
        ev_fmt = parts[0].meta["format"] if fmt else None
        parts.append(_build("eval", d["eval"], cfg, d, tok, encoder, fingerprint, procs, ev_fmt, progress, should_stop))
    passes = [p.as_pass() for p in parts]
    log = ProblemLog(KEEP)
    for p in passes:
        log.merge(p.log)
    # odd shapes: the first source and eval make one table; each other source is judged on its own (its rows
    # are tokens by now: a plain-text general source beside chat task data is no odd shape)
    mains: dict = {}
    for group in [[0] + list(range(n_src, len(parts)))] + [[i] for i in range(1, n_src)]:
        main, odd = odd_shapes([passes[i] for i in group])
        log.merge(shape_log(main, odd))
        mains.update({i: main for i in group})
    source_rows = sum(p.source_rows for p in passes)
    if log and not d.get("skip_invalid"):
        raise log.error(source_rows)
    sel = [_select(parts[i], mains[i]) for i in range(n_src)]
    train_files = [f for s in sel for f in s[0]]
    positions, src, offset = [], [], 0
    for i, (_, index, h, _) in enumerate(sel):
        total = sum(s["rows"] for s in parts[i].shards())
        positions.append(np.arange(total) + offset if index is None else np.asarray(index, np.int64) + offset)
        src.append(np.full(len(h), i))
        offset += total
    odd_rows = any(s[1] is not None for s in sel)
    train_index = np.concatenate(positions).tolist() if odd_rows else None
    train_hash = np.concatenate([s[2] for s in sel])
    src = np.concatenate(src)
    keys = np.concatenate([s[3] for s in sel]) if all(s[3] is not None for s in sel) else None
    eval_files, eval_index, eval_hash = _selection(parts[n_src], mains[n_src]) if len(parts) > n_src else ([], None, None)
    n_train = len(train_hash)
    if not n_train:
        raise DataError(f"{d['train']}: no usable training row" + (f"\n{log.error(source_rows)}" if log else ""))
    if not d.get("eval") and (d.get("eval_fraction") or 0) > 0:
        general = np.array([bool(mix and mix[i].general) for i in range(n_src)])
        task = np.nonzero(~general[src])[0]  # eval rows come from the task data, never the general share
        held = held_indices(len(task), d["eval_fraction"], cfg.training.seed)
        base = np.asarray(train_index if train_index is not None else range(n_train))
        mask = np.zeros(n_train, bool)
        mask[task[sorted(held)]] = True
        eval_files, eval_index, eval_hash = train_files, base[mask].tolist(), train_hash[mask]
        train_index, train_hash, src = base[~mask].tolist(), train_hash[~mask], src[~mask]
        keys = keys[~mask] if keys is not None else None
    sampling = mixture.plan(d, mix, src, keys, n_src, cfg.training.seed)
    info = {"format": passes[0].fmt, "method": cfg.method, "source_rows": source_rows, "train_rows": len(train_hash),
            "eval_rows": 0 if eval_hash is None else len(eval_hash), "warnings": [],
            "truncation": _truncation(d, parts), "cache": {p.name: p.cached for p in parts},
            "prepare_s": round(time.monotonic() - t0, 2), "tokens": sum(s["tokens"] for p in parts for s in p.shards())}
    if sampling:
        info.update(sampling["describe"])
    if (d.get("general_mix") or 0) > 0 and not d.get("general_mix_data"):
        info["warnings"].append("data.general_mix draws from data.general_eval's file: the forgetting watch's general "
                                "loss is then on rows the run trains on (set data.general_mix_data to keep it held out)")
    if log:
        info["dropped"] = log.dropped()
        info["warnings"].append(f"data.skip_invalid: dropped {len(log)} invalid row(s): "
                                + ", ".join(f"{k} {n}" for k, n in info["dropped"]["by_reason"].items()))
    t = info["truncation"]
    if t["rows_dropped"]:
        info["warnings"].append(f"data.truncation {d['truncation']}: dropped {t['rows_dropped']} row(s) longer than "
                                f"data.max_length {d['max_length']}")
    shared = int(np.isin(eval_hash, train_hash).sum()) if eval_hash is not None and len(eval_hash) else 0
    if shared:
        where = "data.eval" if d.get("eval") else "data.eval_fraction"
        info["warnings"].append(f"{where}: {shared} of {len(eval_hash)} eval rows also appear in train (duplicates); "
                                "the eval loss will look better than it is")
    return Prepared(train_files, eval_files, train_index, eval_index, info, sampling=sampling,
                    train_keys=[parts[i].key for i in range(n_src)])


def _truncation(d: dict, parts: list[Part]) -> dict:
    """Rows the policy touched (cut or dropped) and the tokens it cut, train and eval together."""
    total = Counter()
    for p in parts:
        for s in p.shards():
            total.update(s["trunc"])
    return {"policy": d["truncation"], "max_length": d["max_length"], "rows_cut": total["rows_cut"],
            "rows_dropped": total["rows_dropped"], "tokens_cut": total["tokens_cut"]}
