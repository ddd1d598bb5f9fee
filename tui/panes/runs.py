"""The Runs pane: every run in the runs directory, refreshed live; Enter opens one. Queued runs show their place
in the queue; + and - move one up or down, x cancels it (engine.rundir.queue)."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import NamedTuple

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import DataTable, Static

from engine.rundir.queue import Queue
from engine.rundir.runs import ACTIVE, WAITING, Run, created_time, placement
from tui.messages import RunSelected

STATE_STYLE = {"running": "bold green", "starting": "green", "paused": "yellow", "stopping": "yellow",
               "completed": "cyan", "stopped": "dim", "failed": "bold red", "lost": "bold red", "created": "dim",
               "unstarted": "yellow", "queued": "magenta"}
LABELS = {"lost": "lost (crashed)", "unstarted": "never started"}  # derived states, as the table says them
COLUMNS = ("run", "state", "where", "step", "loss", "started", "model", "method")
# Fixed widths where values change in place (update_cell does not re-measure a column).
WIDTHS = {"state": 14, "where": 20, "step": 11, "loss": 8, "started": 14, "method": 14}


def run_row(run: Run, status: dict | None = None, state: str | None = None, position: int | None = None) -> tuple:
    """The table cells for one run; reads status.json only (a few hundred bytes). `where` is what the engine or
    the Slurm watcher recorded there (local, a host, nodes, a Slurm job and its state): the pane asks no one;
    `position` is a run's place in the runs dir's queue."""
    status = status if status is not None else run.status()
    state = state or run.state(status)
    label = LABELS.get(state, state)
    if state == "queued" and position:
        label = f"queued #{position}"
    step, max_steps = status.get("step") or 0, status.get("max_steps")
    loss = status.get("last_loss")
    started = status.get("started") or status.get("created")
    model = str(status.get("model") or "")
    return (run.id, Text(label, style=STATE_STYLE.get(state, "")), placement(status),
            f"{step}/{max_steps}" if max_steps else str(step),
            f"{loss:.4f}" if isinstance(loss, (int, float)) else "-",
            time.strftime("%m-%d %H:%M:%S", time.localtime(started)) if started else "-",
            Path(model).name if "/" in model and Path(model).exists() else model,
            str(status.get("method") or "-"))


class Row(NamedTuple):
    key: tuple        # status.json's (mtime_ns, size) when it was read
    created: float    # the run's creation time (sort key)
    cells: tuple
    recheck: bool     # status says active: re-read each refresh, its engine may have died
    active: bool      # shown as active (not lost)
    queued: bool      # waiting for a scheduler (Slurm)


class RunRows:
    """Every run's cells, newest first, re-read only where something changed.

    A refresh costs one scandir and one stat of each status.json; a run's status.json is read again only
    when its size or mtime changed, or while it is active (its engine may die without writing). With 1,000
    finished runs that is ~1,000 stats a second instead of 1,000 reads and JSON parses on the UI thread."""

    def __init__(self):
        self.cache: dict[str, Row] = {}  # by run id

    def scan(self, runs_dir: str | Path) -> list[tuple[str, tuple]]:
        positions = Queue(runs_dir).positions()  # one listdir + a small file per queued run
        try:
            entries = [e for e in os.scandir(runs_dir) if e.is_dir() and not e.name.startswith(".")]
        except FileNotFoundError:
            entries = []
        rows = []
        for e in entries:
            try:
                if e.stat().st_uid != os.getuid():
                    continue  # another user's run is never read (its config decides what code would run)
                st = os.stat(os.path.join(e.path, "status.json"))
                key = (st.st_mtime_ns, st.st_size, positions.get(e.name))  # a queued run moves without a new status
            except FileNotFoundError:  # deleted under a live engine, or damaged: the run is still there
                if not os.path.exists(os.path.join(e.path, "config.yaml")):
                    continue  # not a run directory (or one being deleted)
                key = None
            except OSError:
                continue
            hit = self.cache.get(e.name)
            if hit is None or hit.key != key or hit.recheck:
                run = Run(e.path)
                status = run.status()
                state = run.state(status)  # "lost" when the status says active but the engine is gone
                created = hit.created if hit is not None else created_time(run)
                cells = run_row(run, status, state, positions.get(e.name))
                if hit is not None and cells == hit.cells:
                    cells = hit.cells  # unchanged: the same tuple, so the pane skips the row
                # re-read each refresh while the file can say less than the truth: an active run's engine may die,
                # a created run's launcher may (it becomes `unstarted`), an unreadable status may come back
                recheck = status.get("state") in (*ACTIVE, "created") or bool(status.get("unreadable"))
                hit = self.cache[e.name] = Row(key, created, cells, recheck, state in ACTIVE, state in WAITING)
            rows.append((hit.created, e.name, hit.cells))
        live = {name for _, name, _ in rows}
        for name in [n for n in self.cache if n not in live]:
            del self.cache[name]
        rows.sort(key=lambda r: (r[0], r[1]), reverse=True)  # newest first, as list_runs orders them
        return [(name, cells) for _, name, cells in rows]


class RunsPane(Widget):
    """A table of runs; a 1 s timer refreshes it through RunRows (stats; reads only what changed)."""

    BINDINGS = [Binding("enter", "open", "Open run"), Binding("r", "refresh_runs", "Refresh"),
                Binding("plus", "move('up')", "Queue up"), Binding("minus", "move('down')", "Queue down"),
                Binding("x", "cancel", "Cancel queued")]
    DEFAULT_CSS = "RunsPane { height: 1fr; } RunsPane DataTable { height: 1fr; }"

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("", id="runs-summary", classes="help-text")
            yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self._rows, self._shown, self._summary = RunRows(), {}, None
        table = self.query_one(DataTable)
        for c in COLUMNS:
            table.add_column(c, key=c, width=WIDTHS.get(c))
        self.refresh_runs()
        self.set_interval(1.0, self.refresh_runs)

    def focus_first(self) -> None:
        self.query_one(DataTable).focus()

    def refresh_runs(self) -> None:
        table = self.query_one(DataTable)
        rows = self._rows.scan(self.app.runs_dir)
        was = self.selected_run()
        added = False
        for run_id, cells in rows:
            shown = self._shown.get(run_id)
            if shown is None:
                table.add_row(*cells, key=run_id)
                added = True
            elif shown is not cells:  # RunRows hands back the same tuple while nothing changed
                for col, old, value in zip(COLUMNS[1:], shown[1:], cells[1:]):
                    if old != value:
                        table.update_cell(run_id, col, value)
            self._shown[run_id] = cells
        if added and table.row_count > 1:
            # newest first, in RunRows' order (by creation time: ids resolve only seconds)
            order = {run_id: i for i, (run_id, _) in enumerate(rows)}
            table.sort("run", key=lambda rid: order.get(str(rid), len(order)))
        seen = {run_id for run_id, _ in rows}
        removed = [k for k in table.rows if k.value not in seen]
        for key in removed:
            table.remove_row(key)
            self._shown.pop(key.value, None)
        if (added or removed) and was is not None and was.name in table.rows:
            table.move_cursor(row=table.get_row_index(was.name))  # Enter opens the run it was on
        active = sum(1 for name, _ in rows if self._rows.cache[name].active)
        queued = sum(1 for name, _ in rows if self._rows.cache[name].queued)
        waiting = f", {queued} queued (+/- reorder, x cancel)" if queued else ""
        summary = (f"{len(rows)} run(s) in {self.app.runs_dir}, {active} active{waiting}. Enter opens a run."
                   if rows else f"No runs yet in {self.app.runs_dir}. Launch one from Hyperparameters [3].")
        if summary != self._summary:
            self._summary = summary
            self.query_one("#runs-summary", Static).update(summary)

    def action_refresh_runs(self) -> None:
        self.refresh_runs()

    def selected_run(self) -> Path | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return Path(self.app.runs_dir) / str(key.value)

    def action_move(self, where: str) -> None:
        """Move the selected queued run one place up or down in the queue."""
        path = self.selected_run()
        q = Queue(self.app.runs_dir)
        try:
            with q.locked():
                pos = q.move(path.name, where) if path is not None else None
        except LookupError:
            self.app.notify("only a queued run can move in the queue", severity="warning")
            return
        if pos is not None:
            self.refresh_runs()
            self.app.set_status(f"{path.name}: #{pos} in the queue")
            table = self.query_one(DataTable)
            table.move_cursor(row=table.get_row_index(path.name))

    def action_cancel(self) -> None:
        """Take the selected queued run out of the queue (it never started; it stays listed as stopped)."""
        path = self.selected_run()
        if path is None:
            return
        q = Queue(self.app.runs_dir)
        try:
            with q.locked():
                q.cancel(path.name)
        except LookupError as e:
            self.app.notify(str(e), severity="warning")
            return
        self.refresh_runs()
        self.app.set_status(f"{path.name}: cancelled while queued")

    def action_open(self) -> None:
        path = self.selected_run()
        if path is not None:
            self.post_message(RunSelected(path))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.post_message(RunSelected(Path(self.app.runs_dir) / str(event.row_key.value)))

    def commands(self):
        return [("Refresh runs", "Re-read every run's status", self.refresh_runs)]
