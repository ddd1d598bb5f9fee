"""Known GPUs (memory, dense peak FLOP/s by precision) and the measured-efficiency store the estimate learns from.

Light module: no torch. A named GPU that is not present still estimates (`hardware.gpu: H100`); the visible
one is matched by its NVML name. Peaks are the vendors' dense (no sparsity) tensor-core figures; fp32 is the
plain CUDA-core rate, because PyTorch does not use TF32 for matmuls unless asked.
"""
from __future__ import annotations

import json
import os
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from engine.rundir.atomic import atomic_write

GIB = 2**30
T = 1e12


@dataclass(frozen=True)
class Gpu:
    """One GPU model: memory in bytes, dense peak FLOP/s by precision (None where unsupported)."""

    key: str
    memory: int
    bf16: float | None
    fp16: float
    fp32: float

    def peak(self, precision: str) -> float | None:
        return {"bf16": self.bf16, "fp16": self.fp16, "fp32": self.fp32}.get(precision)


# Most specific first: the first regex that matches the normalised name (lower-case words) wins.
GPUS: list[tuple[str, Gpu]] = [
    (r"\bb200\b", Gpu("B200", 180 * GIB, 2250 * T, 2250 * T, 75 * T)),
    (r"\bgh200\b", Gpu("GH200", 96 * GIB, 989 * T, 989 * T, 67 * T)),
    (r"\bh200\b", Gpu("H200", 141 * GIB, 989 * T, 989 * T, 67 * T)),
    (r"\bh100\b.*\bnvl\b", Gpu("H100-NVL", 94 * GIB, 835 * T, 835 * T, 60 * T)),
    (r"\bh100\b.*\bpcie\b", Gpu("H100-PCIe", 80 * GIB, 756 * T, 756 * T, 51 * T)),
    (r"\bh100\b", Gpu("H100", 80 * GIB, 989 * T, 989 * T, 67 * T)),
    (r"\ba100\b.*\b80gb?\b", Gpu("A100-80GB", 80 * GIB, 312 * T, 312 * T, 19.5 * T)),
    (r"\ba100\b", Gpu("A100-40GB", 40 * GIB, 312 * T, 312 * T, 19.5 * T)),
    (r"\bl40s\b", Gpu("L40S", 48 * GIB, 362 * T, 362 * T, 91.6 * T)),
    (r"\bl40\b", Gpu("L40", 48 * GIB, 181 * T, 181 * T, 90.5 * T)),
    (r"\bl4\b", Gpu("L4", 24 * GIB, 121 * T, 121 * T, 30.3 * T)),
    (r"\ba10g\b", Gpu("A10G", 24 * GIB, 70 * T, 70 * T, 31.2 * T)),
    (r"\ba10\b", Gpu("A10", 24 * GIB, 125 * T, 125 * T, 31.2 * T)),
    (r"\b6000 ada\b", Gpu("RTX6000-Ada", 48 * GIB, 364 * T, 364 * T, 91.1 * T)),
    (r"\ba6000\b", Gpu("A6000", 48 * GIB, 155 * T, 155 * T, 38.7 * T)),
    (r"\b(rtx )?5090\b", Gpu("RTX5090", 32 * GIB, 210 * T, 210 * T, 105 * T)),
    (r"\b(rtx )?4090\b", Gpu("RTX4090", 24 * GIB, 165 * T, 165 * T, 82.6 * T)),
    (r"\b(rtx )?3090\b", Gpu("RTX3090", 24 * GIB, 71 * T, 71 * T, 35.6 * T)),
    (r"\bv100\b.*\b32gb?\b", Gpu("V100-32GB", 32 * GIB, None, 125 * T, 15.7 * T)),
    (r"\bv100\b", Gpu("V100-16GB", 16 * GIB, None, 125 * T, 15.7 * T)),
    (r"\bt4\b", Gpu("T4", 15 * GIB, None, 65 * T, 8.1 * T)),
]


def _norm(name: str) -> str:
    """'NVIDIA A100-SXM4-80GB' -> 'nvidia a100 sxm4 80gb': words, so h100 never matches h1000."""
    return " ".join(re.findall(r"[a-z0-9]+", name.lower()))


