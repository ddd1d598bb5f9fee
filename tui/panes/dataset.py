"""The Dataset pane: pick a file, see its rows page by page, its invalid rows, token lengths, one row rendered.

The first rows come from engine.data.preview (light: a bounded prefix read, in a thread, so a 1 GB file
never freezes the app); the full inspection and the rendering need a tokenizer, so they run in the helper
process with the spinner on.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.markup import escape
from textual.suggester import Suggester
from textual.widget import Widget
from textual.widgets import Button, DataTable, DirectoryTree, Input, OptionList, Select, Static
from textual.widgets.option_list import Option

from engine.config import SCHEMA
from engine.data import mixture
from engine.data.errors import DataError
from engine.data.preview import preview
from tui.helper_client import HelperError
from tui.messages import ConfigChosen

PAGE = 50  # rows per page of the table
CELL = 60  # characters shown per cell


class PathSuggester(Suggester):
    """Completes a path from the directory listing (accept with → or End)."""

    def __init__(self):
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        head, _, tail = value.rpartition("/")
        base = Path(os.path.expanduser(head or ("/" if value.startswith("/") else ".")))
        try:
            names = sorted(n for n in os.listdir(base) if n.startswith(tail) and not n.startswith(".") or
                           tail.startswith(".") and n.startswith(tail))
        except OSError:
            return None
        for name in names:
            if name != tail:
                return f"{head}/{name}" if head or value.startswith("/") else name
        return None


def cell(value) -> str:
    if isinstance(value, list) and value and isinstance(value[0], dict) and "role" in value[0]:
        text = " | ".join(f"{m.get('role')}: {m.get('content')}" for m in value)
    else:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = text.replace("\n", "⏎")
    return text if len(text) <= CELL else text[:CELL - 1] + "…"


# Columns a person reads first, in this order (alpaca: instruction, input, output); others follow as in the file.
READING_ORDER = ("system", "instruction", "input", "context", "prompt", "question", "query", "messages",
                 "conversations", "text", "sentence", "text_pair", "chosen", "rejected", "output", "response",
                 "completion", "answer", "label")


def reading_order(columns: list[str], rows: list[dict]) -> list[str]:
    """The table's columns: the known ones in READING_ORDER, then the rest in the order the rows have them."""
    seen: dict[str, None] = {}
    for row in rows:
        for key in row or {}:
            seen.setdefault(key, None)
    rest = [c for c in seen if c in columns] + [c for c in columns if c not in seen]
    return [c for c in READING_ORDER if c in columns] + [c for c in rest if c not in READING_ORDER]


def location_number(location: str) -> int | None:
    """The line / index / row number at the end of a row location (file:12, file[3], file row 7)."""
    m = re.search(r"(\d+)\]?$", location or "")
    return int(m.group(1)) if m else None


def histogram_markup(stats: dict, max_length: int, estimated: bool) -> str:
    h = stats.get("histogram") or {}
    edges, counts = h.get("edges") or [], h.get("counts") or []
    top = max(counts or [1]) or 1
    lines = [f"min {stats['min']}  median {stats['median']}  p95 {stats['p95']}  max {stats['max']}"
             + ("  (estimated: chars/4)" if estimated else "")]
    nonzero = [i for i, n in enumerate(counts) if n]
    first, last = (nonzero[0], nonzero[-1]) if nonzero else (0, -1)  # empty bins at the ends say nothing
    for i in range(first, last + 1):
        n, lo, hi = counts[i], edges[i], edges[i + 1] - 1
        bar = "█" * max(1 if n else 0, round(24 * n / top))
        style = "$error" if lo > max_length else ("$warning" if hi > max_length else "$success")
        lines.append(f"{lo:>6}-{hi:<6} [{style}]{bar}[/] {n}")
    lines.append(f"max_length {max_length}: cut at [b]{max_length}[/] tokens")
    return "\n".join(lines)


