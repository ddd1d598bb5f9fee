"""The launch preflight: every check before a run directory exists, shared by `tunebench train` and the workbench.

Light: reads config.json, never imports the ML stack. Reading the data is the caller's `read` (always
engine.data.prepare.prepare): a hub-id dataset loads through `datasets`, which this layer must not reach, and
which is why the workbench runs `preflight` in its helper process. What the CLI refuses, the TUI refuses, with
the same messages:

- the model: a value that looks like a path (absolute, ./, ../, ~, or more than one /) is a path and must be a
  directory with config.json, never a hub id; a model that ships code (auto_map) needs model.trust_remote_code,
  unless transformers has its own classes for its model_type (then it loads those, as transformers does);
- data.general_eval: a local file (or glob, directory) whose rows read as SFT data, never any other string;
- the data: every row of data.train / data.eval reads and converts for the method (engine.data.prepare);
- the architecture: the model's config.json model_type against transformers' auto-class tables (read as text from
  the installed transformers, never imported): a method the architecture cannot train is refused naming those it can
  (sft on T5 or BART is refused with the fix `method: seq2seq`, never switched to it);
- the chat template: data.chat_template names a usable template that has conversations to render, and
  conversations with `auto` need a model whose tokenizer has one (else the fix is data.chat_template).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from engine.config import Config, Problem
from engine.data import chat_templates
from engine.data.errors import DataError
from engine.data.formats import KIND
from engine.data.load import expand

Read = Callable[[Config], tuple]  # engine.data.prepare.prepare: (train rows, eval rows, info)

HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")  # owner/name (or a bare legacy name such as gpt2)
MODEL_FIX = "give a local model directory (with config.json) or a hub id such as Qwen/Qwen2.5-0.5B-Instruct"


def looks_like_path(value: str) -> bool:
    """A value the user meant as a path: never looked up on the hub."""
    return (value.startswith(("/", "./", "../", "~")) or value in (".", "..") or value.count("/") > 1
            or "\\" in value)


def model_check(path: str) -> dict:
    """Is `path` a usable local model: exists, has config.json, needs trust_remote_code? (no transformers)."""
    p = Path(path).expanduser()
    out = {"path": str(p), "exists": p.exists(), "local": p.exists()}
    if not p.exists():
        hub = not looks_like_path(path) and bool(HUB_ID.fullmatch(path))
        out["hub_id"] = hub
        out["problem"] = (None if hub else f"{path}: no such directory" if looks_like_path(path)
                          else f"{path}: neither a local directory nor a hub id (owner/name)")
        return out
    cfg_path = p / "config.json"
    if not cfg_path.exists():
        out["problem"] = f"{p}: no config.json (not a Hugging Face model directory)"
        return out
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        out["problem"] = f"{cfg_path}: unreadable: {e}"
        return out
    if not isinstance(cfg, dict):
        out["problem"] = f"{cfg_path}: not a JSON object"
        return out
    mtype = cfg.get("model_type")
    # transformers loads a model type it knows with its own classes unless trust_remote_code is on, whatever the
    # auto_map names (Phi-3-mini's config.json names the modeling_phi3.py it ships): only an unknown type needs it
    out.update(model_type=mtype, architectures=cfg.get("architectures") or [], ships_code=bool(cfg.get("auto_map")),
               needs_remote_code=bool(cfg.get("auto_map")) and not native_type(mtype), problem=None)
    return out


def native_type(model_type) -> bool:
    """Whether the installed transformers has its own classes for `model_type` (a causal LM, seq2seq or
    sequence-classification model); False when its tables cannot be read."""
    return isinstance(model_type, str) and any(model_type in names for names in auto_tables().values())


def model_problems(cfg: Config) -> list[Problem]:
    """The model key's problems: missing, a path that is not there, no config.json, code not trusted."""
    name = cfg.model.name_or_path
    if not name:
        return [Problem("model.name_or_path", "no model given", MODEL_FIX)]
    info = model_check(name)
    if info["problem"]:
        return [Problem("model.name_or_path", info["problem"], MODEL_FIX)]
    if info.get("needs_remote_code") and not cfg.model.trust_remote_code:
        return [Problem("model.trust_remote_code", f"{name} ships its own Python code (auto_map in its config.json), "
                        "which runs only with model.trust_remote_code on",
                        "set model.trust_remote_code: true if you trust that code", related=("model.name_or_path",))]
    return []