def find_gpu(name: str | None) -> Gpu | None:
    """The table entry for an NVML name or a user's short name (H100, a100-80gb, 'NVIDIA GeForce RTX 4090')."""
    if not name:
        return None
    n = _norm(name)
    for pattern, gpu in GPUS:
        if n == _norm(gpu.key) or n.replace(" ", "") == _norm(gpu.key).replace(" ", "") or re.search(pattern, n):
            return gpu
    return None


def gpu_names() -> list[str]:
    return [g.key for _, g in GPUS]


def visible_gpu() -> dict | None:
    """The first visible GPU from NVML ({name, mem_total, mem_used}) or None; costs an NVML init (~50 ms)."""
    from engine.system.telemetry import Nvml

    devices = Nvml().devices()
    return devices[0] if devices else None


def cpu_key() -> str:
    """A stable name for this CPU, so measured CPU speed is reused only on the same kind of machine."""
    model = "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu:{model} x{os.cpu_count()}"


# -- measured efficiency --------------------------------------------------------------------------------
# Every finished run appends what it achieved (FLOP/s, and MFU where the peak is known); the estimate uses
# the median of the matching records. Priors (MFU) for a GPU with no record yet: typical HF Trainer figures.
PRIOR_MFU = {"full": 0.40, "lora": 0.35, "qlora": 0.25}
PRIOR_MFU_FP32 = 0.55  # CUDA-core fp32 matmuls reach a larger share of their (much lower) peak
KEEP = 200


def store_path() -> Path:
    base = os.environ.get("TUNEBENCH_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tunebench")
    return Path(base) / "efficiency.json"


def load_records(path: Path | None = None) -> list[dict]:
    path = path or store_path()
    try:
        data = json.loads(path.read_text())
        return [r for r in data.get("records", []) if isinstance(r, dict)]
    except (OSError, ValueError, AttributeError):
        return []  # no store yet, or a damaged one: the priors still answer


def add_record(record: dict, path: Path | None = None) -> Path:
    """Append one measurement (atomic replace; the newest KEEP records are kept)."""
    path = path or store_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    records = (load_records(path) + [{**record, "time": time.time()}])[-KEEP:]
    # not fsynced, as before: a store lost to a power cut only sends the estimate back to the priors
    atomic_write(path, json.dumps({"records": records}, indent=0), fsync=False)
    return path


def learned(device_key: str, kind: str, precision: str, shape: str | None = None, params: int | None = None,
            path: Path | None = None, any_model: bool = False) -> dict | None:
    """What earlier runs on this device achieved, from the runs most like this one: the same model shape
    (`shape`, estimate.shape_key), else a model of about the same size (0.5-2x `params`), else, with
    `any_model` (a GPU: utilisation carries over between models better than raw speed), any run with an MFU.

    A CPU run's speed depends on the model far more than its FLOPs say (a 1M-parameter model spends its step
    in overheads), so mixing models made the CPU estimate 30-1000x off. Returns {flops_per_s, mfu, runs,
    match ("this model", "a similar model", "other models"), spread (the rates' (max - min) / median)}."""
    records = [r for r in load_records(path) if r.get("device") == device_key and r.get("flops_per_s")
               and r.get("precision") == precision]
    same_kind = [r for r in records if r.get("kind") == kind]
    groups = [("this model", [r for r in same_kind if shape and r.get("shape") == shape]),
              ("a similar model", [r for r in same_kind if params and r.get("params")
                                   and 0.5 <= r["params"] / params <= 2])]
    if any_model:
        groups.append(("other models", [r for r in records if r.get("mfu")]))
    for match, use in groups:
        if not use:
            continue
        rates = [r["flops_per_s"] for r in use]
        mid = statistics.median(rates)
        mfus = [r["mfu"] for r in use if r.get("mfu")]
        return {"flops_per_s": mid, "mfu": statistics.median(mfus) if mfus else None, "runs": len(use),
                "match": match, "spread": (max(rates) - min(rates)) / mid if mid else 0.0,
                "exact": match == "this model"}
    return None
