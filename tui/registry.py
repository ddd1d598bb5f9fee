"""The workbench's parts by name: the panes (key, title, "module:Class", key binding), the header widget.

Separate from tui.app so that screens (the help screen lists the panes) need not import the app.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class PaneSpec:
    key: str       # tab id and pane widget id
    title: str     # tab label
    target: str    # "module:Class"
    binding: str   # key that shows the pane
    short: str = ""  # tab label when the full titles do not fit the terminal's width

    @property
    def compact(self) -> str:
        return self.short or self.title


PANES: list[PaneSpec] = [
    PaneSpec("runs", "Runs", "tui.panes.runs:RunsPane", "1"),
    PaneSpec("dataset", "Dataset", "tui.panes.dataset:DatasetPane", "2", "Data"),
    PaneSpec("hyperparams", "Hyperparameters", "tui.panes.hyperparams:HyperparamsPane", "3", "Params"),
    PaneSpec("monitor", "Monitor", "tui.panes.monitor:MonitorPane", "4"),
    PaneSpec("checkpoints", "Checkpoints", "tui.panes.checkpoints:CheckpointsPane", "5", "Ckpts"),
    PaneSpec("overlay", "Overlay", "tui.panes.overlay:OverlayPane", "6"),
    PaneSpec("chat", "Chat", "tui.panes.chat:ChatPane", "7"),
    PaneSpec("sweeps", "Sweeps", "tui.panes.sweeps:SweepsPane", "8"),
]
# The widget at the top of every screen; the Monitor issue points this at its live telemetry header.
HEADER = "tui.widgets.sysheader:SystemHeader"
# Which pane gets RunSelected first (the first pane with open_run() otherwise).
RUN_PANE = "monitor"


def load(target: str) -> type:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
