"""A run's status.json and last log lines, shown when no Monitor pane takes the run."""
from __future__ import annotations

import json
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from engine.rundir.runs import Run, placement


class RunStatusScreen(Screen):
    """The run's state and status fields, refreshed every second; escape goes back."""

    BINDINGS = [Binding("escape,q", "app.pop_screen", "Back")]

    def __init__(self, run_path: Path):
        super().__init__()
        self.run_ = Run(run_path)

    def compose(self) -> ComposeResult:
        yield self.app.system_header()
        with VerticalScroll(id="run-status-body"):
            yield Static(f"run {self.run_.id}", classes="pane-title")
            yield Static("", id="run-status-text")
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_status()
        self.set_interval(1.0, self.refresh_status)

    def refresh_status(self) -> None:
        status = self.run_.status()
        state = self.run_.state(status)
        lines = [f"state: {state}" + ("  (the engine process is gone)" if state == "lost" else ""),
                 f"where: {placement(status)}"]
        shown = {k: v for k, v in status.items() if k not in ("state", "resolved", "summary")}
        lines += [f"{k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in sorted(shown.items())]
        try:
            tail = self.run_.log_path.read_text(errors="replace").splitlines()[-12:]
        except OSError:
            tail = []
        if tail:
            lines += ["", "engine.log:"] + tail
        from rich.text import Text

        self.query_one("#run-status-text", Static).update(Text("\n".join(lines)))
