"""Checkpoint A/B comparison: resolve two models, stream their answers to the same prompts, score both.

Light at import (the TUI uses `resolve_ref`, `word_diff` and `device_advice`); torch, transformers and
peft are imported inside the functions that load and run models (engine/generate.py does the decoding).
A model reference is a checkpoint directory, a run (its final model; `RUN@STEP` for one checkpoint), or
a base model directory (or hub id). Adapters load on their base model through PeftModel; when A and B
share a base (two checkpoints of a run, or a checkpoint and its base) the base is loaded once.
"""
from __future__ import annotations

import difflib
import time
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .data.load import DataError, read_rows
from .runs import META, Run, resolve_run, runs_dir_from

HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


@dataclass
class ModelRef:
    """What to load for one side: a checkpoint (adapter or full weights) or a base model."""

    label: str
    path: str  # the directory (or hub id) that holds the weights to load
    kind: str  # "checkpoint" or "base"
    adapter: bool = False  # path holds a PEFT adapter that goes on base_model
    base_model: str = ""  # the base model: its tokenizer and chat template are the ones applied
    run: Run | None = None
    meta: dict = field(default_factory=dict)

    @property
    def method(self) -> str:
        return self.meta.get("method") or (self.run.status().get("method") if self.run else None) or "sft"

    def describe(self) -> dict:
        return {"label": self.label, "path": self.path, "kind": self.kind, "adapter": self.adapter,
                "base_model": self.base_model, "run": self.run.id if self.run else None,
                "step": self.meta.get("step"), "method": self.method}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def checkpoint_ref(path: Path, run: Run | None = None) -> ModelRef:
    """A checkpoint directory (tunebench's, or any save_pretrained / PEFT adapter directory)."""
    meta = _read_json(path / META)
    if run is None and (path.parent.parent / "status.json").exists():
        run = Run(path.parent.parent)  # runs/<id>/checkpoints/checkpoint-N
    adapter_cfg = _read_json(path / "adapter_config.json")
    if adapter_cfg:
        base = meta.get("base_model") or adapter_cfg.get("base_model_name_or_path") or ""
        if not base:
            raise LookupError(f"{path}: an adapter without a base model (no base_model in {META}, "
                              "no base_model_name_or_path in adapter_config.json)")
        kind = "checkpoint"
    elif (path / "config.json").exists():
        base = meta.get("base_model") or str(path)
        kind = "checkpoint" if meta else "base"
    else:
        raise LookupError(f"{path}: not a model directory (no adapter_config.json or config.json)")
    if run is not None:
        label = f"{run.id}/{path.name}"
    elif kind == "base":
        label = f"base {path.name}"
    else:
        label = str(path)
    return ModelRef(label=label, path=str(path), kind=kind, adapter=bool(adapter_cfg), base_model=base,
                    run=run, meta=meta)


def final_ref(run: Run, step: int | None = None) -> ModelRef:
    """A run's final model (status final_checkpoint, else its last complete checkpoint), or one step's."""
    cps = run.checkpoints()
    if step is not None:
        match = [c for c in cps if c.step == step]
        if not match:
            have = ", ".join(str(c.step) for c in cps) or "none yet"
            raise LookupError(f"{run.id}@{step}: no complete checkpoint at step {step} (steps: {have})")
        return checkpoint_ref(match[0].path, run)
    name = run.status().get("final_checkpoint")
    chosen = next((c for c in cps if c.name == name), None) or (cps[-1] if cps else None)
    if chosen is None:
        raise LookupError(f"{run.id}: no complete checkpoint yet (state {run.state()}); wait for a save "
                          f"or ask for one: tunebench save {run.id}")
    ref = checkpoint_ref(chosen.path, run)
    ref.label = f"{run.id} (final, step {chosen.step})" if name == chosen.name else f"{run.id} (last, step {chosen.step})"
    return ref


