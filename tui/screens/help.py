"""The help screen: every pane with its key, the app's bindings, where runs live."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Markdown

from tui.registry import PANES


def pane_keys(app, pane) -> list[tuple[str, str]]:
    """(key as shown, what it does) for every binding of `pane` that says what it does."""
    out = []
    for b in getattr(type(pane), "BINDINGS", []):
        binding = b if isinstance(b, Binding) else Binding(*b)
        if binding.description:
            keys = " / ".join(app.get_key_display(Binding(k, binding.action)) for k in binding.key.split(","))
            out.append((keys, binding.description))
    return out


class HelpScreen(Screen):
    """Keys and panes, the keys of the pane in front first; escape or q closes it."""

    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "Close")]

    def __init__(self, pane=None, title: str = ""):
        super().__init__()
        self.pane, self.title_ = pane, title

    def compose(self) -> ComposeResult:
        yield self.app.system_header()
        rows = "\n".join(f"| `{p.binding}` | {p.title} |" for p in PANES)
        keys = pane_keys(self.app, self.pane) if self.pane is not None else []
        front = ""
        if keys:
            front = f"## {self.title_}\n\n| key | in this pane |\n|-----|------|\n" + "\n".join(
                f"| `{k}` | {d} |" for k, d in keys) + "\n\n"
        text = front + f"""# tunebench

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
