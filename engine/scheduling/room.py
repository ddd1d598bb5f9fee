"""Which waiting runs may start now: each run's predicted peak (the memory estimate) against its device's room.

Light module (no torch): the estimate reads config.json only. `decide` is pure, so tests and the bench can feed
it a machine of their choosing; `Machine.probe()` describes this one (NVML for the GPU, psutil for the RAM).

The rule, in queue order, stopping at the first run that must wait (runs start in the order they were queued):
- at most `hardware.max_concurrent` active runs on the run's device; 0 (auto) = one at a time on a CPU (training
  already uses every core), no count limit on a GPU (memory decides);
- on a GPU the run starts when its predicted peak fits in HEADROOM (the verdict's `fits`, 85%) of the memory
  minus what is taken: max(NVML's used memory, the predicted peaks of the running runs) plus the predicted peaks
  of runs still starting, whose memory NVML does not show yet;
- a run whose peak is unknown (the estimate cannot read its model) counts as needing the whole device, and a run
  with nothing else on its device always starts: waiting would not make it fit better.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from engine.config import Config
from engine.planning.estimate import FIT, GIB, EstimateError, estimate
from engine.system import gpus as gpumod

HEADROOM = FIT  # the share of a device's memory the predicted peaks may take together


@dataclass(frozen=True)
class Device:
    kind: str               # "cuda" | "cpu"
    total: int | None       # bytes (GPU memory or RAM); None when unknown
    used: int | None        # bytes in use now (NVML / psutil)
    name: str = ""


@dataclass(frozen=True)
class Machine:
    """The devices runs are planned against; `cuda` is None on a machine without a visible GPU."""

    cpu: Device
    cuda: Device | None = None

    def device(self, kind: str) -> Device:
        return self.cuda if kind == "cuda" and self.cuda is not None else self.cpu

    @classmethod
    def probe(cls) -> Machine:
        """This machine now: the first GPU (the one engines train on by default) and the RAM. ~50 ms (NVML)."""
        import psutil

        from engine.system.telemetry import Nvml

        vm = psutil.virtual_memory()
        cpu = Device("cpu", vm.total, vm.total - vm.available, "cpu")
        gpus = Nvml().devices()
        cuda = None
        if gpus:
            g = gpus[0]
            cuda = Device("cuda", g.get("mem_total"), g.get("mem_used"), g.get("name") or "")
        return cls(cpu, cuda)


@dataclass
class Load:
    """A run that holds (or is about to hold) memory on a device."""

    run_id: str
    device: str
    peak: int | None           # predicted peak bytes; None = unknown (counts as the whole device)
    running: bool = True       # past start-up: its memory shows in NVML's used figure
    max_concurrent: int = 0
    extra: dict = field(default_factory=dict)


def device_of(cfg: Config, machine: Machine) -> str:
    """Where the engine will train this config on this machine (hardware.device auto = cuda when visible)."""
    if cfg.hardware.device != "auto":
        return cfg.hardware.device
    return "cuda" if machine.cuda is not None else "cpu"


def predicted_peak(cfg: Config, device: str, machine: Machine) -> int | None:
    """The estimate's peak for `cfg` on `device` (None when the model's config.json cannot be read)."""
    try:
        if device == "cuda":
            spec = gpumod.find_gpu(machine.cuda.name) if machine.cuda else None
            limit = machine.cuda.total if machine.cuda else None
            return estimate(cfg.with_values({"hardware.device": "cuda"}), gpu=spec, free_bytes=limit)["peak_bytes"]
        return estimate(cfg.with_values({"hardware.device": "cpu"}))["peak_bytes"]
    except (EstimateError, ValueError, KeyError):
        return None


def _gib(b) -> str:
    return f"{b / GIB:.1f} GiB" if b is not None else "?"


def decide(waiting: list[Load], active: list[Load], machine: Machine) -> list[dict]:
    """One decision per waiting run considered, in order: start, or wait (and nothing after it starts)."""
    out: list[dict] = []
    loads = list(active)
    for w in waiting:
        dev = machine.device(w.device)
        same = [x for x in loads if x.device == w.device]
        cap = w.max_concurrent or (1 if w.device == "cpu" else None)
        d = {"run": w.run_id, "device": w.device, "peak_bytes": w.peak, "active": len(same), "cap": cap,
             "total_bytes": dev.total, "used_bytes": dev.used}
        if cap is not None and len(same) >= cap:
            out.append({**d, "action": "wait", "reason": f"{len(same)} run(s) active on the {w.device}; at most {cap} "
                        f"({'hardware.max_concurrent' if w.max_concurrent else 'one at a time on a CPU'})"})
            break
        if not same:
            fits = dev.total is None or (w.peak is not None and w.peak <= HEADROOM * dev.total - (dev.used or 0))
            why = "nothing else on the device" if fits else (
                f"alone on the device: predicted {_gib(w.peak)} of {_gib(dev.total)} does not fit with headroom, "
                "and waiting would not free more")
            out.append({**d, "action": "start", "reason": why, "room_bytes": None})
            loads.append(w)
            continue
        total = dev.total or 0
        whole = int(HEADROOM * total)
        running = sum(x.peak if x.peak is not None else whole for x in same if x.running)
        pending = sum(x.peak if x.peak is not None else whole for x in same if not x.running)
        taken = max(dev.used or 0, running) + pending
        room = whole - taken
        d["room_bytes"] = room
        if w.peak is not None and w.peak <= room:
            out.append({**d, "action": "start", "reason": f"predicted {_gib(w.peak)} fits in {_gib(room)} of room "
                        f"({len(same)} run(s) there take {_gib(taken)} of {_gib(whole)})"})
            loads.append(Load(w.run_id, w.device, w.peak, running=False))
            continue
        need = "an unknown peak (its model's config.json is unreadable) needs the device alone" if w.peak is None \
            else f"predicted {_gib(w.peak)} > {_gib(room)} of room"
        out.append({**d, "action": "wait", "reason": f"{need}; {len(same)} run(s) take {_gib(taken)} of {_gib(whole)}"})
        break
    return out