def mixture_markup(mix: dict) -> str:
    """The configured mixture, two lines a source (the side column is 34 wide at 80 columns)."""
    order = mix.get("order") or "shuffle"
    if order != "shuffle":
        n = mix.get("curriculum_epochs") or 0
        order += f" ({n} epoch{'s' * (n != 1)}, then shuffled)" if n else " (every epoch)"
    lines = [f"[b]{mix['epoch_rows']:,}[/] rows an epoch, order {escape(order)}"]
    formats = mix.get("formats") or [None] * len(mix["sources"])
    for s, fmt in zip(mix["sources"], formats):
        name = Path(str(s["path"])).name + (" (general)" if s.get("general") else "")
        lines.append(f"[b]{escape(name)}[/]" + (f" [$text-muted]{escape(fmt)}[/]" if fmt else ""))
        weight = f"share {s['weight']:g}" if s.get("general") else f"w {s['weight']:g}"
        lines.append(f"  {weight}  {s['rows']:,} rows → {s['drawn']:,} ({s['share']:.0%})")
    return "\n".join(lines)


def segments_markup(segments: list[dict]) -> str:
    out = []
    for s in segments:
        text = escape(s["text"])
        if s.get("truncated"):
            out.append(f"[strike $text-muted]{text}[/]")
        elif s.get("trained"):
            out.append(f"[b $success underline]{text}[/]")
        else:
            out.append(f"[$text-muted]{text}[/]")
    return "".join(out)