def general_eval_problems(cfg: Config, read: Read) -> list[Problem]:
    """data.general_eval must be local data whose rows read as SFT rows (the engine takes its first 256)."""
    spec = cfg.data.general_eval
    if not spec:
        return []
    fix = "give a local chat or text file (JSONL, JSON, CSV, ...) whose loss to watch, or leave it empty"
    try:
        expand(spec)
    except DataError:
        return [Problem("data.general_eval", f"{spec!r} is not a data file here", fix)]
    try:
        # as the engine reads it (engine/training/methods/forgetting.py)
        read(cfg.replace(method="sft", data={"train": spec, "eval": None, "eval_fraction": 0.0}))
    except DataError as e:
        return [Problem("data.general_eval", str(e).replace("\n", " "), fix)]
    return []


CAUSAL = ("sft", "dpo", "kto", "grpo", "rloo")
SEQ_CLS = ("classification", "reward")
_TABLES = {"causal": "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES", "seq2seq": "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES",
           "seq_cls": "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES"}
_tables: dict | None = None


def auto_tables() -> dict[str, set[str]]:
    """model_types per transformers auto class (causal LM, seq2seq LM, sequence classification), read from the
    installed transformers' modeling_auto.py as text (the ML stack is not imported here); {} when unreadable."""
    global _tables
    if _tables is None:
        import importlib.util

        _tables = {}
        try:
            spec = importlib.util.find_spec("transformers")
            text = (Path(spec.origin).parent / "models" / "auto" / "modeling_auto.py").read_text(encoding="utf-8")
            for key, name in _TABLES.items():
                body = text.split(f"{name} = OrderedDict(", 1)[1].split("\n)\n", 1)[0]
                _tables[key] = set(re.findall(r'^\s*\("([\w-]+)",', body, re.M))
        except (AttributeError, OSError, IndexError, TypeError, ValueError):
            _tables = {}
    return _tables


def methods_for(model_type: str, encoder_decoder: bool) -> list[str] | None:
    """The methods an architecture can train, or None when transformers' tables cannot be read."""
    t = auto_tables()
    if not t:
        return None
    out = []
    if model_type in t["causal"] and not encoder_decoder:  # BART's decoder alone is no way to train BART
        out += CAUSAL
    if model_type in t["seq2seq"] and encoder_decoder:  # the table also lists speech models with text decoders
        out.append("seq2seq")
    if model_type in t["seq_cls"]:
        out += SEQ_CLS
    return out


def architecture_problems(cfg: Config) -> list[Problem]:
    """A method the model's architecture cannot train (an encoder for sft, T5 or BART for sft, a causal LM for
    seq2seq, a causal LM without a sequence-classification class for classification): one problem naming what it
    can do."""
    info = model_check(cfg.model.name_or_path) if cfg.model.name_or_path else {}
    mtype = info.get("model_type")
    if info.get("problem") or not info.get("local") or not mtype or info.get("needs_remote_code"):
        return []
    cfg_json = json.loads((Path(info["path"]) / "config.json").read_text(encoding="utf-8"))
    can = methods_for(mtype, bool(cfg_json.get("is_encoder_decoder")))
    if can is None or cfg.method in can:
        return []
    what = f"it can train: {', '.join(can)}" if can else "no method here trains it (an encoder-decoder or other architecture)"
    if "seq2seq" in can and cfg.method in CAUSAL:  # the user chose; the fix names the choice, it is not made for them
        fix = "set method: seq2seq (an encoder-decoder learns source -> target text through Seq2SeqTrainer)"
    elif cfg.method == "seq2seq" and "sft" in can:
        fix = "set method: sft (a decoder-only model learns prompt -> completion as one sequence)"
    else:
        fix = f"set method to one of {', '.join(can)}" if can else \
            "choose a causal LM, an encoder-decoder or an encoder with a sequence-classification head"
    return [Problem("method", f"{cfg.model.name_or_path} is a {mtype} model, which method {cfg.method} cannot train; "
                    + what, fix, related=("model.name_or_path",))]