def resolve_ref(text: str, runs_dir: str | Path | None = None) -> ModelRef:
    """A/B argument -> ModelRef: a checkpoint dir, a run dir, a run id (or `RUN@STEP`), a model dir or hub id."""
    runs_dir = runs_dir_from(str(runs_dir) if runs_dir else None)
    p = Path(text).expanduser()
    if p.is_dir():
        if (p / "status.json").exists():
            return final_ref(Run(p))
        return checkpoint_ref(p)
    if p.exists():
        raise LookupError(f"{text}: a file, not a model directory; give a checkpoint directory, a run id or a model directory")
    ref, _, step = text.rpartition("@") if "@" in text else (text, "", "")
    if step and not step.isdigit():
        raise LookupError(f"{text}: after @ comes a step number, e.g. {ref}@200")
    try:
        run = resolve_run(runs_dir, ref)
    except LookupError as e:
        if HUB_ID.match(text) and not text.startswith("."):
            return ModelRef(label=text, path=text, kind="base", base_model=text)  # a hub id, loaded by transformers
        raise LookupError(f"{e.args[0]}; A and B are checkpoint directories, run ids (RUN or RUN@STEP) "
                          "or base model directories") from None
    return final_ref(run, int(step) if step else None)


# -- prompts ------------------------------------------------------------------------------------------
def prompt_of(row: dict, location: str = "") -> dict:
    """One data row -> a prompt: {"messages": [...]} (chat template applied) or {"text": "..."} (raw)."""
    if isinstance(row.get("messages"), list):
        msgs = [{"role": m.get("role"), "content": m.get("content")} for m in row["messages"] if isinstance(m, dict)]
        last_user = max((i for i, m in enumerate(msgs) if m["role"] == "user"), default=None)
        if last_user is None:
            raise DataError(f"{location}: the conversation has no user turn to use as a prompt")
        return {"messages": msgs[:last_user + 1]}
    if "prompt" in row:
        p = row["prompt"]
        if isinstance(p, list):
            return {"messages": [{"role": m.get("role"), "content": m.get("content")} for m in p]}
        if isinstance(p, str):
            return {"text": p}
    if isinstance(row.get("instruction"), str):
        text = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
        return {"messages": [{"role": "user", "content": text}]}
    if isinstance(row.get("text"), str):
        return {"messages": [{"role": "user", "content": row["text"]}]}
    raise DataError(f"{location}: cannot make a prompt from the fields {sorted(row)}; use messages, prompt, "
                    "instruction or text (or a .txt file with one prompt a line)")


def read_prompts(path: str | Path) -> list[dict]:
    """A prompts file: .txt (one user prompt a line) or rows in any format engine.data reads (the prompt part)."""
    from .data.prepare import load_pairs, summarize

    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such prompts file")
    if p.suffix.lower() == ".txt":
        lines = [ln.strip() for ln in p.read_text(encoding="utf-8-sig").splitlines()]
        prompts = [{"messages": [{"role": "user", "content": ln}]} for ln in lines if ln]
    else:
        try:  # the prompt-only conversion of grpo: any chat, completion, preference or kto row has a prompt
            pairs, problems, _, _ = load_pairs(str(p), {"format": "auto"}, "grpo")
        except DataError:
            pairs, problems = [(r.location, r.data) for r in read_rows(str(p)) if r.data], []
        if problems:
            raise DataError(f"{p}: {summarize(problems)}")
        prompts = []
        for loc, row in pairs:
            pr = row.get("prompt")
            if isinstance(pr, str):  # a typed prompt: the user's turn, through the chat template
                prompts.append({"messages": [{"role": "user", "content": pr}]})
            else:
                prompts.append(prompt_of(row, loc))
            if row.get("reference"):
                prompts[-1]["reference"] = row["reference"]
    if not prompts:
        raise DataError(f"{p}: no prompts in the file")
    return prompts


def sft_view(row: dict) -> dict | None:
    """An eval row of any method as one scored example: messages, prompt + completion, or text."""
    if "messages" in row or "text" in row and "label" not in row:
        return row
    answer = row.get("completion", row.get("chosen"))
    if row.get("label") is False or answer is None or row.get("prompt") is None:
        return None  # an undesirable kto completion, or a prompt with no answer: nothing to score
    if isinstance(row["prompt"], list) or isinstance(answer, list):
        as_msgs = lambda v, role: v if isinstance(v, list) else [{"role": role, "content": v}]  # noqa: E731
        return {"messages": as_msgs(row["prompt"], "user") + as_msgs(answer, "assistant")}
    return {"prompt": row["prompt"], "completion": answer}


