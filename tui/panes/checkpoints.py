"""The Checkpoints pane: every checkpoint of every run, final models and base models; pick A and B, compare, export.

Reads run directories only (status.json, checkpoints/*/tunebench.json, file sizes): no ML import. The
comparison itself runs in the helper process (tui/screens/compare.py streams it); before it starts, the
pane checks whether a training run holds the GPU and, when memory is short, asks: wait, CPU, or go ahead.
"""
from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Checkbox, DataTable, Input, Label, Static

from engine.checkpoints.bench_results import for_step, run_benchmarks, summary_line
from engine.checkpoints.refs import final_checkpoint
from engine.rundir.runs import ACTIVE, Run, list_runs

COLUMNS = ("model", "step", "eval loss", "saved", "size", "base model")


@dataclass
class Entry:
    """One row: what to pass as a model reference (`ref`) and what to show."""

    ref: str
    kind: str  # "base", "final", "checkpoint"
    label: str
    step: int | None = None
    eval_loss: float | None = None
    time: float | None = None
    size: int | None = None
    base: str = ""
    run_id: str | None = None


def dir_size(path: Path, skip=("optimizer.pt", "rng_state.pth", "scheduler.pt", "training_args.bin")) -> int:
    """Bytes of the model files in a directory (trainer state left out: it is not part of the model)."""
    total = 0
    try:
        for e in os.scandir(path):
            if e.is_file() and e.name not in skip:
                total += e.stat().st_size
    except OSError:
        pass
    return total


def entries(runs_dir: str | Path) -> list[Entry]:
    """Base models of the runs first, then per run (newest first) its final model and every checkpoint."""
    out: list[Entry] = []
    bases: dict[str, None] = {}
    for run in list_runs(runs_dir):
        status = run.status()
        cps = run.checkpoints()
        model = str(status.get("model") or "")
        if model:
            bases[model] = None
        if not cps:
            continue
        final, _ = final_checkpoint(run, status, cps)
        if final is not None and run.state(status) not in ACTIVE:  # a live run has no final model yet
            out.append(Entry(str(run.path), "final", f"{run.id} final", final.step, final.meta.get("eval_loss"),
                             final.meta.get("time"), dir_size(final.path), final.meta.get("base_model", model), run.id))
        for c in reversed(cps):
            out.append(Entry(str(c.path), "checkpoint", f"{run.id}/{c.name}", c.step, c.meta.get("eval_loss"),
                             c.meta.get("time"), dir_size(c.path), c.meta.get("base_model", model), run.id))
    base_rows = [Entry(b, "base", f"base {Path(b).name if Path(b).is_dir() else b}",
                       size=dir_size(Path(b)) if Path(b).is_dir() else None, base=b)
                 for b in bases if Path(b).is_dir() or "/" in b]
    return base_rows + out


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def cells(e: Entry) -> tuple:
    return (e.label, "-" if e.step is None else str(e.step),
            f"{e.eval_loss:.4f}" if isinstance(e.eval_loss, (int, float)) else "-",
            time.strftime("%m-%d %H:%M", time.localtime(e.time)) if e.time else "-",
            human_size(e.size), Path(e.base).name if e.base else "-")


