"""The system header slot shown at the top of every screen (the Monitor issue gives it live telemetry)."""
from __future__ import annotations

import socket

from textual.widgets import Static


class SystemHeader(Static):
    """One line: app name, host and runs directory. A replacement must keep id `system-header` styling."""

    DEFAULT_CLASSES = "system-header"

    def __init__(self, runs_dir: str = "", **kw):
        super().__init__(**kw)
        self.runs_dir = runs_dir

    def on_mount(self) -> None:
        self.update(f"[b]tunebench[/b]  {socket.gethostname()}  runs: {self.runs_dir}")
