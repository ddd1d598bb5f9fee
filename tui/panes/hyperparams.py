"""The Hyperparameters pane: a form built from engine.config.SCHEMA, presets, diff, YAML, Launch."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Static


class HyperparamsPane(Widget):
    """The config form (being built)."""

    def compose(self) -> ComposeResult:
        yield Static("Hyperparameters", classes="pane-title")
