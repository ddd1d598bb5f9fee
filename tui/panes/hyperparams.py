"""The Hyperparameters pane: a form built from engine.config.SCHEMA, presets, diff, YAML, save, Launch."""
from __future__ import annotations

import asyncio
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import Button, DataTable, Input, Label, Select, Static, Switch

from engine import config as cfgmod
from engine.planning.preflight import model_problems
from tui.helper_client import HelperError
from tui.launching import absolute_paths, check_model, launch_run, list_presets, preset_text
from tui.messages import RunSelected


def to_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def from_text(f: cfgmod.Field, text: str):
    """Input text -> the value coerce() expects (lists from commas; empty optional -> None)."""
    text = text.strip()
    if f.type == "strlist":
        if "," in text:
            return [t.strip() for t in text.split(",") if t.strip()]
        return [] if not text and isinstance(f.default, list) else text
    if f.type == "str?":
        return text or None
    if f.type in ("int", "float") and text == "":
        return None
    return text


def field_path(section: str, key: str) -> str:
    return f"{section}.{key}" if section else key


def get(cfg: dict, path: str):
    section, _, key = path.rpartition(".")
    return (cfg.get(section, {}) if section else cfg).get(key)


def normal(path: str, value):
    """A key's value as validation makes it (types, a one-item list for a list key), whatever else is invalid."""
    f = cfgmod.field_for(path)
    value = cfgmod.coerce(path, f, value)[0]
    return [value] if f.type == "strlist" and isinstance(value, str) else value


def changes(cfg: dict, base: dict) -> dict:
    """The keys whose value differs from `base`'s, compared as validated values: "none" and ["none"], 32 and
    "32" are the same, and an invalid key elsewhere does not make every list key look changed."""
    out: dict = {}
    for section, fields in cfgmod.SCHEMA.items():
        for k in fields:
            path = field_path(section, k)
            a = get(cfg, path)
            if normal(path, a) != normal(path, get(base, path)):
                (out.setdefault(section, {}) if section else out)[k] = a
    return out


def nested(values: dict) -> dict:
    cfg: dict = {}
    for path, value in values.items():
        section, _, key = path.rpartition(".")
        (cfg.setdefault(section, {}) if section else cfg)[key] = value
    return cfg


