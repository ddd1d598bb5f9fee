"""Model references: what "A" and "B" name (a checkpoint directory, a run, RUN@STEP, a base model or hub id).

Light: reads run directories and JSON files, never imports the ML stack; the TUI resolves references with it.
A run's final model is its newest complete checkpoint, unless a completed run recorded another. Also where to run a
comparison (device_advice) and which runs hold the machine (busy_runs).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from engine.rundir.runs import ACTIVE, META, Checkpoint, Run, list_runs, resolve_run, runs_dir_from

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

    @property
    def seq2seq(self) -> bool:
        """An encoder-decoder (T5, BART) that generates text: its run trained it with method seq2seq, or its
        config.json (the checkpoint's, else the base model's) says is_encoder_decoder."""
        if self.method in ("seq2seq", "classification", "reward"):
            return self.method == "seq2seq"
        for d in (self.path, self.base_model):
            cfg = _read_json(Path(d) / "config.json") if d else {}
            if cfg:
                return bool(cfg.get("is_encoder_decoder"))
        return False

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

def final_checkpoint(run: Run, status: dict | None = None, cps: list[Checkpoint] | None = None
                     ) -> tuple[Checkpoint | None, bool]:
    """(a run's final model, whether the run recorded it): its newest complete checkpoint, unless the run
    completed and its status names another one that is still there. A `final_checkpoint` left from an earlier
    stop (stopped at 7, resumed, saved at 164, lost) is not the final model: 164 is."""
    status = status if status is not None else run.status()
    cps = cps if cps is not None else run.checkpoints()
    name = status.get("final_checkpoint")
    if status.get("state") == "completed" and name:
        recorded = next((c for c in cps if c.name == name), None)
        if recorded is not None:
            return recorded, True
    return (cps[-1] if cps else None), False


def final_ref(run: Run, step: int | None = None) -> ModelRef:
    """A run's final model (final_checkpoint()), or one step's checkpoint."""
    cps = run.checkpoints()
    if step is not None:
        match = [c for c in cps if c.step == step]
        if not match:
            have = ", ".join(str(c.step) for c in cps) or "none yet"
            raise LookupError(f"{run.id}@{step}: no complete checkpoint at step {step} (steps: {have})")
        return checkpoint_ref(match[0].path, run)
    chosen, recorded = final_checkpoint(run, cps=cps)
    if chosen is None:
        raise LookupError(f"{run.id}: no complete checkpoint yet (state {run.state()}); wait for a save "
                          f"or ask for one: tunebench save {run.id}")
    ref = checkpoint_ref(chosen.path, run)
    ref.label = f"{run.id} ({'final' if recorded else 'last'}, step {chosen.step})"
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
    return [r.id for r in list_runs(runs_dir_from(str(runs_dir) if runs_dir else None)) if r.state() in ACTIVE]