class CheckpointsPane(Widget):
    """The table of models, the A/B picks, prompt and decoding settings; c compares, v compares blind."""

    BINDINGS = [
        Binding("a", "pick('a')", "Set A"),
        Binding("b", "pick('b')", "Set B"),
        Binding("c", "compare(False)", "Compare"),
        Binding("v", "compare(True)", "Blind vote"),
        Binding("e", "export", "Export"),
        Binding("t", "chat(False)", "Chat"),
        Binding("T", "chat(True)", "Chat A and B", show=False),
        Binding("x", "swap", "Swap A/B", show=False),
        Binding("r", "refresh_models", "Refresh", show=False),
        Binding("escape", "leave_field", "Back to the list", show=False),
    ]
    DEFAULT_CSS = """
    CheckpointsPane { height: 1fr; }
    CheckpointsPane DataTable { height: 1fr; }
    CheckpointsPane #ab { height: 2; }
    CheckpointsPane .opts { height: 1; margin-bottom: 1; }
    CheckpointsPane .opts Input, CheckpointsPane .opts Checkbox { margin-right: 1; }
    CheckpointsPane .opts Input { width: 1fr; }
    CheckpointsPane .opts #max-tokens, CheckpointsPane .opts #seed { width: 14; }
    """

    def __init__(self, **kw):
        super().__init__(**kw)
        self.entries: dict[str, Entry] = {}
        self.picked: dict[str, Entry | None] = {"a": None, "b": None}
        self.gpus = None  # a callable returning the GPU list (engine.telemetry.Nvml().devices by default)
        self._shown: list[str] = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("a/b pick A/B · c compare · v blind vote · e export · t chat · T chat with A and B · x swap",
                         classes="help-text")
            yield DataTable(id="models", cursor_type="row", zebra_stripes=True)
            yield Static("", id="ab")
            with Horizontal(classes="opts"):
                yield Input(placeholder="prompt to compare on (empty: the eval split of A's run; @FILE: a prompts file)",
                            id="prompt", compact=True)
                yield Input("128", placeholder="tokens", id="max-tokens", type="integer", compact=True)
                yield Input("0", placeholder="seed", id="seed", type="integer", compact=True)
                yield Checkbox("sample", id="sample", compact=True)
            yield Label("", id="ckpt-status", classes="help-text")

    def on_mount(self) -> None:
        table = self.query_one("#models", DataTable)
        for c in COLUMNS:
            table.add_column(c, key=c)
        self.refresh_models()
        self.set_interval(3.0, self.refresh_models)  # a new checkpoint appears within 3 s
        self.show_ab()

    def focus_first(self) -> None:
        self.query_one("#models", DataTable).focus()

    def action_leave_field(self) -> None:
        """escape in the prompt (or tokens, seed): back to the list, where a, b, c, e act again."""
        self.query_one("#models", DataTable).focus()

    # -- table ------------------------------------------------------------------------------------
    def refresh_models(self) -> None:
        found = entries(self.app.runs_dir)
        keys = [e.ref for e in found]
        self.entries = {e.ref: e for e in found}
        table = self.query_one("#models", DataTable)
        if keys == self._shown:
            return
        cursor, was = table.cursor_row, self.selected()
        table.clear()
        for e in found:
            table.add_row(*cells(e), key=e.ref)
        self._shown = keys
        if found:
            # The highlight stays on the model it was on (a/b/e act on it), not on its row number.
            row = keys.index(was.ref) if was is not None and was.ref in keys else min(cursor, len(found) - 1)
            table.move_cursor(row=row)
        self.status(f"{len(found)} model(s) in {self.app.runs_dir}" if found else
                    f"No checkpoints yet in {self.app.runs_dir}: a run saves one at its end (or press s in Monitor).")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """The highlighted checkpoint's latest `tunebench eval` result, when it has one, on the status line."""
        e = self.entries.get(str(event.row_key.value))
        if e is not None and e.run_id and e.kind != "base":
            self.run_worker(self.show_benchmark(e), group="benchmark", exclusive=True, exit_on_error=False)

    async def show_benchmark(self, e: Entry) -> None:
        run = Run(Path(e.ref).parent.parent if e.kind == "checkpoint" else Path(e.ref))
        found = for_step(await asyncio.to_thread(run_benchmarks, run), e.step)  # reads the run's events.jsonl
        if found is not None:
            self.status(f"benchmark: {summary_line(found)}")

    def action_refresh_models(self) -> None:
        self._shown = []
        self.refresh_models()

    def selected(self) -> Entry | None:
        table = self.query_one("#models", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return self.entries.get(str(key.value))

    def status(self, text: str) -> None:
        self.query_one("#ckpt-status", Label).update(text)

    def show_ab(self) -> None:
        a, b = self.picked["a"], self.picked["b"]
        self.query_one("#ab", Static).update(f"A: {a.label if a else '(a picks the selected row)'}\n"
                                             f"B: {b.label if b else '(b picks the selected row)'}")

    # -- actions ----------------------------------------------------------------------------------
    def action_pick(self, side: str) -> None:
        e = self.selected()
        if e is not None:
            self.picked[side] = e
            self.show_ab()
            if side == "a" and self.picked["b"] is None and e.kind != "base":
                base = next((x for x in self.entries.values() if x.kind == "base" and x.ref == e.base), None)
                if base is not None:  # the natural first question: is this better than the base model?
                    self.picked["b"] = base
                    self.show_ab()

    def pick_ref(self, ref: str) -> bool:
        """Select the row of model `ref` (a run directory = its final model, or a checkpoint) and pick it as A
        (the Sweeps pane's `b`); False when there is no such model yet."""
        self.refresh_models()
        if ref not in self.entries:
            return False
        table = self.query_one("#models", DataTable)
        table.move_cursor(row=table.get_row_index(ref))
        self.picked["b"] = None  # so A's base model becomes B, the natural first comparison
        self.action_pick("a")
        return True

    def action_swap(self) -> None:
        self.picked = {"a": self.picked["b"], "b": self.picked["a"]}
        self.show_ab()

    def settings(self) -> dict:
        """The comparison's arguments from the inputs; ValueError names a bad field."""
        from engine.checkpoints.settings import Decoding

        try:
            tokens = int(self.query_one("#max-tokens", Input).value or 128)
            seed = int(self.query_one("#seed", Input).value or 0)
        except ValueError:
            raise ValueError("tokens and seed must be whole numbers") from None
        dec = Decoding(max_new_tokens=tokens, seed=seed, sample=self.query_one("#sample", Checkbox).value)
        if dec.problems():
            raise ValueError("; ".join(dec.problems()))
        args = {"decoding": dec.__dict__, "runs_dir": str(self.app.runs_dir)}
        text = self.query_one("#prompt", Input).value.strip()
        if text.startswith("@"):
            args["prompts_file"] = os.path.expanduser(text[1:])
        elif text:
            args["prompts"] = [{"messages": [{"role": "user", "content": text}]}]
        return args

    def action_compare(self, blind: bool) -> None:
        a, b = self.picked["a"], self.picked["b"]
        if a is None or b is None:
            self.status("pick A and B first: select a row and press a, another and press b")
            return
        try:
            args = self.settings()
        except ValueError as e:
            self.status(str(e))
            return
        args.update(a=a.ref, b=b.ref)
        self.run_worker(self.start(a, b, args, blind), group="compare-start", exclusive=True, exit_on_error=False)

    async def start(self, a: Entry, b: Entry, args: dict, blind: bool) -> None:
        """Pick the device (asking when a training run holds the GPU), then open the comparison screen."""
        from tui.screens.compare import CompareScreen, DeviceChoice

        advice = await asyncio.to_thread(self.advice, a, b)
        device = advice["device"]
        if advice["ask"]:
            choice = await self.app.push_screen_wait(DeviceChoice(advice["message"]))
            if choice == "cpu":
                device = "cpu"
            elif choice == "wait":
                self.status(f"waiting: {advice['message']} (checking every 5 s)")
                while advice["ask"]:
                    await asyncio.sleep(5)
                    advice = await asyncio.to_thread(self.advice, a, b)
                device = advice["device"]
            elif choice != "go":
                self.status("comparison cancelled")
                return
        self.status(f"comparing on {device}: {advice['message']}" if device == "cpu" else f"comparing on {device}")
        self.app.push_screen(CompareScreen({**args, "device": device}, a.label, b.label, blind))

    def advice(self, a: Entry, b: Entry) -> dict:
        """engine.compare.device_advice over the GPUs NVML reports now (none on a CPU-only machine)."""
        from engine.checkpoints.refs import busy_runs, device_advice, resolve_ref, weights_bytes
        from engine.system.telemetry import Nvml

        gpus = self.gpus() if self.gpus else Nvml().devices()
        need = 0
        for e in (a, b):
            try:
                need += weights_bytes(resolve_ref(e.ref, self.app.runs_dir))
            except LookupError:
                pass
        return device_advice(gpus, need, busy_runs(self.app.runs_dir))

    async def blind_chat(self) -> None:
        a, b = self.picked["a"], self.picked["b"]
        if a is None or b is None:
            self.status("pick A and B first: select a row and press a, another and press b")
            return
        chat = await self.app.ensure_pane("chat")
        if chat is not None:
            await self.app.action_show_pane("chat")
            chat.start(a.ref, b.ref, "blind")

    def action_export(self) -> None:
        from tui.screens.export import ExportScreen

        e = self.selected()
        if e is None or e.kind == "base":
            self.status("select a checkpoint or a final model to export (a base model is already standalone)")
            return
        self.app.push_screen(ExportScreen(e.ref, e.label, str(Path(self.app.runs_dir).parent / "exports")))

    async def action_chat(self, both: bool) -> None:
        """Open the Chat pane on the selected model (both: on A and B side by side)."""
        if both:
            a, b = self.picked["a"], self.picked["b"]
            if a is None or b is None:
                self.status("pick A and B first: select a row and press a, another and press b")
                return
            refs = (a.ref, b.ref)
        else:
            e = self.selected()
            if e is None:
                self.status("select a model to chat with")
                return
            refs = (e.ref, None)
        chat = await self.app.ensure_pane("chat")
        if chat is None:
            self.status("no Chat pane in this workbench")
            return
        await self.app.action_show_pane("chat")
        chat.start(*refs)

    def commands(self):
        return [("Chat with the selected model", "Open the Chat pane on it", lambda: self.run_worker(self.action_chat(False))),
                ("Blind chat A vs B", "Chat with A and B hidden; picks become DPO rows",
                 lambda: self.run_worker(self.blind_chat())),
                ("Compare A and B", "Open the A/B comparison of the picked models", lambda: self.action_compare(False)),
                ("Blind vote A vs B", "Compare with the models hidden and vote; votes become DPO data",
                 lambda: self.action_compare(True))]