def prompt_text(prompt: dict) -> str:
    """The prompt as one line of text for display: the last user turn (or the raw text)."""
    if "text" in prompt:
        return prompt["text"]
    users = [m["content"] for m in prompt["messages"] if m["role"] == "user"]
    return users[-1] if users else ""


def run_split(ref: ModelRef | None, path: str | None = None) -> tuple[list[dict], str]:
    """The eval rows of the run behind `ref` in its method's shape (or the rows of `path`), else ([], why not)."""
    from . import config as cfgmod
    from .data.prepare import prepare

    if ref is None or (ref.run is None and path is None):
        return [], "no run behind this model"
    cfg = cfgmod.load_config(base=ref.run.config()) if ref.run else cfgmod.defaults()
    if ref.run is None:
        cfg["model"]["name_or_path"] = ref.base_model
    if path is not None:  # a file of eval rows, read as the run reads its own data
        cfg["data"].update(train=path, eval=None, eval_fraction=0.0)
        rows, _, _ = prepare(cfg)
        return rows, path
    _, evals, _ = prepare(cfg)
    if not evals:
        return [], f"run {ref.run.id} has no eval split (data.eval or data.eval_fraction)"
    return evals, f"eval split of {ref.run.id}"


# -- presentation helpers used by the CLI and the pane --------------------------------------------------
def word_diff(a: str, b: str) -> tuple[list[tuple[str, bool]], list[tuple[str, bool]]]:
    """Split both texts into (segment, differs) runs at word level, for highlighting what differs."""
    wa, wb = re.findall(r"\s*\S+", a), re.findall(r"\s*\S+", b)
    sa: list[tuple[str, bool]] = []
    sb: list[tuple[str, bool]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=wa, b=wb, autojunk=False).get_opcodes():
        if i2 > i1:
            sa.append(("".join(wa[i1:i2]), op != "equal"))
        if j2 > j1:
            sb.append(("".join(wb[j1:j2]), op != "equal"))
    return sa, sb


def printable(text: str) -> str:
    """Control characters (an untrained model emits them) would move a terminal's cursor: show them as \ufffd."""
    return "".join(c if c.isprintable() or c in "\n\t" else "\N{REPLACEMENT CHARACTER}" for c in text)


def weights_bytes(ref: ModelRef) -> int:
    """Bytes of weight files to load for `ref` (its base and adapter); 0 when unknown (a hub id)."""
    total = 0
    for d in {ref.path, ref.base_model} - {""}:
        p = Path(d)
        if p.is_dir():
            total += sum(f.stat().st_size for f in p.iterdir() if f.suffix in (".safetensors", ".bin")
                         and not f.name.startswith(("optimizer", "training_args")))
    return total


def device_advice(gpus: list[dict], need_bytes: int, busy: list[str]) -> dict:
    """Where to run a comparison, given the GPUs (engine.telemetry.Nvml list), the bytes it needs and the
    active training runs. Returns {"device", "ask", "options", "message", "free_bytes"}: ask is True when a
    training run holds the GPU and the free memory is short, so the user chooses wait, cpu or go ahead.
    """
    if not gpus:
        return {"device": "cpu", "ask": False, "options": [], "free_bytes": None,
                "message": "no GPU visible: comparing on the CPU"}
    free = [g["mem_total"] - g["mem_used"] if g.get("mem_total") is not None and g.get("mem_used") is not None
            else None for g in gpus]
    best = max((f for f in free if f is not None), default=None)
    gib = lambda b: f"{b / 2**30:.1f} GiB"  # noqa: E731
    # Weights plus room for activations and two KV caches: 1.2x the weight files, at least 512 MiB.
    want = max(int(need_bytes * 1.2), 512 * 2**20)
    if not busy and (best is None or best >= want):
        return {"device": "cuda", "ask": False, "options": [], "free_bytes": best,
                "message": f"comparing on the GPU ({gib(best)} free)" if best is not None else "comparing on the GPU"}
    runs = ", ".join(busy[:3]) or "another process"
    if best is not None and best >= want:
        msg = (f"training run {runs} is on the GPU; {gib(best)} free, the comparison needs about {gib(want)}: "
               "it fits but will slow the run")
    else:
        have = gib(best) if best is not None else "N/A"
        msg = f"{runs} holds the GPU: {have} free, the comparison needs about {gib(want)}"
    return {"device": "cuda", "ask": True, "options": ["wait", "cpu", "go"], "free_bytes": best, "message": msg}


