"""The Dataset pane: pick a file, see its format, rows, invalid rows and token lengths."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Static


class DatasetPane(Widget):
    """Dataset inspection (being built: file picker, paged rows, histogram, rendered row)."""

    def compose(self) -> ComposeResult:
        yield Static("Dataset", classes="pane-title")
