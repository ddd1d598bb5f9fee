"""The system header on every screen, like nvitop's: each GPU, its memory, utilisation and who holds it.

A thread worker samples NVML (engine.system.telemetry.Nvml) and psutil at 1 Hz on the engine's
FixedSchedule (the one its telemetry Sampler keeps) and posts the snapshot; the UI thread only formats it,
so a slow NVML call never blocks a keystroke. GPU processes are matched to tunebench runs through the pids
in the runs' status.json files (and their parents, for ranks started by accelerate/torchrun). Without a
GPU the header is one line: CPU and RAM.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass

import psutil
from rich.text import Text
from textual import work
from textual.message import Message
from textual.widgets import Static

from engine.rundir.runs import ACTIVE, list_runs
from engine.system.telemetry import FixedSchedule, Nvml, process_info

GIB = 1 << 30
RUN_MAP_EVERY = 5.0  # seconds between re-reads of the runs' status.json files (one small read per run)


def run_pids(runs_dir) -> dict[int, str]:
    """pid -> run id for every active run on this host (from status.json; no process lookups)."""
    host = socket.gethostname()
    out = {}
    for run in list_runs(runs_dir):
        st = run.status()
        if st.get("state") in ACTIVE and st.get("pid") and st.get("host") in (None, host):
            out[int(st["pid"])] = run.id
    return out


def owner_run(pid: int, pids: dict[int, str]) -> str | None:
    """The run a GPU process belongs to: its own pid or an ancestor's (ranks under a launcher)."""
    if pid in pids:
        return pids[pid]
    try:
        for parent in psutil.Process(pid).parents()[:4]:
            if parent.pid in pids:
                return pids[parent.pid]
    except (psutil.Error, OSError):
        pass
    return None


def take_snapshot(nvml: Nvml | None, runs_dir, pids: dict[int, str]) -> dict:
    """One sample of the machine: GPUs with their processes (owner, run), CPU, RAM, load."""
    vm = psutil.virtual_memory()
    snap = {"time": time.time(), "host": socket.gethostname(), "cpu_percent": psutil.cpu_percent(None),
            "ncpu": psutil.cpu_count() or 1, "ram_used": vm.total - vm.available, "ram_total": vm.total,
            "load": os.getloadavg()[0] if hasattr(os, "getloadavg") else None, "gpus": [],
            "nvml_error": None if nvml and nvml.available else (nvml.error if nvml else "not sampled")}
    if nvml and nvml.available:
        gpus = nvml.devices(with_processes=True)
        for g in gpus:
            procs = []
            for p in g.get("processes") or []:
                info = process_info(p["pid"])
                procs.append({**p, "user": info.get("user"), "cmd": info.get("cmd"),
                              "run": owner_run(p["pid"], pids)})
            g["processes"] = sorted(procs, key=lambda p: -(p.get("mem") or 0))
        snap["gpus"] = gpus
    return snap


def _gib(n) -> str:
    return f"{n / GIB:.1f}" if n is not None else "N/A"


def _bar(frac: float | None, width: int = 10) -> str:
    if frac is None:
        return "·" * width
    full = int(round(max(0.0, min(1.0, frac)) * width))
    return "█" * full + "░" * (width - full)


def render_header(snap: dict | None, runs_dir: str = "", width: int = 200, style=None) -> Text:
    """The header text for one snapshot; pure (tested without a terminal). One line for the machine, then one
    line per GPU, each fitted to `width` (narrow terminals get the short form: no bar, short names, the least
    important parts last, where an ellipsis cuts them). `style(name)` gives the Rich style of a component class
    (strong, dim, ok, warn, bad, run); none: plain text."""
    st = style or (lambda name: "")
    narrow = width < 110
    sep = " · " if narrow else "  ·  "
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append("tunebench ", st("strong"))
    if snap is None:
        t.append(f"{socket.gethostname()}  sampling…  runs: {runs_dir}")
        return t
    t.append(f"{snap['host']}{sep.rstrip() if narrow else '  '} ")
    if narrow:
        cpu = f"CPU {snap['cpu_percent']:.0f}%/{snap['ncpu']}"
        ram = f"RAM {_gib(snap['ram_used'])}/{_gib(snap['ram_total'])}G"
    else:
        cpu = f"CPU {snap['cpu_percent']:.0f}% of {snap['ncpu']}"
        ram = f"RAM {_gib(snap['ram_used'])}/{_gib(snap['ram_total'])} GiB"
    load = [f"load {snap['load']:.1f}"] if snap.get("load") is not None else []
    if not snap["gpus"]:
        reason = snap.get("nvml_error") or "no device"
        t.append("no GPU", st("strong"))
        if narrow:  # the reason last: it is what an 80-column line loses first
            t.append(sep + sep.join([cpu, ram, *load, f"runs: {runs_dir}", f"NVML: {reason}"]))
        else:
            t.append(f" (NVML: {reason})" + sep + sep.join([cpu, ram, *load, f"runs: {runs_dir}"]))
        return _fit(t, width)
    t.append(sep.join([cpu, ram, *load, f"runs: {runs_dir}"]))
    for g in snap["gpus"]:
        t.append("\n")
        t.append_text(gpu_line(g, narrow, st))
    return _fit(t, width)


