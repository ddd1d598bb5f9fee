"""The Runs pane: every run in the runs directory, refreshed live; Enter opens one."""
from __future__ import annotations

import time
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import DataTable, Static

from engine.runs import Run, list_runs

from ..messages import RunSelected

STATE_STYLE = {"running": "bold green", "starting": "green", "paused": "yellow", "stopping": "yellow",
               "completed": "cyan", "stopped": "dim", "failed": "bold red", "lost": "bold red", "created": "dim"}
COLUMNS = ("run", "state", "step", "loss", "started", "model", "method")
# Fixed widths where values change in place (update_cell does not re-measure a column).
WIDTHS = {"state": 14, "step": 11, "loss": 8, "started": 14, "method": 14}


def run_row(run: Run) -> tuple:
    """The table cells for one run; reads status.json only (a few hundred bytes)."""
    status = run.status()
    state = run.state(status)
    label = f"{state} (crashed)" if state == "lost" else state
    step, max_steps = status.get("step") or 0, status.get("max_steps")
    loss = status.get("last_loss")
    started = status.get("started") or status.get("created")
    model = str(status.get("model") or "")
    return (run.id, Text(label, style=STATE_STYLE.get(state, "")),
            f"{step}/{max_steps}" if max_steps else str(step),
            f"{loss:.4f}" if isinstance(loss, (int, float)) else "-",
            time.strftime("%m-%d %H:%M:%S", time.localtime(started)) if started else "-",
            Path(model).name if "/" in model and Path(model).exists() else model,
            str(status.get("method") or "-"))


class RunsPane(Widget):
    """A table of runs; a 1 s timer re-reads status.json files (cheap: one small read per run)."""

    BINDINGS = [Binding("enter", "open", "Open run"), Binding("r", "refresh_runs", "Refresh")]
    DEFAULT_CSS = "RunsPane { height: 1fr; } RunsPane DataTable { height: 1fr; }"

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("", id="runs-summary", classes="help-text")
            yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for c in COLUMNS:
            table.add_column(c, key=c, width=WIDTHS.get(c))
        self.refresh_runs()
        self.set_interval(1.0, self.refresh_runs)

    def focus_first(self) -> None:
        self.query_one(DataTable).focus()

    def refresh_runs(self) -> None:
        table = self.query_one(DataTable)
        runs = list_runs(self.app.runs_dir)
        seen, added = set(), False
        for run in runs:
            cells = run_row(run)
            seen.add(run.id)
            if run.id in table.rows:
                for col, value in zip(COLUMNS[1:], cells[1:]):
                    table.update_cell(run.id, col, value)
            else:
                table.add_row(*cells, key=run.id)
                added = True
        if added and table.row_count > 1:
            # newest first, in list_runs' order (by creation time: ids resolve only seconds)
            order = {r.id: i for i, r in enumerate(runs)}
            table.sort("run", key=lambda rid: order.get(str(rid), len(order)))
        for key in [k for k in table.rows if k.value not in seen]:
            table.remove_row(key)
        active = sum(1 for r in runs if r.state() in ("starting", "running", "paused", "stopping"))
        self.query_one("#runs-summary", Static).update(
            f"{len(runs)} run(s) in {self.app.runs_dir}, {active} active. Enter opens a run."
            if runs else f"No runs yet in {self.app.runs_dir}. Launch one from Hyperparameters [3].")

    def action_refresh_runs(self) -> None:
        self.refresh_runs()

    def selected_run(self) -> Path | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return Path(self.app.runs_dir) / str(key.value)

    def action_open(self) -> None:
        path = self.selected_run()
        if path is not None:
            self.post_message(RunSelected(path))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.post_message(RunSelected(Path(self.app.runs_dir) / str(event.row_key.value)))

    def commands(self):
        return [("Refresh runs", "Re-read every run's status", self.refresh_runs)]
