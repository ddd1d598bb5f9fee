"""Messages that cross panes; each pane defines its own local messages in its module."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.message import Message


@dataclass
class RunSelected(Message):
    """The user chose a run to open; the app routes it to the pane that shows runs (Monitor)."""

    run_path: Path


@dataclass
class ShowPane(Message):
    """Switch to the pane with this key (see tui.app.PANES)."""

    key: str


@dataclass
class ConfigChosen(Message):
    """A config (e.g. from the Dataset pane's file) should be shown in the Hyperparameters form."""

    updates: dict  # dotted key -> value, e.g. {"data.train": "/path/file.jsonl"}