def gpu_line(g: dict, narrow: bool, st) -> Text:
    """One GPU: memory (bar and figures), utilisation, power, temperature, then who holds memory on it."""
    t = Text()
    used, total = g.get("mem_used"), g.get("mem_total")
    frac = used / total if used is not None and total else None
    level = "bad" if frac is not None and frac > 0.95 else ("warn" if frac and frac > 0.8 else "ok")
    name = (g.get("name") or "GPU").replace("NVIDIA ", "").replace("GeForce ", "")
    util, power, temp = g.get("util"), g.get("power_w"), g.get("temp_c")
    if narrow:
        t.append(f"GPU{g['index']} {name[:9]:9} ", st("strong"))
        t.append(_bar(frac, 5), st(level))
        t.append(f" {_gib(used)}/{_gib(total)}G {util if util is not None else 'N/A':>3}%"
                 f" {f'{power:.0f}' if power is not None else 'N/A'}W {temp if temp is not None else 'N/A'}°")
    else:
        t.append(f"GPU{g['index']} {name[:18]:18} ", st("strong"))
        t.append(_bar(frac), st(level))
        t.append(f" {_gib(used)}/{_gib(total)} GiB")
        t.append(f"  {util if util is not None else 'N/A':>3}%")
        t.append(f"  {power:.0f} W" if power is not None else "  N/A W")
        t.append(f"  {temp}°C" if temp is not None else "  N/A°C")
    procs = g.get("processes") or []
    if not procs:
        t.append(" │ no processes" if narrow else "  │ no processes", st("dim"))
    shown = 2 if narrow else 4
    for i, p in enumerate(procs[:shown]):
        t.append((" │ " if narrow else "  │ ") if i == 0 else " · ", st("dim"))
        if not (narrow and p.get("run")):
            t.append(f"{p['pid']} {p.get('user') or '?'} ")
        if p.get("run"):
            t.append(f"run {p['run'][-4:] if narrow else p['run']}", st("run"))  # narrow: the id's random suffix
        else:
            t.append((p.get("cmd") or "(not visible here)").split(" ")[0].rsplit("/", 1)[-1][:12 if narrow else 20],
                     st("dim"))
        t.append(f" {_gib(p.get('mem'))}G")
    if len(procs) > shown:
        t.append(f" · +{len(procs) - shown} more", st("dim"))
    return t


def _fit(t: Text, width: int) -> Text:
    """Every line cut to `width` with an ellipsis: one line per GPU, never two."""
    out = Text(no_wrap=True, overflow="ellipsis")
    for i, line in enumerate(t.split("\n")):
        if i:
            out.append("\n")
        if line.cell_len > width > 1:
            line.truncate(width, overflow="ellipsis")
        out.append_text(line)
    return out


class SystemHeader(Static):
    """The header; a thread worker samples at 1 Hz on a fixed schedule and posts Sampled messages."""

    DEFAULT_CLASSES = "system-header"
    COMPONENT_CLASSES = {"sysheader--strong", "sysheader--dim", "sysheader--ok", "sysheader--warn",
                         "sysheader--bad", "sysheader--run"}
    DEFAULT_CSS = """
    SystemHeader { height: auto; max-height: 9; text-wrap: nowrap; text-overflow: ellipsis; }
    SystemHeader > .sysheader--strong { text-style: bold; }
    SystemHeader > .sysheader--dim { color: $text-muted; }
    SystemHeader > .sysheader--ok { color: $success; }
    SystemHeader > .sysheader--warn { color: $warning; }
    SystemHeader > .sysheader--bad { color: $error; text-style: bold; }
    SystemHeader > .sysheader--run { color: $accent; text-style: bold; }
    """
    INTERVAL = 1.0

    @dataclass
    class Sampled(Message):
        """A new machine snapshot; a newer one replaces one still queued."""

        snapshot: dict

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, SystemHeader.Sampled)

    def __init__(self, runs_dir: str = "", **kw):
        super().__init__(**kw)
        self.runs_dir = runs_dir
        self.snapshot: dict | None = None
        self.samples = 0
        self._stop = threading.Event()

    def on_mount(self) -> None:
        self.update(render_header(None, self.runs_dir, style=self._style))
        self.sample_loop()

    def on_unmount(self) -> None:
        self._stop.set()

    @work(thread=True, exclusive=True, group="system-header", exit_on_error=False)
    def sample_loop(self) -> None:
        nvml = Nvml()  # NVML init can take a second on a busy server: here, not on the UI thread
        psutil.cpu_percent(None)  # prime: the first system-wide reading is always 0
        pids: dict[int, str] = {}
        pids_at = 0.0
        for _ in FixedSchedule(self.INTERVAL, self._stop):
            now = time.monotonic()
            if nvml.available and now - pids_at > RUN_MAP_EVERY:
                try:
                    pids, pids_at = run_pids(self.runs_dir), now
                except OSError:
                    pass
            self.post_message(self.Sampled(take_snapshot(nvml, self.runs_dir, pids)))

    def on_system_header_sampled(self, message: Sampled) -> None:
        self.snapshot = message.snapshot
        self.samples += 1
        self.update(render_header(message.snapshot, self.runs_dir, self.size.width, self._style))

    def on_resize(self) -> None:
        if self.snapshot is not None:  # the short or the long form, at once
            self.update(render_header(self.snapshot, self.runs_dir, self.size.width, self._style))

    def _style(self, name: str):
        return self.get_component_rich_style(f"sysheader--{name}")
