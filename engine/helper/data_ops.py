"""Built-in helper ops: model checks, tokenising, rendering a row as the model sees it.

Imported by the helper process only (engine.helper.server.OP_MODULES); heavy imports stay inside ops.
"""
from __future__ import annotations

import threading

from engine.helper.server import OpError, cached, op
from engine.planning.preflight import model_check, preflight

# engine.data.scan keeps its pass in module globals (the job the forked workers read, the stop flag): two passes
# at once in this process (each request runs on its own thread) would mix their rows. The ops that read every
# row of a data set (inspect, preflight, the mixture, the data shape, a big file's rows) take turns.
SCAN_LOCK = threading.Lock()


@op("model_check")
def _model_check(args, emit):
    return model_check(args["path"])


@op("data_shape")
def _data_shape(args, emit):
    """Training rows and mean tokens a row of a config's data (engine.data.measure), for the time estimate."""
    from engine.config import Config
    from engine.data.measure import look_at_data

    with SCAN_LOCK:
        rows, per_row, note = look_at_data(Config.from_dict(args["config"]))
    return {"rows": rows, "tokens_per_row": per_row, "note": note}


@op("preflight")
def _preflight(args, emit):
    """engine.planning.preflight on a config dict: what `tunebench train` checks before creating a run. Here
    because a hub-id dataset loads through `datasets`, which the workbench process never imports."""
    from engine.config import Config
    from engine.data.check import streamed_reader

    with SCAN_LOCK:
        return preflight(Config.from_dict(args["config"]), streamed_reader()).to_dict()


def tokenizer(path: str):
    from transformers import AutoTokenizer  # ~3 s the first time in this process, cached after

    return cached(("tokenizer", path), lambda: AutoTokenizer.from_pretrained(path))


@op("tokenize")
def _tokenize(args, emit):
    """Token counts for texts (streamed in chunks so the client can show progress)."""
    tok = tokenizer(args["tokenizer"])
    texts = list(args.get("texts") or [])
    out = []
    for i in range(0, len(texts), 256):
        chunk = [len(ids) for ids in tok(texts[i:i + 256])["input_ids"]]
        out += chunk
        emit(done=len(out), total=len(texts))
    return {"lengths": out}


def _data_cfg(args: dict):
    """A full Config for the data functions from the pane's args (spec, method, format, max_length, ...)."""
    from engine.data.inspect import _cfg

    extra = {"truncation": args["truncation"]} if args.get("truncation") else {}
    return _cfg(args["spec"], args.get("method") or "sft", args.get("format") or "auto",
                int(args.get("max_length") or 1024), args.get("columns"), loss_on=args.get("loss_on") or "completion",
                **extra)


def _file_key(spec) -> tuple:
    """A cache key that changes when the file does (path, size, mtime)."""
    import os

    paths = spec if isinstance(spec, list) else [spec]
    out = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((p, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((p, None, None))
    return tuple(out)


def measurer_tokenizer(model: str | None, trust: bool = False, template: str | None = None):
    """The model's tokenizer with data.chat_template `template` on it (auto: its own), cached per triple."""
    if not model:
        return None
    from engine.data import chat_templates, templates
    from engine.data.inspect import load_tokenizer

    def load():
        tok = load_tokenizer(model, trust)
        try:
            templates.apply(tok, chat_templates.resolve(template))
        except chat_templates.TemplateError as e:
            raise OpError(str(e)) from None
        return tok

    return cached(("inspect-tokenizer", model, trust, template or "auto"), load)


@op("inspect")
def _inspect(args, emit):
    """The dataset report of engine.data.inspect (every row validated; tokens on a sample of big sets)."""
    from engine.data.inspect import report

    cfg = _data_cfg(args)
    emit(stage="tokenizer" if args.get("model") else "rows")
    tok = measurer_tokenizer(args.get("model"), bool(args.get("trust_remote_code")), args.get("chat_template"))
    emit(stage="rows")
    with SCAN_LOCK:
        return report(args["spec"], tokenizer=tok, sample=int(args.get("sample") or 5000), cfg=cfg,
                      loss_on=cfg.data.loss_on)


WHOLE_BYTES = 64 << 20  # data up to this size is held in the helper for paging; larger data is streamed


def nth_valid(cfg, checked, index: int) -> tuple[str, dict]:
    """The index-th valid row (train, then eval) read from the start, one row at a time."""
    from engine.data import stream
    from engine.data.formats import parse_columns
    from engine.data.prepare import _shape, convert_row, data_options

    d = data_options(cfg)
    columns, seen = parse_columns(d.get("columns")), 0
    for spec, p in zip([d["train"], d.get("eval")], checked.passes):
        for shard in stream.plan(spec, d.get("split"), d.get("subset")):
            for r in stream.rows(shard):
                for row in convert_row(r, p.fmt, cfg.method, columns)[0]:
                    if _shape(row) == checked.main:
                        if seen == index:
                            return r.location, row
                        seen += 1
    raise OpError(f"row {index + 1} is past the end of the data (it changed?)")


@op("render_row")
def _render_row(args, emit):
    """Row `index` (of the valid rows) as the model sees it: text runs marked trained / not / truncated."""
    from engine.data.inspect import _plain_example, _segments
    from engine.data.prepare import prepare_pairs

    cfg = _data_cfg(args)
    key = (_file_key(args["spec"]), cfg.method, cfg.data.format, str(cfg.data.columns))
    if sum(entry[1] or 0 for entry in key[0]) <= WHOLE_BYTES:
        train, evals, _, _ = cached(("pairs", *key), lambda: prepare_pairs(cfg))
        pairs = train + evals
        if not pairs:
            raise OpError("no valid rows to show")
        index = int(args.get("index", 0)) % len(pairs)
        (location, row), count = pairs[index], len(pairs)
    else:  # a big file is never held: its valid rows are counted by the streaming check, the one shown is sought
        from engine.data.check import check

        def checked_rows():
            with SCAN_LOCK:
                return check(cfg, raise_invalid=False)

        checked = cached(("checked", *key), checked_rows)
        if not checked.valid:
            raise OpError("no valid rows to show")
        count = checked.valid
        index = int(args.get("index", 0)) % count
        location, row = nth_valid(cfg, checked, index)
    out = {"index": index, "count": count, "location": location}
    tok = measurer_tokenizer(args.get("model"), bool(args.get("trust_remote_code")), args.get("chat_template"))
    if tok is None:
        out.update(text=_plain_example(row), segments=None)
        return out
    from engine.data.tokens import Measurer

    m = Measurer(tok, cfg.method, cfg.data.max_length, cfg.data.loss_on)
    try:
        enc = m.encode(row)
    except Exception as e:  # noqa: BLE001 - a template failure on one row is that row's report
        raise OpError(f"{location}: cannot render: {e}") from None
    out.update(text=tok.decode(enc["ids"]), tokens=len(enc["ids"]), trained=sum(enc["mask"]),
               segments=_segments(tok, enc["ids"], enc["mask"], cfg.data.max_length))
    return out


@op("mixture")
def _mixture(args, emit):
    """A config's data mixture source by source (engine.data.check.mixture_check, what `inspect` shows): rows,
    weight, rows drawn an epoch, share and format of each source; the order. Every row of each source is read
    (remembered in the cache, so a second look answers at once)."""
    from engine.config import Config
    from engine.data.check import mixture_check
    from engine.data.errors import DataError

    try:
        with SCAN_LOCK:
            return mixture_check(Config.from_dict(args["config"]))["mixture"]
    except DataError as e:
        raise OpError(str(e)) from None