class HyperparamsPane(Widget):
    """A property grid over the schema (one table, one editor: ~70 fields mount in milliseconds, where a
    widget per field took seconds); every change re-validates, re-diffs and re-checks the model."""

    BINDINGS = [Binding("ctrl+l", "launch", "Launch"), Binding("ctrl+s", "save_preset", "Save preset"),
                Binding("ctrl+y", "yaml", "YAML"), Binding("escape", "leave_editor", "Back to the list", show=False)]
    DEFAULT_CSS = "HyperparamsPane { height: 1fr; }"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.preset_path: Path | None = None
        self.preset_cfg: dict = cfgmod.validate(cfgmod.defaults())[0]
        self.values: dict = {field_path(s, k): get(self.preset_cfg, field_path(s, k))
                             for s, fields in cfgmod.SCHEMA.items() for k in fields}
        self.problems: list[cfgmod.Problem] = []
        self.by_field: dict[str, str] = {}
        self.editing: str | None = None
        self._loaded = None  # the editor control's value as loaded for `editing` (not typed by the user)
        self._model_checked = None
        self._pending = None  # the debounce timer of revalidate()
        self._preflight_keys: set[str] = set()  # keys a refused launch marked
        self._data_shapes: dict[tuple, tuple] = {}  # data -> (rows, tokens a row), measured by the helper

    # -- layout -----------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        presets = list_presets(self.app.workdir)
        with Horizontal(classes="bar-row"):
            yield Select([(p.stem, str(p)) for p in presets], prompt="preset", id="preset-select", compact=True)
            yield Input(placeholder="new preset name", id="preset-name", compact=True)
            yield Button("Save preset", id="save-preset", compact=True)
            yield Button("YAML", id="show-yaml", compact=True)
            yield Button("Launch", id="launch", variant="primary", compact=True)
        with Horizontal(id="hp-body"):
            with Vertical(id="hp-left"):
                yield DataTable(id="hp-table", cursor_type="row", zebra_stripes=True)
                with Vertical(id="hp-editor"):
                    yield Label("", id="edit-name")
                    yield Input(id="edit-input", compact=True)
                    yield Select([], id="edit-select", allow_blank=True, compact=True)
                    yield Switch(id="edit-switch")
                    yield Static("", id="edit-help", classes="field-help")
                    yield Static("", id="edit-error", classes="field-error")
            with VerticalScroll(id="hp-side"):
                yield Static("model", classes="section-title")
                yield Static("", id="model-check")
                yield Static("memory and time (estimate)", classes="section-title")
                yield Static("", id="memory")
                yield Static("problems", classes="section-title")
                yield Static("", id="problems")
                yield Static("changed from the preset", classes="section-title")
                yield Static("", id="diff")

    def on_mount(self) -> None:
        table = self.query_one("#hp-table", DataTable)
        table.add_column("key", key="key", width=26)
        table.add_column("value", key="value", width=30)
        table.add_column("", key="mark", width=2)
        table.add_column("help", key="help")
        for section, fields in cfgmod.SCHEMA.items():
            table.add_row(Text(f"[{section or 'run'}]", style="bold"), "", "", "", key=f"section:{section}")
            for key, f in fields.items():
                path = field_path(section, key)
                table.add_row(f"  {key}", to_text(self.values[path]), "", f.help, key=path)
        if self.app.initial_preset:
            self.load_preset(Path(self.app.initial_preset))
        else:
            self.revalidate()
        table.move_cursor(row=1)

    def focus_first(self) -> None:
        self.query_one("#hp-table").focus()

    def action_leave_editor(self) -> None:
        self.query_one("#hp-table").focus()

    def commands(self):
        return [("Launch run", "Validate the config, check the model, start a detached run", self.action_launch),
                ("Show config YAML", "The full config as YAML", self.action_yaml),
                ("Save as preset", "Save the changes from the defaults as a preset", self.action_save_preset)]

    # -- editing ----------------------------------------------------------------------------------
    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "hp-table":
            self.edit(str(event.row_key.value))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "hp-table" and self.editing:
            event.stop()
            self.editor_control().focus()

    def editor_control(self):
        f = cfgmod.field_for(self.editing)
        if f.type == "bool":
            return self.query_one("#edit-switch", Switch)
        return self.query_one("#edit-select" if f.choices else "#edit-input")

    def edit(self, path: str) -> None:
        """Show `path` in the editor (the section rows have no editor)."""
        self.commit_editor()  # what the editor holds belongs to the key it showed, whatever is still queued
        if self._pending is not None:  # finish the last field's typing before the editor leaves it
            self._pending.stop()
            self.revalidate()
        f = cfgmod.field_for(path) if not path.startswith("section:") else None
        editor = self.query_one("#hp-editor")
        editor.display = f is not None
        self.editing, self._loaded = (path if f is not None else None), None
        if f is None:
            return
        value = self.values[path]
        inp, sel, sw = self.query_one("#edit-input", Input), self.query_one("#edit-select", Select), self.query_one(
            "#edit-switch", Switch)
        inp.display, sel.display, sw.display = f.type != "bool" and not f.choices, bool(f.choices), f.type == "bool"
        # Loading the editor posts no Changed: one handled after the cursor had moved on wrote this key's value
        # into the next key (arrow keys held down turned data.general_eval into "completion").
        with self.prevent(Input.Changed, Select.Changed, Switch.Changed):
            if f.type == "bool":
                sw.value = bool(value) if isinstance(value, bool) else str(value).lower() in ("true", "1", "yes", "on")
            elif f.choices:
                options = list(f.choices) + ([value] if value not in f.choices and value is not None else [])
                sel.set_options([(str(o), o) for o in options])
                sel.value = value if value is not None else Select.NULL
            else:
                inp.value = to_text(value)
                inp.placeholder = f"default: {to_text(f.default) or '(empty)'}"
        self._loaded = self.control_value()
        self.query_one("#edit-name", Label).update(f"{path}  ({f.type.rstrip('?')}"
                                                   f"{', one of ' + ', '.join(map(str, f.choices)) if f.choices else ''})")
        self.query_one("#edit-help", Static).update(f.help)
        self.show_field_error()

    def show_field_error(self) -> None:
        msg = self.by_field.get(self.editing or "", "")
        self.update_static("#edit-error", msg, bool(msg))

    def control_value(self):
        """What the editor's control holds now (text, choice or switch), or None without a field."""
        return self.editor_control().value if self.editing else None

    def commit_editor(self) -> None:
        """Store what the user put in the editor for the key it shows; nothing when it holds what was loaded."""
        if not self.editing or self._loaded is None:
            return
        shown = self.control_value()
        if shown == self._loaded:
            return
        self._loaded = shown
        f = cfgmod.field_for(self.editing)
        if isinstance(shown, str) and f.type != "bool" and not f.choices:
            value = from_text(f, shown)
        elif shown is Select.NULL:
            value = None
        else:
            value = shown
        self.set_value(self.editing, value, refresh_editor=False, debounce=True)

    @on(Input.Changed, "#edit-input")
    @on(Select.Changed, "#edit-select")
    @on(Switch.Changed, "#edit-switch")
    def editor_changed(self, event) -> None:
        # The event only says "the control changed"; the value stored is the control's value now, for the key
        # the editor shows now, and only if it differs from what was loaded there.
        self.commit_editor()

    @on(Input.Submitted, "#edit-input")
    def editor_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        table = self.query_one("#hp-table", DataTable)
        table.focus()
        table.action_cursor_down()

    def set_value(self, path: str, value, refresh_editor: bool = True, debounce: bool = False) -> None:
        self.values[path] = value
        if not debounce:  # while typing, the table cell follows with the debounced revalidate()
            self.query_one("#hp-table", DataTable).update_cell(path, "value", to_text(value))
        if path == "model.trust_remote_code":
            self._model_checked = None  # the verdict depends on it
        if debounce:
            # While typing: one re-validation 0.15 s after the last key. Each one re-lays out the side
            # panel (a full repaint, ~20 ms idle and far more on a loaded machine), so not one per key.
            if self._pending is not None:
                self._pending.stop()
            self._pending = self.set_timer(0.15, self.revalidate)
        else:
            self.revalidate()
        if refresh_editor and path == self.editing:
            self.edit(path)

    def current(self) -> tuple[dict, list[cfgmod.Problem]]:
        """(the form's values validated into a config dict, problems); a typed Config only when there are none."""
        return cfgmod.validate(nested(self.values))

    def update_static(self, selector: str, content: str, error: bool | None = None) -> None:
        """Update only on change: an update of an auto-height Static re-lays out its parent."""
        w = self.query_one(selector, Static)
        if getattr(w, "_shown", None) != content:
            w._shown = content
            w.update(content)
        if error is not None:
            w.set_class(error, "error" if selector != "#edit-error" else "-shown")

    def revalidate(self) -> None:
        table = self.query_one("#hp-table", DataTable)
        if self._pending is not None and self.editing:
            table.update_cell(self.editing, "value", to_text(self.values[self.editing]))
        self._pending = None
        cfg, self.problems = self.current()
        by_field: dict[str, list[str]] = {}
        for p in self.problems:
            for key in p.keys():
                by_field.setdefault(key, []).append(p.message + (f"; {p.fix}" if p.fix else ""))
        for path in set(self.by_field) | set(by_field) | self._preflight_keys:
            if path in table.rows:
                table.update_cell(path, "mark", Text("✗", style="bold red") if path in by_field else "")
        self.by_field = {k: "; ".join(v) for k, v in by_field.items()}
        self._preflight_keys = set()  # a refused launch's marks last until the next edit
        self.show_field_error()
        self.update_static("#problems", "\n".join(f"• {p}" for p in self.problems) if self.problems
                           else "none: ready to launch", bool(self.problems))
        changed = changes(cfg, self.preset_cfg)
        name = self.preset_path.stem if self.preset_path else "defaults"
        self.update_static("#diff", f"from {name}:\n" + cfgmod.dump(changed).rstrip() if changed else f"same as {name}")
        model = cfg["model"]["name_or_path"]
        if model != self._model_checked:
            self._model_checked = model
            ok, text = check_model(model, bool(cfg["model"]["trust_remote_code"]))
            self.update_static("#model-check", text, not ok)
        if self.problems:
            pass
        elif Path(model).is_dir():
            self.estimate_memory(cfgmod.Config.from_dict(cfg))
        else:  # a hub id: its config.json is not here to read (and the pane never waits on the network)
            self.update_static("#memory", "estimated from a local model directory's config.json; "
                               "for a hub id run `tunebench estimate` once it is downloaded")

    @work(exclusive=True, group="verdict", exit_on_error=False)
    async def estimate_memory(self, cfg: cfgmod.Config) -> None:
        """The memory verdict and the time estimate for the target GPU (or the CPU). The data's rows and tokens a
        row come from the helper once per data file (reading them needs the data layer); the estimate itself is
        light (engine.planning.verdict; NVML ~50 ms, so a thread)."""
        from engine.planning.estimate import time_text
        from engine.planning.verdict import check

        rows, per_row = await self.data_shape(cfg)
        v = await asyncio.to_thread(check, cfg, tokens_per_row=per_row, rows=rows)
        text = v["message"] + (f"\non {v['target']}" if v.get("target") else "")
        if v.get("estimate"):
            text += "\n" + time_text(v["estimate"])
            if per_row:
                text += f" ({per_row:.0f} tokens a row, from the data)"
        self.update_static("#memory", text, v["verdict"] == "does_not_fit")

    async def data_shape(self, cfg: cfgmod.Config) -> tuple[int | None, float | None]:
        """(training rows, mean tokens a row) of data.train, asked of the helper once per data, model and length."""
        d = cfg.data
        if not d.train:
            return None, None
        key = (str(d.train), d.format, str(d.columns), cfg.method, d.max_length, cfg.model.name_or_path,
               d.eval_fraction, str(d.eval))
        if key not in self._data_shapes:
            try:
                out = await self.app.helper_request("measuring the data", "data_shape", config=cfg.to_dict())
            except HelperError:
                out = {}
            self._data_shapes[key] = (out.get("rows"), out.get("tokens_per_row"))
        return self._data_shapes[key]

    # -- presets ----------------------------------------------------------------------------------
    @on(Select.Changed, "#preset-select")
    def preset_chosen(self, event: Select.Changed) -> None:
        if event.value is not Select.NULL and (self.preset_path is None or str(self.preset_path) != event.value):
            self.load_preset(Path(str(event.value)))

    def load_preset(self, path: Path) -> None:
        """Lay the preset over the defaults; problems show in the form rather than refusing the file."""
        problems: list[cfgmod.Problem] = []
        try:
            cfg = cfgmod.merge(cfgmod.defaults(), cfgmod.load_yaml(path), problems, source=str(path))
        except cfgmod.ConfigError as e:
            self.app.notify("\n".join(map(str, e.problems)), title="preset not loaded", severity="error")
            return
        self.preset_path, self.preset_cfg = path, cfgmod.validate(cfg)[0]
        self.apply(cfg, all_keys=True)
        sel = self.query_one("#preset-select", Select)
        if str(path) not in [v for _, v in sel._options]:
            sel.set_options([(p.stem, str(p)) for p in list_presets(self.app.workdir)] + [(path.stem, str(path))])
        with sel.prevent(Select.Changed):
            sel.value = str(path)
        if problems:
            self.app.notify("\n".join(map(str, problems)), title=f"{path.name}: unknown keys ignored", severity="warning")
        self.app.set_status(f"preset {path.name} loaded")

    def apply(self, cfg: dict, all_keys: bool = False) -> None:
        """Put values into the form: a full nested config, or {"section.key": value} updates."""
        self.commit_editor()
        updates = {p: get(cfg, p) for p in self.values} if all_keys else cfg
        table = self.query_one("#hp-table", DataTable)
        for path, value in updates.items():
            self.values[path] = value
            table.update_cell(path, "value", to_text(value))
        self.revalidate()
        if self.editing:
            self.edit(self.editing)

    def action_save_preset(self) -> None:
        name_w = self.query_one("#preset-name", Input)
        name = "".join(c for c in name_w.value.strip() if c.isalnum() or c in "-_")
        if not name:
            name_w.focus()
            self.app.notify("type a name for the preset first", severity="warning")
            return
        cfg, _ = self.current()
        out = Path(self.app.workdir) / "presets" / f"{name}.yaml"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(preset_text(cfg, source=self.preset_path), encoding="utf-8")
        sel = self.query_one("#preset-select", Select)
        sel.set_options([(p.stem, str(p)) for p in list_presets(self.app.workdir)])
        self.preset_path, self.preset_cfg = out, cfg
        with sel.prevent(Select.Changed):
            sel.value = str(out)
        self.revalidate()
        self.app.notify(f"saved {out}")
        self.app.set_status(f"preset saved: {out}")

    # -- yaml and launch --------------------------------------------------------------------------
    def action_yaml(self) -> None:
        from tui.screens.yaml_view import YamlScreen

        cfg, problems = self.current()
        self.app.push_screen(YamlScreen(cfgmod.dump(cfg), problems))

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        actions = {"save-preset": self.action_save_preset, "show-yaml": self.action_yaml, "launch": self.action_launch}
        if event.button.id in actions:
            event.stop()
            actions[event.button.id]()

    def action_launch(self) -> None:
        raw, problems = self.current()
        if not problems:  # what the CLI refuses before creating a run, all at once: data.train, the model's rules
            problems = cfgmod.run_rules(raw)
            if problems:
                problems += model_problems(cfgmod.Config.from_dict(raw))
        if problems:  # shown as a refused preflight is: the panel, the marked keys, a notification
            self.show_preflight({"messages": [str(p) for p in problems], "keys": [p.path for p in problems]})
            return
        self.launch(absolute_paths(cfgmod.Config.from_dict(raw), Path.cwd()))

    @work(exclusive=True, group="launch", exit_on_error=False)
    async def launch(self, cfg: cfgmod.Config) -> None:
        """The preflight `tunebench train` runs (in the helper: a hub-id dataset needs `datasets`), then the run.
        Nothing is created unless every check passes; the same messages as the CLI's."""
        try:
            pf = await self.app.helper_request("checking the model and every data row", "preflight",
                                               config=cfg.to_dict())
        except HelperError as e:
            self.app.notify(str(e), title="not launched: the checks could not run", severity="error")
            return
        for warning in pf["warnings"]:
            self.app.notify(warning, title="data", severity="warning")
        if not pf["ok"]:
            self.show_preflight(pf)
            return
        spinner = self.app.query_one("#spinner")
        spinner.start("launching")
        try:
            # launch.start waits (up to 15 s) for the engine to take the run: a thread keeps the UI live.
            run, position = await asyncio.to_thread(launch_run, self.app.runs_dir, cfg)
        except Exception as e:  # noqa: BLE001 - any failure is the user's to read, in one place
            self.app.notify(str(e)[-600:], title="launch failed", severity="error")
            return
        finally:
            spinner.stop("launching")
        if position is not None:  # another run holds the device: the scheduler starts this one when it has room
            self.app.set_status(f"queued {run.id} at #{position}")
            self.app.notify(f"run {run.id} is #{position} in the queue: it starts when the device has room "
                            "(Runs [1]: +/- reorder, x cancel)", title="queued")
            return
        self.app.set_status(f"launched {run.id}")
        self.app.notify(f"run {run.id} started", title="launched")
        self.post_message(RunSelected(run.path))

    def show_preflight(self, pf: dict) -> None:
        """A refused launch: the messages in the problems panel (whole) and a notification (the first lines)."""
        msgs = pf["messages"]
        self.app.notify("\n".join(msgs)[:900], title=f"not launched: {len(msgs)} problem(s)", severity="error")
        self.update_static("#problems", "not launched:\n" + "\n".join(f"• {m}" for m in msgs), True)
        table = self.query_one("#hp-table", DataTable)
        self._preflight_keys = set(pf["keys"])
        for key in pf["keys"]:
            if key in table.rows:
                table.update_cell(key, "mark", Text("✗", style="bold red"))
