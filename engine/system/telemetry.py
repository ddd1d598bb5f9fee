"""System telemetry: NVML (GPU memory, utilisation, power, temperature, processes) and psutil (CPU, RSS).

Light module: pynvml is imported lazily and torch is only read if the caller already imported it. An
unavailable value is None ("N/A" to the reader), never an exception: no GPU is a normal state.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Callable, Iterator

import psutil


class Nvml:
    """One wrapper around NVML; `available` is False when there is no driver or no GPU."""

    def __init__(self):
        self.available = False
        self.error: str | None = None
        self._nv = None
        try:
            import pynvml  # nvidia-ml-py

            pynvml.nvmlInit()
            self._nv = pynvml
            self.count = pynvml.nvmlDeviceGetCount()
            self.available = self.count > 0
        except Exception as e:  # noqa: BLE001 - any NVML failure means "no GPU telemetry"
            self.count = 0
            self.error = str(e) or type(e).__name__

    def _get(self, fn, *args):
        try:
            return fn(*args)
        except Exception:  # noqa: BLE001 - an unsupported query is N/A, not an error
            return None

    def devices(self, with_processes: bool = False) -> list[dict]:
        if not self.available:
            return []
        nv = self._nv
        out = []
        for i in range(self.count):
            h = self._get(nv.nvmlDeviceGetHandleByIndex, i)
            if h is None:
                continue
            mem = self._get(nv.nvmlDeviceGetMemoryInfo, h)
            util = self._get(nv.nvmlDeviceGetUtilizationRates, h)
            power = self._get(nv.nvmlDeviceGetPowerUsage, h)
            name = self._get(nv.nvmlDeviceGetName, h)
            d = {
                "index": i,
                "name": name.decode() if isinstance(name, bytes) else name,
                "mem_used": getattr(mem, "used", None),
                "mem_total": getattr(mem, "total", None),
                "util": getattr(util, "gpu", None),
                "power_w": power / 1000 if power is not None else None,
                "temp_c": self._get(nv.nvmlDeviceGetTemperature, h, 0),  # 0 = NVML_TEMPERATURE_GPU
            }
            if with_processes:
                procs = self._get(nv.nvmlDeviceGetComputeRunningProcesses, h) or []
                d["processes"] = [{"pid": p.pid, "mem": getattr(p, "usedGpuMemory", None)} for p in procs]
            out.append(d)
        return out


def process_info(pid: int) -> dict:
    """Owner and command line of a process, or {} when it is gone or hidden."""
    try:
        p = psutil.Process(pid)
        return {"user": p.username(), "cmd": " ".join(p.cmdline()[:4])}
    except (psutil.Error, OSError):
        return {}


def torch_memory() -> dict:
    """torch's CUDA allocator figures, only when torch is already imported and CUDA initialised."""
    torch = sys.modules.get("torch")
    if torch is None:
        return {}
    try:
        if not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return {}
        # memory_allocated/reserved read allocator counters: no device sync, cheap.
        return {
            "torch_allocated": torch.cuda.memory_allocated(),
            "torch_reserved": torch.cuda.memory_reserved(),
            "torch_peak": torch.cuda.max_memory_allocated(),
        }
    except Exception:  # noqa: BLE001
        return {}


class Probe:
    """Takes one telemetry sample for a process (the engine itself by default)."""

    def __init__(self, pid: int | None = None, gpus: bool = True):
        self.proc = psutil.Process(pid or os.getpid())
        self.proc.cpu_percent(None)  # prime: the first call always returns 0
        self.nvml = Nvml() if gpus else None

    def sample(self) -> dict:
        s: dict = {}
        try:
            s["rss"] = self.proc.memory_info().rss
            s["cpu_percent"] = self.proc.cpu_percent(None)
        except psutil.Error:
            pass
        vm = psutil.virtual_memory()
        s["ram_used"], s["ram_total"] = vm.total - vm.available, vm.total
        if self.nvml and self.nvml.available:
            gpus = self.nvml.devices(with_processes=True)
            me = self.proc.pid
            for g in gpus:
                mine = [p["mem"] for p in g.pop("processes", []) if p["pid"] == me]
                g["proc_mem"] = mine[0] if mine else None
            s["gpus"] = gpus
        s.update(torch_memory())
        return s


class FixedSchedule:
    """Ticks at start + k*interval until `stop` is set: iterate it and take one sample per tick.

    Each tick is computed from the start, not from the previous tick, so the schedule does not drift; a
    slow sample skips the ticks it overran instead of running twice in a row, so samples never overlap or
    bunch up. One schedule for every sampler (the engine's telemetry, the TUI's system header).
    """

    def __init__(self, interval: float, stop: threading.Event | None = None):
        self.interval = interval
        self.stop = stop if stop is not None else threading.Event()
        self.ticks = 0
        self.skipped = 0

    def __iter__(self) -> Iterator[int]:
        start = time.monotonic()
        k = 0
        while not self.stop.is_set():
            yield self.ticks
            self.ticks += 1
            k += 1
            now = time.monotonic()
            due = start + k * self.interval
            if due < now:  # overran: skip to the next tick in the future
                missed = int((now - due) // self.interval) + 1
                self.skipped += missed
                k += missed
                due = start + k * self.interval
            self.stop.wait(due - now)


class Sampler:
    """Calls `fn()` on a FixedSchedule of `interval` seconds in a daemon thread."""

    def __init__(self, fn: Callable[[], None], interval: float = 1.0, name: str = "telemetry"):
        self.fn = fn
        self.schedule = FixedSchedule(interval)
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    @property
    def ticks(self) -> int:
        return self.schedule.ticks

    @property
    def skipped(self) -> int:
        return self.schedule.skipped

    def start(self) -> "Sampler":
        self._thread.start()
        return self

    def _loop(self) -> None:
        for _ in self.schedule:
            try:
                self.fn()
            except Exception:  # noqa: BLE001 - telemetry must never take the run down
                pass

    def stop(self) -> None:
        self.schedule.stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
