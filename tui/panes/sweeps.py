"""The Sweeps pane: one table of a sweep's trials (swept values, state, best and last objective, tokens/s, peak
memory), sortable, the best marked; o puts every trial's curves in Overlay, b takes the best trial's model to
Checkpoints (as A, ready to compare or export), Enter opens a trial's run in Monitor.

Reads runs/sweeps/<id>/sweep.json and summary.json and the trials' status.json through
engine.scheduling.sweepfiles, never Optuna: the scheduler keeps summary.json (and the parameter importance) up
to date. A 2 s timer re-reads the files on a thread; the UI thread only draws.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import DataTable, OptionList, Static
from textual.widgets.option_list import Option

from engine.scheduling import sweepfiles
from tui.messages import RunSelected

GIB = 2**30
FIXED = ("trial", "state")
METRICS = ("best", "last", "tok/s", "peak GiB")
STATE_STYLE = {"completed": "cyan", "running": "bold green", "starting": "green", "queued": "magenta",
               "pruned": "yellow", "failed": "bold red", "lost": "bold red", "stopped": "dim"}


def fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def sort_value(row: dict, column: str, keys: list[str]):
    """What a column sorts by: numbers as numbers, missing values last."""
    v = {"trial": row["trial"], "state": row["state"], "best": row["best"], "last": row["last"],
         "tok/s": row["tokens_per_s"], "peak GiB": row["peak_bytes"]}.get(column)
    if column in keys:
        v = row["params"].get(column)
    if v is None:
        return (1, 0, "")
    return (0, v, "") if isinstance(v, (int, float)) else (0, 0, str(v))


class SweepsPane(Widget):
    """Sweeps on the left, the chosen sweep's trials on the right."""

    BINDINGS = [Binding("s", "sort", "Sort"), Binding("S", "reverse", "Reverse", show=False),
                Binding("o", "overlay", "Curves in Overlay"), Binding("b", "best", "Best to Checkpoints"),
                Binding("enter", "open", "Open trial", show=False)]
    DEFAULT_CSS = """
    SweepsPane { height: 1fr; }
    SweepsPane #sw-list { width: 26; height: 1fr; }
    SweepsPane #sw-right { width: 1fr; }
    SweepsPane #sw-info, SweepsPane #sw-importance { height: auto; }
    SweepsPane #sw-info { color: $text-muted; }
    SweepsPane #sw-trials { height: 1fr; }
    """

    @dataclass
    class Loaded(Message):
        """The sweeps list and the chosen sweep's table, read on a thread."""

        sweeps: list[tuple[str, str]]  # (id, label)
        table: dict | None

    def __init__(self, **kw):
        super().__init__(**kw)
        self.sweep_id: str | None = None
        self.data: dict | None = None
        self.sort_by = "trial"
        self.descending = False
        self._sweeps: list[tuple[str, str]] = []
        self._shown: tuple | None = None

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield OptionList(id="sw-list")
            with Vertical(id="sw-right"):
                yield Static("No sweeps yet: tunebench sweep CONFIG --grid KEY=A,B (or --search ...).", id="sw-info")
                yield DataTable(id="sw-trials", cursor_type="row", zebra_stripes=True)
                yield Static("", id="sw-importance")

    def on_mount(self) -> None:
        self.reload()
        self.set_interval(2.0, self.reload)

    def focus_first(self) -> None:
        self.query_one("#sw-trials", DataTable).focus()

    # -- reading --------------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="sweeps-read", exit_on_error=False)
    def reload(self) -> None:
        runs_dir = self.app.runs_dir
        sweeps = []
        for p in sweepfiles.list_sweeps(runs_dir):
            sp = sweepfiles.spec(p)
            sweeps.append((p.name, f"{sp.get('name') or p.name}  {sp.get('state', '?')}"))
        chosen = self.sweep_id if any(s == self.sweep_id for s, _ in sweeps) else (sweeps[0][0] if sweeps else None)
        table = sweepfiles.table(runs_dir, sweepfiles.sweeps_dir(runs_dir) / chosen) if chosen else None
        self.post_message(self.Loaded(sweeps, table))

    def on_sweeps_pane_loaded(self, message: Loaded) -> None:
        message.stop()
        if message.sweeps != self._sweeps:
            self._sweeps = message.sweeps
            ol = self.query_one("#sw-list", OptionList)
            highlighted = ol.highlighted
            ol.clear_options()
            ol.add_options([Option(label, id=sid) for sid, label in message.sweeps])
            if message.sweeps:
                ol.highlighted = min(highlighted or 0, len(message.sweeps) - 1)
        if message.table is not None and (self.sweep_id is None or message.table["id"] == self.sweep_id):
            self.sweep_id = message.table["id"]
            self.data = message.table
            self.draw()

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        if event.option.id and event.option.id != self.sweep_id:
            self.sweep_id = event.option.id
            self._shown = None
            self.reload()

    # -- drawing --------------------------------------------------------------------------------------
    def keys(self) -> list[str]:
        return list((self.data or {}).get("space") or {})

    def columns(self) -> list[str]:
        return [*FIXED, *self.keys(), *METRICS]

    def rows(self) -> list[dict]:
        rows = list((self.data or {}).get("trials", []))
        return sorted(rows, key=lambda r: sort_value(r, self.sort_by, self.keys()), reverse=self.descending)

    def draw(self) -> None:
        d = self.data
        table = self.query_one("#sw-trials", DataTable)
        cols = self.columns()
        rows = self.rows()
        cells = [self.cells(r) for r in rows]
        shown = (tuple(cols), tuple((r["run"], tuple(map(str, c))) for r, c in zip(rows, cells)))
        if shown != self._shown:
            keep = self.selected()
            table.clear(columns=tuple(cols) != (self._shown or ((),))[0])
            if not table.columns:
                for c in cols:
                    label = c.rpartition(".")[2]
                    table.add_column(label + (" ▼" if c == self.sort_by and self.descending else
                                              " ▲" if c == self.sort_by else ""), key=c)
            for r, c in zip(rows, cells):
                table.add_row(*c, key=r["run"] or f"trial-{r['trial']}")
            if keep is not None and keep.get("run"):
                try:
                    table.move_cursor(row=table.get_row_index(keep["run"]))
                except Exception:  # noqa: BLE001 - the row is gone
                    pass
            self._shown = shown
        best = d.get("best")
        done = sum(1 for r in d["trials"] if r["optuna_state"] in ("COMPLETE", "PRUNED", "FAIL"))
        info = (f"{d['id']}  {d['state']} · {d['mode']} · {done}/{d['trials_total']} done · {d['direction']} "
                f"{d['objective']}" + (f" · best {fmt(best['value'])} (trial {best['trial']}, ★)" if best else "")
                + f" · sorted by {self.sort_by.rpartition('.')[2]}   [s] sort [o] curves [b] best → Checkpoints")
        self.query_one("#sw-info", Static).update(Text(info))  # Text: the [s] keys are not markup
        imp = d.get("importance")
        if imp:
            text = Text("importance  ")
            for k, v in imp.items():
                text.append(f"{k.rpartition('.')[2]} ", style="bold")
                text.append("█" * max(1, round(v * 10)) + f" {v:.2f}  ", style="cyan")
        else:
            text = Text(d.get("importance_note") or "", style="dim")
        self.query_one("#sw-importance", Static).update(text)

    def cells(self, r: dict) -> tuple:
        mark = "★ " if r["is_best"] else "  "
        state = Text(r["state"], style=STATE_STYLE.get(r["state"], ""))
        peak = f"{r['peak_bytes'] / GIB:.2f}" if r["peak_bytes"] else "-"
        return (Text(f"{mark}{r['trial']}", style="bold" if r["is_best"] else ""), state,
                *(fmt(r["params"].get(k)) for k in self.keys()),
                fmt(r["best"]), fmt(r["last"]), fmt(r["tokens_per_s"]), peak)

    # -- actions --------------------------------------------------------------------------------------
    def selected(self) -> dict | None:
        table = self.query_one("#sw-trials", DataTable)
        if not table.row_count or self.data is None:
            return None
        key = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        return next((r for r in self.data["trials"] if (r["run"] or f"trial-{r['trial']}") == key), None)

    def action_sort(self) -> None:
        cols = self.columns()
        self.sort_by = cols[(cols.index(self.sort_by) + 1) % len(cols)] if self.sort_by in cols else "trial"
        self.descending = False
        self._shown = None
        if self.data:
            self.draw()

    def action_reverse(self) -> None:
        self.descending = not self.descending
        self._shown = None
        if self.data:
            self.draw()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        column = str(event.column_key.value)
        self.descending = not self.descending if column == self.sort_by else False
        self.sort_by = column
        self._shown = None
        self.draw()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_open(self) -> None:
        r = self.selected()
        if r and r.get("run"):
            self.post_message(RunSelected(Path(self.app.runs_dir) / r["run"]))

    async def action_overlay(self) -> None:
        """Every trial that has a run, checked in Overlay (and nothing else), then Overlay shown."""
        if not self.data:
            return
        paths = [str(Path(self.app.runs_dir) / r["run"]) for r in self.data["trials"] if r.get("run")]
        pane = await self.app.ensure_pane("overlay")
        pane.refresh_runs()
        pane.query_one("SelectionList").deselect_all()
        pane.select(paths)
        await self.app.action_show_pane("overlay")
        self.app.set_status(f"Overlay: the {len(paths)} trial(s) of {self.data['id']}")

    async def action_best(self) -> None:
        """The best trial's final model (its run) picked as A in Checkpoints: c compares it, e exports it."""
        best = (self.data or {}).get("best")
        row = next((r for r in (self.data or {}).get("trials", []) if r["is_best"]), None)
        if not best or row is None or not row.get("run"):
            self.app.notify("no completed trial yet", severity="warning")
            return
        pane = await self.app.ensure_pane("checkpoints")
        ref = str(Path(self.app.runs_dir) / row["run"])
        if not pane.pick_ref(ref):
            self.app.notify(f"trial {row['trial']} has no checkpoint yet", severity="warning")
            return
        await self.app.action_show_pane("checkpoints")
        self.app.set_status(f"best trial {row['trial']} ({row['run']}) is A: c compares, e exports")

    def commands(self):
        return [("Sweep: curves in Overlay", "Check every trial of the sweep in Overlay", self.action_overlay),
                ("Sweep: best trial to Checkpoints", "Pick the best trial's model as A", self.action_best)]


__all__ = ["SweepsPane"]
