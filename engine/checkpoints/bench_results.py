"""Benchmark results (`tunebench eval`): where they are recorded and how they read in one line.

Light module: the workbench's Checkpoints pane reads them. A result is kept twice: as a JSON report beside
the runs (runs_dir/benchmarks/, for any model, base models and hub ids included), and, when the model is a
run's checkpoint, as a `benchmark` event in that run's events.jsonl. The event is appended only while no
engine is alive on the run (an engine owns its event log and its seq numbers while it runs); for a live run
the report alone is written and the result says so.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from engine.rundir.atomic import atomic_write
from engine.rundir.events import EventWriter
from engine.rundir.runs import ACTIVE, Run


def report_path(runs_dir: str | Path, label: str) -> Path:
    clean = "".join(c if c.isalnum() or c in "-_" else "-" for c in label)[:60].strip("-")
    return Path(runs_dir) / "benchmarks" / f"{time.strftime('%Y%m%d-%H%M%S')}-{clean}.json"


def record(result: dict, runs_dir: str | Path, run: Run | None) -> dict:
    """Write the report, and the run's `benchmark` event when the run is not live. Returns where they went:
    {"report": path, "event": bool, "why_no_event": str | None}."""
    path = report_path(runs_dir, result["model"]["label"])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(result, indent=1, ensure_ascii=False))
    out = {"report": str(path), "event": False, "why_no_event": None}
    if run is None:
        out["why_no_event"] = "not a run's checkpoint"
        return out
    state = run.state()
    if state in ACTIVE:
        out["why_no_event"] = f"run {run.id} is {state}: its engine alone writes its events while it lives"
        return out
    m = result["model"]
    events = EventWriter(run.events_path)  # continues the seq numbers after the last event
    try:
        events.write("benchmark", step=m.get("step"), checkpoint=Path(m["path"]).name, label=m["label"],
                     base=result.get("base"), tasks=result["tasks"], limit=result.get("limit"),
                     num_fewshot=result.get("num_fewshot"), chat=result.get("chat"), report=str(path))
    finally:
        events.close()
    out["event"] = True
    return out


def run_benchmarks(run: Run) -> list[dict]:
    """The run's `benchmark` events, oldest first (the file is scanned for the kind's bytes before parsing)."""
    from engine.monitor.decoding import parse_lines

    try:
        data = run.events_path.read_bytes()
    except OSError:
        return []
    events, _ = parse_lines(data, ("benchmark",))
    return events


def summary_line(event: dict, width: int = 200) -> str:
    """`task metric model (base b)` for each task of a benchmark event, the first metric of each task."""
    parts = []
    for task, t in (event.get("tasks") or {}).items():
        metrics = t.get("metrics") or {}
        if not metrics:
            continue
        name, v = next(iter(metrics.items()))
        text = f"{task} {name} {v['model']:.3f}"
        if v.get("base") is not None:
            text += f" (base {v['base']:.3f})"
        parts.append(text)
    line = "; ".join(parts)
    return line if len(line) <= width else line[: width - 1] + "…"


def for_step(events: list[dict], step: int | None) -> dict | None:
    """The latest benchmark event of one checkpoint step."""
    found = [e for e in events if e.get("step") == step]
    return found[-1] if found else None
