"""Export a checkpoint from the Checkpoints pane: where, which format (safetensors, GGUF, Ollama, vLLM), quantisation,
dtype; runs in the helper with its phases (fetching the converter, converting, checking) shown as they happen."""
from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

DTYPES = ("auto", "float32", "bfloat16", "float16")
FORMATS = [("safetensors", "safetensors"), ("GGUF (llama.cpp)", "gguf"), ("GGUF LoRA adapter", "gguf-lora"),
           ("Ollama (GGUF + Modelfile)", "ollama"), ("vLLM", "vllm")]
QUANTS = ("f16", "bf16", "q8_0", "f32")


def default_out(parent: str, label: str) -> str:
    clean = "".join(c if c.isalnum() or c in "-_" else "-" for c in label).strip("-")
    return str(Path(parent) / clean)


class ExportScreen(ModalScreen[dict | None]):
    """Asks where and how, then streams the helper's export phases; dismissed with what was written."""

    CSS_PATH = "compare.tcss"
    BINDINGS = [Binding("escape", "cancel", "Close")]

    def __init__(self, ref: str, label: str, parent: str):
        super().__init__()
        self.ref, self.label, self.out_parent = ref, label, parent
        self.result: dict | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="export-box"):
            yield Static(f"Export {self.label}", classes="pane-title")
            yield Label("Output directory (must not exist, or be empty):")
            yield Input(default_out(self.out_parent, self.label), id="export-out")
            with Horizontal(id="export-opts"):
                yield Select(FORMATS, value="safetensors", allow_blank=False, id="export-format")
                yield Select([(q, q) for q in QUANTS], value="f16", allow_blank=False, id="export-quant")
                yield Select([(d, d) for d in DTYPES], value="auto", allow_blank=False, id="export-dtype")
            yield Checkbox("safetensors: merge the adapter into the base weights", True, id="export-merge")
            yield Static("", id="export-log")
            with Horizontal(id="export-buttons"):
                yield Button("Export", id="export-go", variant="primary")
                yield Button("Close", id="export-close")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "export-go":
            self.start()
        else:
            self.action_cancel()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.start()

    def log_line(self, text: str, error: bool = False) -> None:
        log = self.query_one("#export-log", Static)
        log.update(text)
        log.set_class(error, "error")

    def start(self) -> None:
        out = self.query_one("#export-out", Input).value.strip()
        if not out:
            self.log_line("give an output directory", error=True)
            return
        self.query_one("#export-go", Button).disabled = True
        fmt = self.query_one("#export-format", Select).value
        args = {"ref": self.ref, "out": str(Path(out).expanduser()), "runs_dir": str(self.app.runs_dir),
                "merge": self.query_one("#export-merge", Checkbox).value, "format": fmt,
                "quant": self.query_one("#export-quant", Select).value if fmt in ("gguf", "gguf-lora", "ollama") else None,
                "dtype": self.query_one("#export-dtype", Select).value}
        self.run_worker(self.export(args), group="export", exclusive=True, exit_on_error=False)

    async def export(self, args: dict) -> None:
        from tui.helper_client import HelperError

        Path(args["out"]).parent.mkdir(parents=True, exist_ok=True)
        try:
            async for msg in self.app.helper_stream("exporting", "export", **args):
                if msg.get("event") == "phase":
                    self.log_line(msg["text"])
                elif msg.get("type") == "done":
                    self.result = msg["result"]
        except HelperError as e:
            self.log_line(f"export failed: {e.args[0] if e.args else e}", error=True)
            self.query_one("#export-go", Button).disabled = False
            return
        r = self.result or {}
        self.log_line(r.get("describe") or f"wrote {r.get('kind')} to {r.get('out')}")
        self.app.set_status(f"exported {self.label} to {r.get('out')}")

    def action_cancel(self) -> None:
        self.workers.cancel_group(self, "export")
        self.dismiss(self.result)
