"""The workbench app: mounts the panes listed in PANES into tabs, routes cross-pane messages, owns the helper.

Thin on purpose: each pane lives in tui/panes/<name>.py. To add a pane, append a PaneSpec to tui.registry.PANES
(key, tab title, "module:Class", key binding); the class is a Widget built as `Class(id=key)`.
A pane that shows a run defines `open_run(path)`; the app routes RunSelected to it.
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Footer, Static, TabbedContent, TabPane

from engine.rundir.runs import runs_dir_from
from tui.helper_client import HelperClient, HelperError
from tui.messages import ConfigChosen, RunSelected, ShowPane
from tui.registry import HEADER, PANES, RUN_PANE, PaneSpec, load  # noqa: F401 (PaneSpec: for extensions)
from tui.widgets.spinner import Spinner


def tab_label(spec, width: int) -> str:
    """A pane's tab label at a terminal `width`: the full title when every full label fits (a tab is its label
    plus one column each side), else the short one."""
    full = sum(len(f"{p.binding} {p.title}") + 2 for p in PANES)
    return f"{spec.binding} {spec.title if width >= full else spec.compact}"


class TuneBench(App):
    """The tunebench workbench."""

    CSS_PATH = "app.tcss"
    TITLE = "tunebench"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark,f1", "help", "Help"),
        *[Binding(p.binding, f"show_pane('{p.key}')", p.title, show=False) for p in PANES],
    ]

    def __init__(self, runs_dir: str | Path | None = None, workdir: str | Path | None = None,
                 preset: str | None = None, run: str | Path | None = None, dataset: str | None = None, **kw):
        super().__init__(**kw)
        self.initial_run = Path(run) if run else None  # `tunebench attach RUN`: opened in Monitor at start
        self.runs_dir = Path(runs_dir) if runs_dir else runs_dir_from()
        self.workdir = Path(workdir) if workdir else Path.cwd()
        self.initial_preset = preset  # a preset path the Hyperparameters pane opens with (the demo's)
        self.initial_dataset = dataset  # a data file the Dataset pane opens with
        self.helper = HelperClient()
        self._panes: dict[str, Any] = {}  # key -> pane widget, once built
        self._pane_locks: dict[str, asyncio.Lock] = {}

    # -- layout -----------------------------------------------------------------------------------
    def system_header(self):
        """A fresh header widget for a screen (every screen composes one at its top)."""
        return load(HEADER)(runs_dir=str(self.runs_dir), id="system-header")

    def compose(self) -> ComposeResult:
        yield self.system_header()
        first = RUN_PANE if self.initial_run is not None and any(p.key == RUN_PANE for p in PANES) else PANES[0].key
        with TabbedContent(id="panes", initial=first):
            for spec in PANES:
                # "1 Runs": key first, no brackets; on_resize shortens the titles where they do not all fit
                with TabPane(tab_label(spec, self.size.width), id=spec.key):
                    # Only the first pane is built before the first paint; the others are mounted
                    # right after it (mount_later), or at once when asked for (ensure_pane). Each pane
                    # adds hundreds of styled widgets: building them all first doubled the time to paint.
                    if spec.key == first:
                        yield load(spec.target)(id=f"pane-{spec.key}")
        with Horizontal(id="statusbar"):
            yield Static("", id="status")
            yield Spinner(id="spinner")
        yield Footer()

    def on_resize(self, event) -> None:
        """Every tab stays on screen: below the width the full titles need, the short ones ("3 Params")."""
        panes = self.query("#panes")
        if not panes:
            return
        for spec in PANES:
            tab = panes.first(TabbedContent).get_tab(spec.key)
            label = tab_label(spec, event.size.width)
            if tab.label_text != label:
                tab.label = label

    def pane(self, key: str):
        """The pane `key` if it is built (None before ensure_pane or mount_later reached it)."""
        pane = self._panes.get(key)
        if pane is None:
            found = self.query(f"#pane-{key}")  # the first pane, built by compose
            if found:
                pane = self._panes[key] = found.first()
        return pane

    async def ensure_pane(self, key: str):
        """The pane `key`, mounted and composed (None when PANES has no such pane, or the app is closing).

        The one way a pane gets built after the first paint: mount_later, key bindings, messages routed to a
        pane and tests all come here, and one lock per pane makes a second caller wait for the first's mount
        rather than query a pane that is not there yet (NoMatches under load)."""
        spec = next((p for p in PANES if p.key == key), None)
        if spec is None:
            return None
        lock = self._pane_locks.setdefault(key, asyncio.Lock())
        async with lock:
            pane = self.pane(key)
            if pane is None:
                if self.closing:
                    return None  # quitting: nothing to build it into
                pane = load(spec.target)(id=f"pane-{key}")
                await self.query_one(f"TabPane#{key}", TabPane).mount(pane)
                self._panes[key] = pane
        return pane

    async def mount_later(self) -> None:
        for spec in PANES:
            if self.closing:
                return
            await self.ensure_pane(spec.key)

    @property
    def closing(self) -> bool:
        """The app is exiting (or already gone): no pane is built any more."""
        return self._exit or self._closing or self._closed or not self.is_running

    # -- actions and commands ---------------------------------------------------------------------
    async def action_show_pane(self, key: str) -> None:
        if await self.ensure_pane(key) is None:
            return
        self.query_one("#panes", TabbedContent).active = key
        pane = self.pane(key)
        if hasattr(pane, "focus_first"):  # a pane without focus_first keeps Textual's default focus
            pane.focus_first()

    def action_help(self) -> None:
        """Help, with the keys of the pane in front first."""
        from tui.screens.help import HelpScreen

        key = self.query_one("#panes", TabbedContent).active
        spec = next((p for p in PANES if p.key == key), None)
        self.push_screen(HelpScreen(self.pane(key), f"{spec.title} [{spec.binding}]" if spec else ""))

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        for spec in PANES:
            yield SystemCommand(f"Show {spec.title}", f"Switch to the {spec.title} pane ({spec.binding})",
                                lambda k=spec.key: self.call_later(self.action_show_pane, k))
        yield SystemCommand("Help", "Keys and panes", self.action_help)
        for spec in PANES:
            pane = self.pane(spec.key)
            if pane is not None and hasattr(pane, "commands"):
                for title, help_, cb in pane.commands():
                    yield SystemCommand(title, help_, cb)

    # -- status line and helper -------------------------------------------------------------------
    def set_status(self, text: str) -> None:
        self.query_one("#status", Static).update(text)

    async def helper_request(self, label: str, op: str, **args: Any) -> Any:
        """Run a helper op with the spinner on; errors become HelperError (the caller shows them)."""
        spinner = self.query_one(Spinner)
        spinner.start(label)
        try:
            return await self.helper.request(op, **args)
        finally:
            spinner.stop(label)

    async def helper_stream(self, label: str, op: str, **args: Any):
        spinner = self.query_one(Spinner)
        spinner.start(label)
        try:
            async for msg in self.helper.stream(op, **args):
                yield msg
        finally:
            spinner.stop(label)

    # -- routing ----------------------------------------------------------------------------------
    def on_mount(self) -> None:
        if self.initial_run is not None:
            self.post_message(RunSelected(self.initial_run))
        self.call_after_refresh(self.mount_later)

    async def on_show_pane(self, message: ShowPane) -> None:
        await self.action_show_pane(message.key)

    async def on_config_chosen(self, message: ConfigChosen) -> None:
        """The Dataset pane hands data.train (and format, model) to the Hyperparameters form."""
        pane = await self.ensure_pane("hyperparams")
        if pane is not None:
            pane.apply(message.updates)
            await self.action_show_pane("hyperparams")
            self.set_status("config: " + ", ".join(f"{k}={v}" for k, v in message.updates.items()))

    async def on_run_selected(self, message: RunSelected) -> None:
        specs = sorted(PANES, key=lambda p: p.key != RUN_PANE)  # RUN_PANE first, then in order
        for spec in specs:
            if hasattr(load(spec.target), "open_run"):
                pane = await self.ensure_pane(spec.key)
                if pane is None:
                    return
                pane.open_run(Path(message.run_path))
                await self.action_show_pane(spec.key)
                return
        from tui.screens.run_status import RunStatusScreen  # until a Monitor pane exists

        self.push_screen(RunStatusScreen(Path(message.run_path)))

    async def on_unmount(self) -> None:
        await self.helper.close()


__all__ = ["TuneBench", "PANES", "PaneSpec", "HEADER", "main", "HelperError"]


def main(args=None) -> int:
    """`tunebench` with no command: open the workbench on the runs directory."""
    runs_dir = getattr(args, "runs_dir", None)
    TuneBench(runs_dir=runs_dir, preset=getattr(args, "preset", None), run=getattr(args, "run_path", None),
              dataset=getattr(args, "dataset", None)).run()
    return 0
