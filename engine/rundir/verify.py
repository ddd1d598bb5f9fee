"""Check a run directory's integrity: events parse, checkpoints are complete and load, nothing partial is listed.

Used by the fault-injection suite after every injected fault and by `tunebench verify RUN`. Light module:
safetensors is imported only when there are checkpoints to open.
"""
from __future__ import annotations

import json

from engine.rundir.runs import META, Run

WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json")


def verify_run(run: Run, load_weights: bool = True) -> list[str]:
    """Every problem found, one line each; an empty list means the run directory is sound."""
    problems: list[str] = []
    data = run.events_path.read_bytes() if run.events_path.exists() else b""
    lines = data.split(b"\n")
    seqs = []
    for n, line in enumerate(lines[:-1], 1):  # lines[-1] is "" or a torn last line, which readers skip
        try:
            seqs.append(json.loads(line)["seq"])
        except (ValueError, KeyError, TypeError):
            problems.append(f"{run.events_path}:{n}: corrupt event line {line[:60]!r}")
    if seqs != sorted(seqs) or len(set(seqs)) != len(seqs):
        problems.append(f"{run.events_path}: event seq numbers are not strictly increasing")
    try:
        json.loads(run.status_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        problems.append(f"{run.status_path}: unreadable: {e}")
    listed = {c.path for c in run.checkpoints()}
    if run.checkpoints_dir.exists():
        for d in sorted(run.checkpoints_dir.iterdir()):
            if d.name.startswith("checkpoint-") and d not in listed:
                problems.append(f"{d}: named like a checkpoint but has no readable {META}")
    for c in run.checkpoints():
        if c.meta.get("step") != int(c.name.split("-")[-1]):
            problems.append(f"{c.path}: {META} says step {c.meta.get('step')}")
        weights = [c.path / w for w in WEIGHT_FILES if (c.path / w).exists()]
        if not weights:
            problems.append(f"{c.path}: no weights file")
            continue
        if load_weights and weights[0].suffix == ".safetensors":
            from safetensors import safe_open

            try:
                with safe_open(str(weights[0]), "pt") as f:
                    for key in f.keys():
                        f.get_tensor(key)
            except Exception as e:  # noqa: BLE001 - any failure to read is the finding
                problems.append(f"{weights[0]}: does not load: {e}")
    return problems


def losses_by_step(run: Run) -> dict[int, float]:
    """The last recorded train loss of each step (a resumed run re-runs the steps after its checkpoint)."""
    out = {}
    for line in run.events_path.read_bytes().split(b"\n")[:-1]:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("kind") == "metrics" and "loss" in e:
            out[e["step"]] = e["loss"]
    return out