def busy_runs(runs_dir: str | Path | None = None) -> list[str]:
    """Ids of runs whose engine is alive now (they may hold the GPU)."""
    from .runs import ACTIVE, list_runs

    return [r.id for r in list_runs(runs_dir_from(str(runs_dir) if runs_dir else None)) if r.state() in ACTIVE]


# -- the whole comparison -------------------------------------------------------------------------------
def default_prompts(a: ModelRef, b: ModelRef, limit: int = 8) -> tuple[list[dict], str]:
    """Prompts from the eval split of A's run (else B's), the first `limit` of them."""
    why = []
    for ref in (a, b):
        rows, source = run_split(ref)
        if rows:
            prompts = [split_prompt(r) for r in rows]
            return [p for p in prompts if p][:limit], source
        why.append(source)
    raise DataError("no prompts: give --prompts FILE (a .txt with one prompt a line, or a JSONL); "
                    + "; ".join(dict.fromkeys(why)))


def split_prompt(row: dict) -> dict | None:
    """The prompt of an eval row (a string prompt stays raw text: the run trained on it without a template)."""
    if isinstance(row.get("prompt"), str):
        return {"text": row["prompt"]}
    try:
        return prompt_of(row)
    except DataError:
        return None


def run_comparison(a: ModelRef, b: ModelRef, prompts: list[dict] | None, dec, *, device: str = "cpu",
                   eval_rows: list[dict] | None = None, eval_source: str = "", max_eval: int = 200,
                   metrics: bool = True, on_token=None, on_phase=None, should_stop=None, on_row=None) -> dict:
    """Load A and B, generate for every prompt (streaming through on_token), score both, unload.

    Returns {"prompts": [{prompt, a, b, ...}], "metrics": {...}, "models": {...}}. `eval_rows` default to
    the eval split of A's (else B's) run; classification runs get accuracy and macro F1 instead of text.
    """
    from . import generate

    phase = on_phase or (lambda text: None)
    classify = a.method in ("classification", "reward") or b.method in ("classification", "reward")
    if not classify and prompts is None:
        prompts, source = default_prompts(a, b)
        phase(f"prompts: {source}")
    out_metrics: dict = {"decoding": generate.decoding_dict(dec), "device": device}
    if metrics and eval_rows is None:
        for ref in (a, b):
            eval_rows, eval_source = run_split(ref)
            if eval_rows:
                break
    phase(f"loading {a.label} and {b.label} on {device}")
    t0 = time.perf_counter()
    side_a, side_b = generate.load_pair(a, b, device)
    out_metrics["load_s"] = round(time.perf_counter() - t0, 3)
    out_metrics["shared_base"] = side_a.shared or side_a.model is side_b.model
    try:
        results = []
        if not classify:
            phase(f"generating for {len(prompts)} prompts")
            results = generate.generate_pair(side_a, side_b, prompts, dec, on_token, should_stop, on_row)
            for name in ("a", "b"):
                toks = sum(r[f"{name}_tokens"] for r in results)
                secs = sum(r[f"{name}_seconds"] for r in results)
                out_metrics[name] = {"gen_tokens": toks, "gen_tokens_per_s": round(toks / secs, 2) if secs else None}
        if metrics and eval_rows:
            rows = eval_rows[:max_eval]
            phase(f"scoring both on {len(rows)} eval rows")
            for side in (side_a, side_b):
                if classify:
                    score = generate.classification_scores(side, rows)
                else:
                    score = generate.eval_loss(side, [v for v in map(sft_view, rows) if v])
                out_metrics.setdefault(side.name, {}).update(score)
            out_metrics["eval"] = f"{eval_source or 'eval rows'} ({len(rows)} rows)"
        elif metrics:
            out_metrics["eval"] = eval_source or "no eval split: pass --eval FILE for eval loss and perplexity"
    finally:
        generate.unload(side_a, side_b)
    return {"prompts": results, "metrics": out_metrics, "models": {"a": a.describe(), "b": b.describe()}}
