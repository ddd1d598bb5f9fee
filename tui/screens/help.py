"""The help screen: every pane with its key, the app's bindings, where runs live."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Markdown

from tui.registry import PANES


class HelpScreen(Screen):
    """Keys and panes; escape or q closes it."""

    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "Close")]

    def compose(self) -> ComposeResult:
        yield self.app.system_header()
        rows = "\n".join(f"| `{p.binding}` | {p.title} |" for p in PANES)
        text = f"""# tunebench

A workbench for fine-tuning: prepare a dataset, set hyperparameters, launch a run, watch it.
Runs keep going when you quit; open the workbench again to see them.

| key | pane |
|-----|------|
{rows}

| key | anywhere |
|-----|----------|
| `ctrl+p` | command palette (every command of the app) |
| `?` / `f1` | this help |
| `tab` / `shift+tab` | move between fields |
| `escape` | leave a text field (digits type there; the pane keys work again after) |
| `q` | quit (runs keep going) |

Runs live in `{self.app.runs_dir}` (`--runs-dir` or `TUNEBENCH_RUNS_DIR` to change it).
"""
        with VerticalScroll(id="help-body"):
            yield Markdown(text)
        yield Footer()
