"""Check a run directory's integrity: events parse, checkpoints are complete and load, nothing partial is listed.

Used by the fault-injection suite after every injected fault and by `tunebench verify RUN`. Light module:
safetensors is imported only when there are checkpoints to open.
"""
from __future__ import annotations

import json
from pathlib import Path

from engine.config.text import excerpt
from engine.rundir.runs import META, Run

WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json")
# What a checkpoint needs to go on exactly where it stopped, beside its weights. A launcher with FSDP or DeepSpeed
# writes its optimizer as a folder (optimizer_0, global_stepN) instead of optimizer.pt.
RESUME_STATE = {"optimizer.pt": ("optimizer.pt", "optimizer.bin", "optimizer_0", "global_step*"),
                "scheduler.pt": ("scheduler.pt", "global_step*")}


def missing_resume_state(path: Path) -> list[str]:
    """The optimizer and scheduler files a checkpoint lacks (without them a resume restarts the optimizer and the
    learning-rate schedule)."""
    return [name for name, forms in RESUME_STATE.items() if not any(any(path.glob(f)) for f in forms)]


def weights_problem(path: Path, load: bool = False) -> str | None:
    """Why a checkpoint's weights cannot be read, naming the file, or None. Without `load` only the safetensors
    header and the file's length are checked (milliseconds); with it every tensor is read."""
    weights = [path / w for w in WEIGHT_FILES if (path / w).exists()]
    if not weights:
        return f"{path}: no weights file ({', '.join(WEIGHT_FILES[:2])})"
    files = [weights[0]]
    if weights[0].name.endswith(".index.json"):
        try:
            index = json.loads(weights[0].read_text(encoding="utf-8"))
            files = [path / name for name in sorted(set(index["weight_map"].values()))]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            return f"{weights[0]}: unreadable index ({type(e).__name__})"
    for f in files:
        problem = header_problem(f)
        if problem is None and load:
            from safetensors import safe_open  # with "pt" it imports torch: only for a full check

            try:
                with safe_open(str(f), "pt") as st:
                    for key in st.keys():
                        st.get_tensor(key)
            except Exception as e:  # noqa: BLE001 - any failure to read is the finding
                problem = excerpt(e, 120)
        if problem:
            return f"{f}: does not load: {problem}"
    return None


def header_problem(path: Path) -> str | None:
    """What is wrong with a .safetensors file's header or length (what safetensors checks when it opens one), or
    None. Stdlib only, so the CLI can choose a checkpoint without importing torch."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if size < 8 or n > size - 8 or n > 100 << 20:
                return f"invalid header length {n} in a file of {size} bytes"
            header = json.loads(f.read(n))
    except OSError as e:
        return f"unreadable ({e.strerror})"
    except (ValueError, UnicodeDecodeError):
        return "the header is not valid JSON"
    try:
        ends = [int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"]
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        return "the header does not describe tensors"
    if max(ends, default=0) != size - 8 - n:
        return f"truncated or padded: the header describes {max(ends, default=0)} bytes of data, the file holds {size - 8 - n}"
    return None


def resume_problem(path: Path) -> str | None:
    """Why a complete checkpoint cannot be resumed from (damaged weights, no readable trainer_state.json), or None."""
    problem = weights_problem(path)
    if problem:
        return problem
    try:
        json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))["global_step"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"{path / 'trainer_state.json'}: unreadable ({type(e).__name__}), so the step it stopped at is unknown"
    return None


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
        problem = weights_problem(c.path, load=load_weights)
        if problem:
            problems.append(problem)
            continue
        missing = missing_resume_state(c.path)
        if missing:
            problems.append(f"{c.path}: no {' or '.join(missing)}: a resume from it restarts the optimizer and the "
                            "learning-rate schedule (only with --resume-weights-only)")
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