def template_problems(cfg: Config, info: dict) -> list[Problem]:
    """data.chat_template must name a usable template, and one that renders something: a chosen template with no
    conversation to render (every row plain strings, no data.general_eval) would be ignored, so it is refused;
    conversations with `auto` need the model's own. (Method classification is refused by the config rules.)"""
    fmt = info.get("format")
    try:
        chosen = chat_templates.resolve(cfg.data.chat_template)
    except chat_templates.TemplateError as e:
        return [Problem("data.chat_template", str(e).split(": ", 1)[1])]  # the message ends with its fix
    if chosen.template is not None and info.get("conversational") is False and not cfg.data.general_eval:
        return [Problem("data.chat_template", f"{chosen.value} would be ignored: no row is a conversation (the "
                        f"{fmt} rows hold plain strings, which {cfg.method} tokenizes as they are)",
                        "remove it (or set auto), or give the rows as message lists ([{role, content}, ...])")]
    if chosen.template is not None or cfg.method in SEQ_CLS + ("seq2seq",) or KIND.get(fmt or "") != "chat":
        return []
    info = model_check(cfg.model.name_or_path) if cfg.model.name_or_path else {}
    if (info.get("problem") or not info.get("local") or not (Path(info["path"]) / "tokenizer_config.json").exists()
            or chat_templates.model_template(info["path"]) is not None):
        return []  # a directory without tokenizer files says nothing about its template
    return [Problem("data.chat_template", f"{cfg.model.name_or_path} has no chat template (none in its "
                    f"tokenizer_config.json or chat_template.jinja) and the data is conversations ({fmt})",
                    chat_templates.FIX + " (chatml suits a base model)", related=("model.name_or_path",))]


@dataclass
class Preflight:
    """What the checks found. `problems` name config keys; `data_error` is the data check's report (invalid rows
    by reason with the first of each), as `tunebench train` prints it."""

    problems: list[Problem] = field(default_factory=list)
    data_error: str | None = None
    info: dict = field(default_factory=dict)  # engine.data.prepare's info: format, rows, warnings

    @property
    def ok(self) -> bool:
        return not self.problems and self.data_error is None

    @property
    def messages(self) -> list[str]:
        return [str(p) for p in self.problems] + ([self.data_error] if self.data_error else [])

    @property
    def warnings(self) -> list[str]:
        return list(self.info.get("warnings") or [])

    def keys(self) -> list[str]:
        """Every config key a problem is about (the form marks them); data.train for a data error."""
        keys = [k for p in self.problems for k in p.keys()]
        return keys + (["data.train"] if self.data_error else [])

    def to_dict(self) -> dict:
        return {"ok": self.ok, "messages": self.messages, "keys": self.keys(), "warnings": self.warnings,
                "info": {k: v for k, v in self.info.items() if k in ("format", "train_rows", "eval_rows", "dropped")}}


def preflight(cfg: Config, read: Read) -> Preflight:
    """Every check that needs no ML stack, on a validated config, all reported at once; creates nothing.

    `read` is engine.data.check.streamed_reader() (or engine.data.prepare.prepare: (train, eval, info);
    DataError on invalid rows). The engine repeats the data check as it tokenises (rows too long)."""
    arch = architecture_problems(cfg)
    out = Preflight(problems=model_problems(cfg) + arch + general_eval_problems(cfg, read))
    try:
        _, _, out.info = read(cfg)
    except DataError as e:
        out.data_error = str(e)
    if not arch:  # a template is no fix for a model the method cannot train
        out.problems += template_problems(cfg, out.info)
    return out
