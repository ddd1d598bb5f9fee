"""The full config as YAML, read-only, with its problems listed first."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static, TextArea


class YamlScreen(Screen):
    """Escape goes back; the text can be selected and copied."""

    BINDINGS = [Binding("escape,q", "app.pop_screen", "Back")]

    def __init__(self, text: str, problems: list):
        super().__init__()
        self.text, self.problems = text, problems

    def compose(self) -> ComposeResult:
        yield self.app.system_header()
        if self.problems:
            yield Static("\n".join(f"• {p}" for p in self.problems), classes="error", id="yaml-problems")
        yield TextArea(self.text, language="yaml", read_only=True, id="yaml-text")
        yield Footer()
