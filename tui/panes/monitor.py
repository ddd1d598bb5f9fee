"""The Monitor pane: one run's live loss, learning rate, grad norm, throughput and memory, with controls.

A thread worker tails the run's events.jsonl into a bounded RunData (engine.history) and posts Updated
messages at most 4 times a second (a newer one replaces one still queued), so a run logging 20 steps/s
costs the UI a few redraws a second, and attaching to a 200k-event history parses it once, off the UI
thread. Controls go through engine.runs.Run.send; stop, which ends the run, asks first.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal, Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Static
from textual.worker import Worker, WorkerState, get_current_worker

from engine.config import Config
from engine.data.progress import describe
from engine.monitor.history import Follower, RunData
from engine.rundir.runs import ACTIVE, Run
from tui.fmt import config_line, fmt_bytes, fmt_duration, progress_bar
from tui.panes.monitor_views import eval_text, memory_view
from tui.screens.confirm import ConfirmScreen
from tui.widgets.charts import ChartData, LineChart, Marker, Trace, fmt_num

POLL = 0.25          # seconds between reads of events.jsonl while following: the redraw rate bound
CHART_EVERY = 0.5    # seconds between chart redraws while following (a chart costs ~10 ms to draw)
STATUS_EVERY = 1.0   # seconds between reads of status.json (state, error, liveness of the engine)
SMOOTHING = (0.0, 0.6, 0.9, 0.97)
STATE_CLASS = {"running": "ok", "starting": "ok", "completed": "ok", "paused": "warn", "stopping": "warn",
               "stopped": "warn", "failed": "error", "lost": "error"}


class Body(Vertical, can_focus=True):
    """The Monitor's content; focusable, so the pane's keys (p, s, e, x, m) reach it."""


class MonitorPane(Widget):
    """Live view of one run; `open_run(path)` attaches (whole history first, then live)."""

    BINDINGS = [
        Binding("x", "stop", "Stop run"), Binding("p", "pause", "Pause/resume"),
        Binding("s", "save", "Save now"), Binding("e", "eval", "Eval now"),
        Binding("m", "smoothing", "Smoothing"),
    ]
    # Charts share the height left by the text: the loss and the memory chart are both on screen at 80x24
    # (side by side, the text cut to one line each: `-compact`) as at 120x36 and taller (stacked, 3:2).
    DEFAULT_CSS = """
    MonitorPane { height: 1fr; }
    MonitorPane #mon-body { height: 1fr; }
    MonitorPane #mon-error { display: none; color: $error; border: round $error; padding: 0 1; height: auto;
                             max-height: 8; overflow-y: auto; }
    MonitorPane #mon-error.-show { display: block; }
    MonitorPane #mon-head, MonitorPane #mon-config, MonitorPane #mon-numbers, MonitorPane #mon-evals { height: auto; }
    MonitorPane #mon-config { color: $text-muted; }
    MonitorPane #mon-charts { height: 1fr; layout: vertical; }
    MonitorPane #train-box { height: 3fr; min-height: 8; }
    MonitorPane #chart-loss { width: 2fr; height: 1fr; }
    MonitorPane #side { width: 1fr; }
    MonitorPane #side LineChart { height: 1fr; min-height: 4; }
    MonitorPane #chart-pref { display: none; height: 2fr; min-height: 6; }
    MonitorPane #chart-pref.-show { display: block; }
    MonitorPane #mem-box { height: 2fr; min-height: 7; }
    MonitorPane #chart-mem { height: 1fr; min-height: 5; }
    MonitorPane #mon-gpu, MonitorPane #mon-log { height: auto; color: $text-muted; }
    MonitorPane #mon-log { max-height: 3; }
    MonitorPane.-compact #mon-config, MonitorPane.-compact #mon-numbers, MonitorPane.-compact #mon-gpu,
    MonitorPane.-compact #mon-log, MonitorPane.-compact #mon-evals { height: 1; text-wrap: nowrap;
                                                                     text-overflow: ellipsis; }
    MonitorPane.-compact #mon-charts { layout: horizontal; }
    MonitorPane.-compact #train-box, MonitorPane.-compact #mem-box { width: 1fr; height: 1fr; min-height: 0; }
    MonitorPane.-compact #mem-box { margin-left: 1; }
    MonitorPane.-compact #side, MonitorPane.-compact #chart-pref.-show { display: none; }
    MonitorPane > .monitor--strong { text-style: bold; }
    MonitorPane > .monitor--dim { color: $text-muted; }
    MonitorPane > .monitor--ok { color: $success; text-style: bold; }
    MonitorPane > .monitor--warn { color: $warning; text-style: bold; }
    MonitorPane > .monitor--error { color: $error; text-style: bold; }
    """
    COMPACT_BELOW = (100, 28)  # a pane narrower or lower than this (80x24, 100x30 terminals) lays out compact

    COMPONENT_CLASSES = {"monitor--strong", "monitor--dim", "monitor--ok", "monitor--warn", "monitor--error"}

    @dataclass
    class Updated(Message):
        """New events or a new status for the run at `run_path`; a newer one replaces one still queued."""

        run_path: Path
        status: dict
        state: str
        attach_s: float | None = None

        def can_replace(self, message: Message) -> bool:
            """Textual asks the older message whether the newer `message` queued behind it may replace it.
            The one that ends the attach carries attach_s, which no later one repeats: never dropped."""
            return (isinstance(message, MonitorPane.Updated) and message.run_path == self.run_path
                    and self.attach_s is None)

    @dataclass
    class Attaching(Message):
        """Progress through a long history (bytes read of the size at attach time)."""

        run_path: Path
        done: int
        total: int

    def __init__(self, **kw):
        super().__init__(**kw)
        self.run: Run | None = None
        self.data = RunData()
        self.status: dict = {}
        self.state: str = ""
        self.cfg: Config | None = None
        self.attach_s: float | None = None
        self.attach_cpu_s: float | None = None
        self.smoothing = 1
        self.redraws = 0
        self.posts = 0  # updates the follower posted (one a poll at most; queued ones merge)
        self._drawn: dict[str, tuple] = {}  # chart group -> data versions it shows: unchanged groups skip drawing
        self._charts_at = 0.0
        self._later = None
        self.sent: list[tuple[str, Path]] = []  # controls this pane sent to the run shown, in order
        self._recheck = threading.Event()  # set when a control is sent: the follower re-reads status.json now

    def compose(self) -> ComposeResult:
        with Body(id="mon-body"):
            yield Static("", id="mon-error")
            yield Static("No run open. Choose one in Runs [1] and press Enter, or start the workbench with "
                         "`tunebench attach RUN`.", id="mon-head")
            yield Static("", id="mon-config")
            yield Static("", id="mon-numbers")
            yield Static("", id="mon-evals")  # eval metrics (rouge1, bleu, accuracy...): a row each, sparklines
            with Container(id="mon-charts"):
                with Horizontal(id="train-box"):
                    yield LineChart(id="chart-loss")
                    with Vertical(id="side"):
                        yield LineChart(id="chart-lr")
                        yield LineChart(id="chart-grad")
                        yield LineChart(id="chart-tps")
                yield LineChart(id="chart-pref")
                with Vertical(id="mem-box"):
                    yield LineChart(id="chart-mem")
                    yield Static("", id="mon-gpu")
            yield Static("", id="mon-log")

    def on_resize(self, event: events.Resize) -> None:
        w, h = self.COMPACT_BELOW
        compact = event.size.width < w or event.size.height < h
        if compact != self.has_class("-compact") and self.run is not None:
            self.call_after_refresh(self._charts, True)  # the eval rows change shape with the layout
        self.set_class(compact, "-compact")

    def focus_first(self) -> None:
        self.query_one("#mon-body").focus()

    # -- attaching and following --------------------------------------------------------------------
    def open_run(self, path: Path) -> None:
        """Show the run at `path`: read its whole history in a worker, then follow it live."""
        self.run = Run(Path(path))
        self.data = RunData()
        self.sent = []
        self._drawn, self._charts_at = {}, 0.0
        self.status, self.state, self.attach_s = self.run.status(), "", None
        try:
            self.cfg = self.run.settings()
        except Exception:  # noqa: BLE001 - a missing or broken config.yaml still lets the run be watched
            self.cfg = None
        self.query_one("#mon-head", Static).update(f"attaching to {self.run.id}…")
        self.follow(self.run, self.data)

    @work(thread=True, exclusive=True, group="monitor-follow", exit_on_error=False)
    def follow(self, run: Run, data: RunData) -> None:
        worker = get_current_worker()
        self._recheck.clear()
        follower = Follower(run.events_path, data)
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            size = run.events_path.stat().st_size
        except OSError:
            size = 0
        shown = [t0]

        def progress(offset: int) -> None:  # a long history says how far it got, 5 times a second
            if time.perf_counter() - shown[0] > 0.2:
                shown[0] = time.perf_counter()
                self.post_message(self.Attaching(run.path, offset, size))

        follower.catch_up(progress)
        status = run.status()
        state = run.state(status)
        attach_s = time.perf_counter() - t0
        self.attach_cpu_s = time.thread_time() - c0  # this thread's CPU: the cost itself, without waiting for a core
        self.post_message(self.Updated(run.path, status, state, attach_s))
        last_status = time.monotonic()
        with data.lock:
            seen_state = data.state
        while not worker.is_cancelled:
            n = follower.poll()
            now = time.monotonic()
            changed = False
            with data.lock:
                event_state = data.state
            # status.json and the engine's liveness once a second, and at once when the engine logs a state
            # change or this pane sent a control: the head never shows a state the engine has left.
            if now - last_status >= STATUS_EVERY or event_state != seen_state or self._recheck.is_set():
                self._recheck.clear()
                seen_state = event_state
                new = run.status()
                new_state = run.state(new)
                # A live run redraws each second (elapsed, ETA); a finished one only when something changed.
                changed = new != status or new_state != state or new_state in ACTIVE
                status, state, last_status = new, new_state, now
            if n or changed:
                self.posts += 1  # at most one update a poll, however many events it read
                self.post_message(self.Updated(run.path, status, state))
            if n < 1000:  # a backlog (the run wrote faster than one poll reads) is read at once
                # A finished run only grows again if resumed: look four times less often.
                self._recheck.wait(POLL if state in ("created",) + ACTIVE else 4 * POLL)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A follower that died says so on the pane instead of leaving a frozen chart."""
        if event.worker.group == "monitor-follow" and event.state == WorkerState.ERROR:
            box = self.query_one("#mon-error", Static)
            box.update(Text(f"Following this run stopped: {event.worker.error!r}. Reopen it from Runs [1]."))
            box.add_class("-show")
            self.notify(f"monitor: {event.worker.error}", severity="error")

    def on_monitor_pane_attaching(self, message: Attaching) -> None:
        message.stop()
        if self.run is not None and message.run_path == self.run.path and self.attach_s is None:
            pct = 100 * message.done / message.total if message.total else 100.0
            self.query_one("#mon-head", Static).update(
                f"attaching to {self.run.id}: {pct:.0f}% of {fmt_bytes(message.total)} of events read…")

    def on_monitor_pane_updated(self, message: Updated) -> None:
        message.stop()
        if self.run is None or message.run_path != self.run.path:
            return  # a late message from the run shown before
        self.status, self.state = message.status, message.state
        if message.attach_s is not None:
            self.attach_s = message.attach_s
        self.redraw()

    # -- drawing ------------------------------------------------------------------------------------
    def _style(self, name: str):
        return self.get_component_rich_style(f"monitor--{name}")

    def redraw(self, force: bool = False) -> None:
        """Text at every update; charts only when their data changed, at most every CHART_EVERY seconds."""
        self.redraws += 1
        d, st = self.data, self.status
        with d.lock:
            step = max(d.step, int(st.get("step") or 0))
            rate = d.step_rate()
            last_m = dict(d.last_metrics)
            eval_loss = d.eval.get("loss")
            last_eval = (eval_loss.x1[-1], eval_loss.last[-1]) if eval_loss is not None and len(eval_loss) else None
            logs = list(d.logs)[-3:]
            events = d.events
        self._head(step, rate, events)
        self._numbers(last_m, last_eval)
        self._error()
        warn = [m for m in logs if m[1] in ("warning", "error")] or logs[-1:]
        log = self.query_one("#mon-log", Static)
        log.display = bool(warn)  # no empty line where there is nothing to say
        log.update(Text("\n".join(f"{time.strftime('%H:%M:%S', time.localtime(t or 0))} {lvl}: {msg}"
                                  for t, lvl, msg in warn)))
        self._charts(force)

    def _charts_later(self) -> None:
        self._later = None
        self._charts()

    def _charts(self, force: bool = False) -> None:
        d, now = self.data, time.monotonic()
        with d.lock:
            # the layout is in the key: the eval rows are one line when compact, a row per metric otherwise
            versions = {"train": (d.v_train, self.smoothing, self.has_class("-compact")), "mem": (d.v_tele,)}
            stale = [g for g, v in versions.items() if self._drawn.get(g) != v]
            if not stale:
                return
            if not force and now - self._charts_at < CHART_EVERY:
                if self._later is None:  # drawn a moment ago: draw when due, even if nothing else arrives
                    self._later = self.set_timer(CHART_EVERY - (now - self._charts_at), self._charts_later)
                return
            ckpts = list(d.checkpoints)
            eval_loss = d.eval.get("loss")
            eval_pts = eval_loss.points() if eval_loss is not None else []
            pref = d.pref_keys()
            scores = d.eval_metrics()
            gpus = list(d.gpu_indices)
            last_t = dict(d.last_telemetry)
        self._charts_at = now
        if "train" in stale:
            self._drawn["train"] = versions["train"]
            self._train_charts(ckpts, eval_pts, pref)
            box = self.query_one("#mon-evals", Static)
            box.display = any(scores.values())  # no empty row for a run without eval metrics
            box.update(eval_text(scores, self.has_class("-compact"), self._style("dim"), self._style("strong")))
        if "mem" in stale:
            self._drawn["mem"] = versions["mem"]
            self._memory(gpus, last_t)

    def _head(self, step: int, rate: float | None, events: int) -> None:
        st, state = self.status, self.state
        max_steps = st.get("max_steps") or (self.cfg.training.max_steps if self.cfg and self.cfg.training.max_steps > 0
                                             else None)
        started, ended = st.get("started"), st.get("ended")
        if state == "lost":  # the engine died: its last status write is when the clock stopped
            ended = ended or st.get("updated")
        elapsed = ((ended or time.time()) - started) if started else None
        t = Text()
        t.append(f"{self.run.id}  ", self._style("strong"))
        t.append(f"{state}{' (crashed: engine process gone)' if state == 'lost' else ''}",
                 self._style(STATE_CLASS.get(state, "strong")))
        t.append(f"   step {step}" + (f" / {max_steps}" if max_steps else ""))
        if max_steps:
            frac = step / max_steps
            t.append(f"  {progress_bar(frac)} {frac * 100:.1f}%")
        waiting = self.pending()
        if waiting and state in ACTIVE:  # sent, not yet taken by the engine (it acts between steps)
            t.append(f" · {', '.join(waiting)} requested", self._style("warn"))
        t.append(f"   elapsed {fmt_duration(elapsed)}")
        if state in ("running", "starting") and max_steps and rate:
            t.append(f"   ETA {fmt_duration((max_steps - step) / rate)}   {rate:.2f} steps/s")
        t.append(f"   {events} events", self._style("dim"))  # (attach_s, the attach time, is for bench/monitor.py)
        if state == "starting" and isinstance(st.get("data"), dict):  # the engine is preparing the data
            t.append(f"\n{describe(st['data'])}")
        self.query_one("#mon-head", Static).update(t)
        self.query_one("#mon-config", Static).update(config_line(self.cfg, st))

    def _numbers(self, m: dict, last_eval: tuple | None) -> None:
        parts = []
        for key, label in (("loss", "loss"), ("learning_rate", "lr"), ("grad_norm", "grad norm"),
                           ("tokens_per_s", "tokens/s"), ("num_tokens", "tokens"), ("mean_token_accuracy", "token acc"),
                           ("epoch", "epoch")):
            if isinstance(m.get(key), (int, float)):
                parts.append(f"{label} {fmt_num(m[key])}")
        if last_eval:
            parts.insert(1, f"eval loss {fmt_num(last_eval[1])} @ step {last_eval[0]:.0f}")
        smooth = SMOOTHING[self.smoothing]
        parts.append(f"smoothing {smooth:g} [m]" if smooth else "smoothing off [m]")
        self.query_one("#mon-numbers", Static).update(Text("  ·  ".join(parts)))  # Text: "[m]" is not markup

    def _error(self) -> None:
        box = self.query_one("#mon-error", Static)
        st, state = self.status, self.state
        if state in ("failed", "lost"):
            msg = st.get("error") or ("the engine process is gone while the run said it was running; "
                                      "`tunebench logs RUN` shows its last output, `tunebench train --resume RUN` "
                                      "continues from the last checkpoint")
            head = "OUT OF MEMORY" if st.get("oom") else ("FAILED" if state == "failed" else "LOST")
            box.update(Text(f"{head}: {msg}"))
            box.add_class("-show")
            if st.get("oom"):  # the memory timeline up to the failure goes right under the error
                charts = self.query_one("#mon-charts")
                mem = self.query_one("#mem-box")
                if charts.children.index(mem) > 0:
                    charts.move_child(mem, before=0)
        else:
            box.remove_class("-show")

    def _train_charts(self, ckpts: list, eval_pts: list, pref: list[str]) -> None:
        d, lock = self.data, self.data.lock
        markers = [Marker(s, "▲", "ckpt") for s in ckpts] + [Marker(x, "◆", "eval") for x, _ in eval_pts]
        loss = [Trace("train", d.train["loss"], 0, smooth=SMOOTHING[self.smoothing], lock=lock)] if "loss" in d.train else []
        if eval_pts:
            loss.append(Trace("eval", eval_pts, 1, points=True))
        x_range = None
        if "loss" in d.train:
            with lock:
                x_range = d.train["loss"].x_range()
        self.query_one("#chart-loss", LineChart).update_data(ChartData(
            "loss by step  (▲ checkpoint ◆ eval)", loss, markers, x_range=x_range,
            empty="waiting for the first logged step"))
        for cid, key, title, color in (("#chart-lr", "learning_rate", "learning rate", 3),
                                       ("#chart-grad", "grad_norm", "grad norm", 2),
                                       ("#chart-tps", "tokens_per_s", "tokens/s", 5)):
            traces = [Trace(key.replace("_", " "), d.train[key], color, lock=lock)] if key in d.train else []
            self.query_one(cid, LineChart).update_data(ChartData(title, traces, markers, x_range=x_range))
        chart = self.query_one("#chart-pref", LineChart)
        chart.set_class(bool(pref), "-show")
        if pref:
            traces = [Trace(k, d.train[k], i, lock=lock) for i, k in enumerate(pref[:6])]
            chart.update_data(ChartData("rewards and preference metrics", traces, markers, x_range=x_range))

    def _memory(self, gpus: list, last_t: dict) -> None:
        chart, info = memory_view(self.data, gpus, last_t)
        self.query_one("#chart-mem", LineChart).update_data(chart)
        self.query_one("#mon-gpu", Static).update(info)

    # -- controls -----------------------------------------------------------------------------------
    def _live(self, what: str) -> bool:
        if self.run is None:
            self.notify("No run open.", severity="warning")
            return False
        state = self.run.state()
        if state not in ACTIVE:
            self.notify(f"{self.run.id} is {state}: {what} only reaches a live run.", severity="warning")
            return False
        return True

    def pending(self) -> list[str]:
        """Controls this pane sent that the engine has not taken yet (it deletes each file as it takes it)."""
        return [c for c, p in self.sent[-8:] if p.exists()]

    def _send(self, command: str, note: str) -> None:
        self.sent.append((command, self.run.send(command)))  # files in the order pressed: the engine's order
        self._recheck.set()
        self.notify(f"{note} sent to {self.run.id}; the engine acts on it after the current step.")
        self.redraw()  # "… requested" beside the state the engine reports, until it takes the request

    def action_stop(self) -> None:
        if not self._live("stop"):
            return
        step = max(self.data.step, int(self.status.get("step") or 0))

        def answered(yes: bool | None) -> None:
            if yes:
                self._send("stop", "stop")

        self.app.push_screen(ConfirmScreen(
            f"Stop {self.run.id} at step {step}?\n\nThe engine saves a checkpoint and ends the run; the steps "
            f"it would still have trained are lost unless you continue it with `tunebench train --resume`."),
            answered)

    def action_pause(self) -> None:
        """Pause, or resume: relative to where the user already asked the run to be. `p` twice before the engine
        took the first sends pause then resume (the engine applies both, in order), not pause twice."""
        if not self._live("pause/resume"):
            return
        asked = [c for c in self.pending() if c in ("pause", "resume")]
        paused = asked[-1] == "pause" if asked else self.run.state() == "paused"
        self._send("resume" if paused else "pause", "resume" if paused else "pause")

    def action_save(self) -> None:
        if self._live("save now"):
            self._send("save", "save now")

    def action_eval(self) -> None:
        if self._live("evaluate now"):
            if self.data.data_info.get("eval_rows") == 0:
                self.notify("This run has no eval data (data.eval or data.eval_fraction); nothing to evaluate.",
                            severity="warning")
                return
            self._send("eval", "evaluate now")

    def action_smoothing(self) -> None:
        self.smoothing = (self.smoothing + 1) % len(SMOOTHING)
        if self.run is not None:
            self.redraw(force=True)

    def commands(self):
        return [("Monitor: stop run", "Stop the run shown in Monitor (asks first)", self.action_stop),
                ("Monitor: pause or resume", "Pause or resume the run shown in Monitor", self.action_pause),
                ("Monitor: save checkpoint now", "Ask the engine to save now", self.action_save),
                ("Monitor: evaluate now", "Ask the engine to evaluate now", self.action_eval)]
