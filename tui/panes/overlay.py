"""The Compare pane: several runs' loss curves on one chart, aligned by step or by tokens seen.

Each checked run gets its own Follower that reads only metrics and eval events (other lines are
skipped before parsing), so comparing long runs costs a fraction of attaching to them; live runs
keep growing on the chart. Unchecking a run drops its data.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import SelectionList, Static
from textual.widgets.selection_list import Selection
from textual.worker import Worker, WorkerState, get_current_worker

from engine.monitor.history import Follower, RunData
from engine.rundir.runs import list_runs
from tui.widgets.charts import ChartData, LineChart, Trace

KINDS = ("metrics", "eval")
POLL = 1.0  # seconds between reads of the checked runs' events (a comparison need not be faster)
SMOOTHING = (0.0, 0.6, 0.9, 0.97)


def short_id(run_id: str, width: int = 30) -> str:
    """A run id without its start time (`20250301-101500-`: the Runs pane shows it), cut in the middle to `width`:
    the method and name at the start and the random suffix at the end stay, so two runs never look alike."""
    rest = re.sub(r"^\d{8}-\d{6}-", "", run_id)
    return rest if len(rest) <= width else rest[:width - 6] + "…" + rest[-5:]


def run_prompt(run_id: str, state: str) -> str:
    """One line of the run list: the state first (never cut), then the id."""
    return f"{state:<9} {short_id(run_id)}"


class OverlayPane(Widget):
    """Check runs on the left; their loss curves share the chart on the right."""

    BINDINGS = [Binding("a", "align", "Step/tokens"), Binding("m", "smoothing", "Smoothing"),
                Binding("v", "eval_loss", "Train/eval loss"), Binding("r", "refresh_runs", "Refresh runs")]
    DEFAULT_CSS = """
    OverlayPane { height: 1fr; }
    OverlayPane #ov-runs { width: 40%; min-width: 34; max-width: 48; height: 1fr; }
    OverlayPane #ov-right { width: 1fr; }
    OverlayPane #ov-chart { height: 1fr; min-height: 10; }
    OverlayPane #ov-info { height: auto; color: $text-muted; }
    """

    @dataclass
    class Loaded(Message):
        """New points for the checked runs; a newer one replaces one still queued."""

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, OverlayPane.Loaded)

    def __init__(self, **kw):
        super().__init__(**kw)
        self.followers: dict[str, Follower] = {}
        self.by_tokens = False
        self.eval_loss = False
        self.smoothing = 1
        self.known: dict[str, str] = {}  # run id -> the prompt shown

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield SelectionList[str](id="ov-runs")
            with Vertical(id="ov-right"):
                yield Static("Check runs (space) to compare their loss curves. a: align by step/tokens, "
                             "v: train/eval loss, m: smoothing.", id="ov-info")
                yield LineChart(id="ov-chart")

    def on_mount(self) -> None:
        self.refresh_runs()
        self.set_interval(3.0, self.refresh_runs)
        self.poll_loop()

    def focus_first(self) -> None:
        self.query_one(SelectionList).focus()

    def refresh_runs(self) -> None:
        """New runs land at the bottom (oldest first); every run's state is re-read; the highlight stays on
        the run it was on, whatever was added or removed."""
        sel = self.query_one(SelectionList)
        was = sel.get_option_at_index(sel.highlighted).id if sel.highlighted is not None else None
        runs = list(reversed(list_runs(self.app.runs_dir)))
        for run in runs:
            prompt = run_prompt(run.id, run.state())
            if run.id not in self.known:
                self.known[run.id] = prompt
                sel.add_option(Selection(prompt, str(run.path), id=run.id))
            elif self.known[run.id] != prompt:
                self.known[run.id] = prompt
                sel.replace_option_prompt(run.id, prompt)
        gone = set(self.known) - {r.id for r in runs}
        for run_id in gone:
            del self.known[run_id]
            sel.remove_option(run_id)
        if was in self.known:
            sel.highlighted = sel.get_option_index(was)
        elif sel.highlighted is None and sel.option_count:
            sel.highlighted = 0  # so space checks a run straight away

    def select(self, paths: list[str | Path]) -> None:
        """Check these runs (by path), as if the user had."""
        sel = self.query_one(SelectionList)
        for p in paths:
            sel.select(str(p))

    def on_selection_list_selected_changed(self, event: SelectionList.SelectedChanged) -> None:
        event.stop()
        chosen = set(event.selection_list.selected)
        for path in list(self.followers):
            if path not in chosen:
                del self.followers[path]
        for path in chosen:
            if path not in self.followers:
                self.followers[path] = Follower(Path(path) / "events.jsonl", RunData(by_tokens=True), kinds=KINDS)
        self.redraw()

    @work(thread=True, exclusive=True, group="overlay-poll", exit_on_error=False)
    def poll_loop(self) -> None:
        """Catch each checked run up and keep it current; the UI thread only draws."""
        worker = get_current_worker()
        while not worker.is_cancelled:
            got = 0
            for f in list(self.followers.values()):
                got += f.catch_up()
            if got:
                self.post_message(self.Loaded())
            time.sleep(POLL if not got else 0.05)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "overlay-poll" and event.state == WorkerState.ERROR:
            self.notify(f"overlay: reading the runs failed: {event.worker.error}", severity="error")

    def on_overlay_pane_loaded(self, message: Loaded) -> None:
        message.stop()
        self.redraw()

    def redraw(self) -> None:
        traces, missing = [], []
        for i, (path, f) in enumerate(sorted(self.followers.items())):
            d = f.data
            name = Path(path).name
            if self.eval_loss:
                series = d.eval.get("loss")
            else:
                series = d.loss_by_tokens if self.by_tokens else d.train.get("loss")
            if series is None or not len(series):
                missing.append(name)
                continue
            traces.append(Trace(short_id(name), series, i, smooth=0.0 if self.eval_loss else SMOOTHING[self.smoothing],
                                points=self.eval_loss, lock=d.lock))
        axis = "tokens seen" if self.by_tokens and not self.eval_loss else "step"
        what = "eval loss" if self.eval_loss else "train loss"
        if self.by_tokens and self.eval_loss:
            what += " (eval points carry steps only: aligned by step)"
        self.query_one("#ov-chart", LineChart).update_data(ChartData(
            f"{what} by {axis}", traces, empty="check one or more runs on the left"))
        info = [f"{len(self.followers)} run(s) checked", f"aligned by {axis}",
                f"smoothing {SMOOTHING[self.smoothing]:g}" if SMOOTHING[self.smoothing] else "smoothing off"]
        if missing:
            info.append(f"no {'token counts' if self.by_tokens else what} yet: {', '.join(missing)}")
        self.query_one("#ov-info", Static).update("  ·  ".join(info))  # the keys are in the footer

    def action_align(self) -> None:
        self.by_tokens = not self.by_tokens
        self.redraw()

    def action_eval_loss(self) -> None:
        self.eval_loss = not self.eval_loss
        self.redraw()

    def action_smoothing(self) -> None:
        self.smoothing = (self.smoothing + 1) % len(SMOOTHING)
        self.redraw()

    def action_refresh_runs(self) -> None:
        self.refresh_runs()

    def summary(self) -> dict[str, float | None]:
        """Last train loss of each checked run (for tests and the status line)."""
        out = {}
        for path, f in self.followers.items():
            s = f.data.train.get("loss")
            with f.data.lock:
                out[Path(path).name] = s.latest() if s is not None else None
        return out

    def commands(self):
        return [("Compare: align by step or tokens", "Toggle the x axis of the comparison", self.action_align)]


__all__ = ["OverlayPane"]