class DatasetPane(Widget):
    """A data file: rows (paged), invalid rows (select to jump), token lengths, one rendered row."""

    BINDINGS = [Binding("ctrl+o", "browse", "Browse files"), Binding("ctrl+u", "use", "Use in config"),
                Binding("ctrl+t", "inspect", "Inspect"), Binding("right_square_bracket", "page(1)", "Next page"),
                Binding("left_square_bracket", "page(-1)", "Prev page"), Binding("n", "step(1)", "Next row"),
                Binding("p", "step(-1)", "Prev row"), Binding("slash", "type_path", "Type a path"),
                Binding("escape", "leave_input", show=False)]
    DEFAULT_CSS = "DatasetPane { height: 1fr; }"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.path: str | None = None
        self.page = 0
        self.render_index = 0
        self.report: dict | None = None
        self.invalid_locations: set[str] = set()
        self.columns: list[str] = []
        self.mixture: dict | None = None  # the configured mixture as the helper read it (None: not a mixture)
        self._mixture_key: str | None = None  # the data section it was read for

    def compose(self) -> ComposeResult:
        formats = ["auto"] + [c for c in SCHEMA["data"]["format"].choices if c != "auto"]
        # Compact controls (one line each) in two rows: the pane stays usable in an 80x24 terminal.
        with Horizontal(classes="bar-row"):
            yield Input(placeholder="data file (→ completes the path)", id="ds-path", suggester=PathSuggester(),
                        compact=True)
            yield Button("Browse", id="ds-browse", compact=True)
        with Horizontal(classes="bar-row"):
            yield Select([(f, f) for f in formats], value="auto", allow_blank=False, id="ds-format", compact=True)
            yield Input(placeholder="model dir for tokens (from Hyperparameters)", id="ds-model", compact=True)
            yield Button("Inspect", id="ds-inspect", compact=True)
            yield Button("Use in config", id="ds-use", variant="primary", compact=True)
        with Horizontal(id="ds-body"):
            with Vertical(id="ds-left"):
                yield Static("Pick a data file: / to type its path (→ completes), or ctrl+o to browse.", id="ds-info")
                yield DirectoryTree(".", id="ds-tree")
                yield DataTable(id="ds-rows", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="ds-side"):
                yield Static("mixture (data.train)", classes="section-title", id="ds-mix-title")
                yield Static("", id="ds-mix")
                yield Static("invalid rows", classes="section-title")
                yield OptionList(id="ds-invalid")
                yield Static("token lengths", classes="section-title")
                yield Static("inspect (ctrl+t) to measure", id="ds-hist")
                yield Static("as the model sees it (n / p: next / previous row)", classes="section-title")
                yield Static("", id="ds-render")

    def on_mount(self) -> None:
        self.query_one("#ds-tree").display = False
        self.query_one("#ds-invalid").display = False
        self.show_mixture_box(False)
        if self.app.initial_dataset:
            self.query_one("#ds-path", Input).value = str(self.app.initial_dataset)
            self.open_initial(str(self.app.initial_dataset))

    @work(group="ds-initial")
    async def open_initial(self, path: str) -> None:
        # The model and max_length come from the Hyperparameters form: wait until it is built.
        await self.app.ensure_pane("hyperparams")
        self.open(path)

    def focus_first(self) -> None:
        # The rows, never the path field: keys typed next (1-6, n, p) act on the workbench, not into a field.
        self.query_one("#ds-rows").focus()
        self.read_mixture()  # the Hyperparameters may have changed since the pane was last shown

    def action_type_path(self) -> None:
        self.query_one("#ds-path", Input).focus()

    def commands(self):
        return [("Inspect dataset", "Validate every row and measure tokens (helper process)", self.action_inspect),
                ("Use dataset in config", "Set data.train (and data.format) in Hyperparameters", self.action_use),
                ("Browse for a data file", "Show the file tree", self.action_browse)]

    # -- choosing a file --------------------------------------------------------------------------
    @on(Input.Submitted, "#ds-path")
    def path_submitted(self, event: Input.Submitted) -> None:
        self.open(event.value.strip())

    @on(DirectoryTree.FileSelected)
    def file_selected(self, event: DirectoryTree.FileSelected) -> None:
        event.stop()
        self.query_one("#ds-path", Input).value = str(event.path)
        self.query_one("#ds-tree").display = False
        self.open(str(event.path))

    def action_browse(self) -> None:
        tree = self.query_one("#ds-tree", DirectoryTree)
        tree.display = not tree.display
        if tree.display:
            tree.focus()

    def action_leave_input(self) -> None:
        self.query_one("#ds-rows").focus()

    @on(Select.Changed, "#ds-format")
    def format_changed(self, event: Select.Changed) -> None:
        if self.path:
            self.open(self.path)

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        actions = {"ds-browse": self.action_browse, "ds-inspect": self.action_inspect, "ds-use": self.action_use}
        if event.button.id in actions:
            event.stop()
            actions[event.button.id]()

    def fmt(self) -> str:
        return str(self.query_one("#ds-format", Select).value)

    def hp_value(self, path: str):
        """A value from the Hyperparameters form (model, max_length, method), or None without that pane."""
        pane = self.app.pane("hyperparams")
        return pane.values.get(path) if pane is not None else None

    def open(self, path: str) -> None:
        if not path:
            return
        self.path = os.path.expanduser(path)
        self.page, self.render_index = 0, 0
        self.clear_report("inspect (ctrl+t) to measure")
        model = self.hp_value("model.name_or_path")
        model_input = self.query_one("#ds-model", Input)
        if model and not model_input.value:
            model_input.value = str(model)
        self.load_page(0)
        self.action_inspect()

    # -- rows -------------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="ds-preview", exit_on_error=False)
    def load_page(self, page: int, focus_location: str | None = None, need: int = 0) -> None:
        """Read the rows of `page` (preview reads a bounded prefix: a thread keeps the UI live on big files)."""
        n = max((page + 1) * PAGE, need + PAGE)
        path = self.path
        try:
            pv = preview(path, n=n, method=str(self.hp_value("method") or "sft"), fmt=self.fmt())
        except (DataError, OSError) as e:
            self.app.call_from_thread(self.show_error, path, str(e))
            return
        self.app.call_from_thread(self.show_page, pv, page, focus_location, path)

    def show_error(self, path: str, text: str) -> None:
        if path != self.path:
            return  # the file shown before: another one is open now
        self.query_one("#ds-info", Static).update(f"[$error]{escape(text)}[/]")
        self.query_one("#ds-rows", DataTable).clear(columns=True)

    def show_page(self, pv: dict, page: int, focus_location: str | None, path: str | None = None) -> None:
        if path is not None and path != self.path:
            return
        entries = [(r["location"], r["data"], None) for r in pv["rows"]] + \
                  [(r["location"], None, r["reason"]) for r in pv["invalid"]]
        entries.sort(key=lambda e: location_number(e[0]) or 0)
        if focus_location:
            idx = next((i for i, e in enumerate(entries) if e[0] == focus_location), 0)
            page = idx // PAGE
        pages = max(1, -(-len(entries) // PAGE))
        page = max(0, min(page, pages - 1))
        self.page = page
        shown = entries[page * PAGE:(page + 1) * PAGE]
        table = self.query_one("#ds-rows", DataTable)
        table.clear(columns=True)
        self.columns = reading_order(pv["columns"], [r["data"] for r in pv["rows"]])[:8]
        table.add_column("row", key="row")
        table.add_column("", key="mark", width=2)
        for c in self.columns:
            table.add_column(c, key=c)
        for loc, data, reason in shown:
            bad = reason is not None or loc in self.invalid_locations
            cells = [reason or ""] * len(self.columns) if data is None else [cell(data.get(c, "")) for c in self.columns]
            table.add_row(Path(loc).name if "/" in loc else loc, "✗" if bad else "", *cells, key=loc)
        total = pv.get("estimated_rows")
        rows = f"{total} rows" if pv.get("exact") else f"~{total} rows (estimated)" if total else "rows: unknown"
        fmt = pv.get("format") or f"no format fits: {pv.get('format_error', '')}"
        more = "" if pv.get("exact") or len(entries) < (page + 1) * PAGE else "+"
        self.query_one("#ds-info", Static).update(
            f"[b]{escape(str(self.path))}[/]  {pv['size_bytes'] / 1e6:.1f} MB  {rows}  format: [b]{escape(fmt)}[/]"
            f"  page {page + 1}/{pages}{more}  ([ / ] pages)")
        if focus_location and focus_location in table.rows:
            table.move_cursor(row=table.get_row_index(focus_location))
            table.focus()

    def action_page(self, delta: int) -> None:
        if self.path:
            self.load_page(max(0, self.page + delta))

    # -- inspection (helper) ----------------------------------------------------------------------
    def helper_args(self) -> dict:
        return {"spec": self.path, "format": self.fmt(), "model": self.query_one("#ds-model", Input).value.strip() or None,
                "max_length": int(self.hp_value("data.max_length") or 1024), "method": self.hp_value("method") or "sft",
                "trust_remote_code": bool(self.hp_value("model.trust_remote_code")),
                "chat_template": self.hp_value("data.chat_template") or "auto"}

    def action_inspect(self) -> None:
        if self.path:
            self.inspect(self.helper_args())
        self.read_mixture()

    # -- the configured mixture (helper) ----------------------------------------------------------
    def show_mixture_box(self, on: bool) -> None:
        self.query_one("#ds-mix-title").display = on
        self.query_one("#ds-mix").display = on

    @work(exclusive=True, group="ds-mixture", exit_on_error=False)
    async def read_mixture(self) -> None:
        """When the Hyperparameters' data.train mixes sources (weights, data.general_mix), each source's rows,
        weight, rows an epoch, share and format, read by the helper (it reads every row; the workbench never
        imports the data stack). Asked again only when the data section or the method changed."""
        hp = self.app.pane("hyperparams")
        if hp is None:
            return
        cfg, problems = hp.current()
        key = json.dumps([cfg.get("method"), cfg.get("data")], sort_keys=True, default=str)
        if key == self._mixture_key:
            return
        self._mixture_key = key
        if not mixture.is_mixture(cfg["data"]) or any(p.path.startswith("data.") for p in problems):
            self.mixture = None
            self.show_mixture_box(False)
            return
        box = self.query_one("#ds-mix", Static)
        try:
            mix = await self.app.helper_request("reading the mixture's sources", "mixture", config=cfg)
        except HelperError as e:
            self.mixture = None
            self._mixture_key = None  # a fixed file is read again next time
            box.update(f"[$error]{escape(str(e))}[/]")
            self.show_mixture_box(True)
            return
        self.mixture = mix
        box.update(mixture_markup(mix))
        self.show_mixture_box(True)

    def clear_report(self, hist: str) -> None:
        """Forget the last file's inspection: its invalid rows, counts, rendered row and status line."""
        self.report = None
        self.invalid_locations = set()
        options = self.query_one("#ds-invalid", OptionList)
        options.clear_options()
        options.display = False
        self.query_one("#ds-hist", Static).update(hist)
        self.query_one("#ds-render", Static).update("")
        self.app.set_status("")

    @work(exclusive=True, group="ds-inspect", exit_on_error=False)
    async def inspect(self, args: dict) -> None:
        try:
            rep = await self.app.helper_request("inspecting the dataset", "inspect", **args)
        except HelperError as e:
            if args["spec"] == self.path:
                self.clear_report(f"[$error]{escape(str(e))}[/]")
                self.app.set_status(f"{Path(str(self.path)).name}: not inspected: {e}")
            return
        if args["spec"] != self.path:
            return  # another file was opened meanwhile: this report is not the one on screen
        self.report = rep
        self.show_report(rep, args["max_length"])
        self.render_row(args, self.render_index)

    def show_report(self, rep: dict, max_length: int) -> None:
        invalid = rep.get("invalid") or []
        self.invalid_locations = {i["location"] for i in invalid}
        options = self.query_one("#ds-invalid", OptionList)
        options.clear_options()
        options.add_options([Option(f"{Path(i['location']).name}: {i['reason']}", id=i["location"]) for i in invalid])
        options.display = bool(invalid)
        table = self.query_one("#ds-rows", DataTable)
        for loc in self.invalid_locations & {str(k.value) for k in table.rows}:
            table.update_cell(loc, "mark", "✗")
        lines = [f"{rep['rows']} rows, {rep['invalid_count']} invalid, format {rep['format']}"]
        if rep.get("token_lengths"):
            lines.append(histogram_markup(rep["token_lengths"], max_length, rep.get("token_lengths_estimated")))
        if rep.get("truncated_fraction") is not None:
            lines.append(f"truncated at max_length: [b]{rep['truncated_fraction']:.1%}[/] of the rows")
        if rep.get("trained_token_fraction") is not None:
            lines.append(f"tokens that train: {rep['trained_token_fraction']:.1%}")
        lines += [f"[$warning]⚠ {escape(w)}[/]" for w in rep.get("warnings") or []]
        self.query_one("#ds-hist", Static).update("\n".join(lines))
        self.app.set_status(f"{Path(str(self.path)).name}: {rep['rows']} rows, {rep['invalid_count']} invalid")

    @on(OptionList.OptionSelected, "#ds-invalid")
    def jump_to_invalid(self, event: OptionList.OptionSelected) -> None:
        loc = event.option.id
        self.load_page(self.page, focus_location=loc, need=location_number(loc) or 0)

    def action_step(self, delta: int) -> None:
        if self.path:
            self.render_index = max(0, self.render_index + delta)
            self.render_row(self.helper_args(), self.render_index)

    @work(exclusive=True, group="ds-render", exit_on_error=False)
    async def render_row(self, args: dict, index: int) -> None:
        try:
            out = await self.app.helper_request("rendering a row", "render_row", index=index, **args)
        except HelperError as e:
            if args["spec"] == self.path:
                self.query_one("#ds-render", Static).update(f"[$error]{escape(str(e))}[/]")
            return
        if args["spec"] != self.path:
            return  # a row of the file shown before
        self.render_index = out["index"]
        head = f"row {out['index'] + 1} of {out['count']} valid ({escape(Path(out['location']).name)})"
        if out.get("segments"):
            head += f": {out['tokens']} tokens, {out['trained']} train ([b $success underline]marked[/])"
            body = segments_markup(out["segments"])
        else:
            body = escape(out["text"]) + "\n[$text-muted](no model given: text only)[/]"
        self.query_one("#ds-render", Static).update(f"{head}\n{body}")

    # -- hand over to Hyperparameters -------------------------------------------------------------
    def action_use(self) -> None:
        if not self.path:
            self.app.notify("pick a data file first", severity="warning")
            return
        updates = {"data.train": str(Path(self.path).resolve()) if Path(self.path).exists() else self.path}
        if self.fmt() != "auto":
            updates["data.format"] = self.fmt()
        model = self.query_one("#ds-model", Input).value.strip()
        if model:
            updates["model.name_or_path"] = model
        self.post_message(ConfigChosen(updates))
