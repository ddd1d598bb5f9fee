"""The Chat pane: talk to a checkpoint, or to A and B side by side (or blind), streamed token by token.

The models live in the helper process (engine/helper/chat_ops.py) for as long as the chat is open; this pane
only paints. Before loading it asks where, as a comparison does (engine.checkpoints.refs.device_advice: a
training run is not starved; wait / CPU / go ahead). Chats are saved under <runs dir>/chats/ after each turn;
ctrl+o reopens one, ctrl+t sends the open chat to the Dataset pane as SFT rows (not ctrl+d: a text field's
delete-right). Light: engine.checkpoints.chats reads and converts saved chats without the ML stack.
"""
from __future__ import annotations

import asyncio
import time

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Checkbox, Input, Label, OptionList, Select, Static

from engine.checkpoints import chats
from engine.checkpoints.display import printable
from engine.checkpoints.votes import BlindOrder

MODES = [("one model", "single"), ("A and B", "side"), ("blind A/B", "blind")]
PICKS = {"1": "left", "2": "right", "t": "tie"}


class ChatList(ModalScreen[str | None]):
    """Saved chats, newest first; enter reopens one."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Close")]
    DEFAULT_CSS = "ChatList { align: center middle; } ChatList OptionList { width: 90%; max-height: 80%; }"

    def __init__(self, found: list[dict]):
        super().__init__()
        self.found = found

    def compose(self) -> ComposeResult:
        yield OptionList(*[Content(f"{time.strftime('%m-%d %H:%M', time.localtime(c['updated']))}  {c['mode']:<6} "
                                   f"{c['turns']:>3} turns  {c['labels']['a']}  {printable(c['title'])}")
                           for c in self.found], id="chat-list")  # Content: what a user typed is not markup

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.found[event.option_index]["path"])


class ChatPane(Widget):
    """Models and settings on top, the conversation (one or two columns), the message box at the bottom."""

    BINDINGS = [Binding("ctrl+n", "new", "New chat"), Binding("ctrl+o", "reopen", "Open saved"),
                Binding("ctrl+t", "to_dataset", "To Dataset (SFT)"), Binding("escape", "leave", show=False)]
    DEFAULT_CSS = """
    ChatPane { height: 1fr; }
    ChatPane #chat-cols { height: 1fr; }
    ChatPane .chat-col { border: round $primary; border-title-color: $accent; height: 1fr; width: 1fr; }
    ChatPane #chat-a-ref, ChatPane #chat-b-ref, ChatPane #chat-system { width: 1fr; }
    ChatPane #chat-tokens, ChatPane #chat-temp { width: 10; }
    ChatPane #chat-mode { width: 18; }
    """

    def __init__(self, **kw):
        super().__init__(**kw)
        self.session: str | None = None
        self.conv: dict | None = None  # the conversation as the helper returned it (to_dict)
        self.live: dict | None = None  # the turn being answered: {"user", "a", "b"}
        self.gpus = None  # a callable returning the GPU list (engine.system.telemetry.Nvml().devices by default)

    def compose(self) -> ComposeResult:
        with Horizontal(classes="bar-row"):
            yield Input(placeholder="model: run, RUN@STEP, checkpoint or base dir", id="chat-a-ref", compact=True)
            yield Input(placeholder="B (optional)", id="chat-b-ref", compact=True)
            yield Select(MODES, value="single", allow_blank=False, id="chat-mode", compact=True)
        with Horizontal(classes="bar-row"):
            yield Input(placeholder="system prompt", id="chat-system", compact=True)
            yield Input("256", placeholder="tokens", id="chat-tokens", type="integer", compact=True)
            yield Input("0.7", placeholder="temp", id="chat-temp", type="number", compact=True)
            yield Checkbox("sample", id="chat-sample", compact=True)
        with Horizontal(id="chat-cols"):
            with VerticalScroll(id="chat-col-a", classes="chat-col"):
                yield Static("", id="chat-a")
            with VerticalScroll(id="chat-col-b", classes="chat-col"):
                yield Static("", id="chat-b")
        yield Input(placeholder="ctrl+n starts the chat with the models above; then type a message", id="chat-input")
        yield Label("", id="chat-status", classes="help-text")

    def on_mount(self) -> None:
        self.query_one("#chat-col-b").display = False
        self.query_one("#chat-col-a").border_title = "chat"

    def focus_first(self) -> None:
        self.query_one("#chat-input" if self.session else "#chat-a-ref").focus()

    def commands(self):
        return [("New chat", "Load the models named in the Chat pane and start a conversation", self.action_new),
                ("Open a saved chat", "Reopen a conversation from <runs dir>/chats", self.action_reopen),
                ("Send chat to Dataset", "Write the chat as SFT rows and open them in the Dataset pane",
                 self.action_to_dataset)]

    def status(self, text: str, error: bool = False) -> None:
        label = self.query_one("#chat-status", Label)
        label.update(text)
        label.set_class(error, "error")

    def action_leave(self) -> None:
        self.query_one("#chat-cols").focus()

    # -- starting ---------------------------------------------------------------------------------
    def start(self, a: str, b: str | None = None, mode: str | None = None) -> None:
        """Fill the models (from the Checkpoints pane) and open the chat."""
        self.query_one("#chat-a-ref", Input).value = a
        self.query_one("#chat-b-ref", Input).value = b or ""
        self.query_one("#chat-mode", Select).value = mode or ("side" if b else "single")
        self.action_new()

    def settings(self) -> dict:
        """Decoding from the inputs; ValueError names the bad field."""
        from engine.checkpoints.settings import Decoding

        try:
            tokens = int(self.query_one("#chat-tokens", Input).value or 256)
            temp = float(self.query_one("#chat-temp", Input).value or 0.7)
        except ValueError:
            raise ValueError("tokens must be a whole number and temp a number") from None
        dec = Decoding(max_new_tokens=tokens, temperature=temp, sample=self.query_one("#chat-sample", Checkbox).value)
        if dec.problems():
            raise ValueError("; ".join(dec.problems()))
        return dec.as_dict()

    def action_new(self) -> None:
        a = self.query_one("#chat-a-ref", Input).value.strip()
        b = self.query_one("#chat-b-ref", Input).value.strip() or None
        mode = str(self.query_one("#chat-mode", Select).value)
        if not a:
            self.status("name a model first (or press t on a row of the Checkpoints pane)", error=True)
            return
        if mode != "single" and not b:
            self.status(f"{dict((v, k) for k, v in MODES)[mode]} needs a model B", error=True)
            return
        try:
            dec = self.settings()
        except ValueError as e:
            self.status(str(e), error=True)
            return
        args = {"a": a, "b": b if mode != "single" else None, "mode": mode, "decoding": dec,
                "system": self.query_one("#chat-system", Input).value, "runs_dir": str(self.app.runs_dir)}
        self.run_worker(self.open_chat(args, [a] + ([b] if mode != "single" else [])), group="chat-open",
                        exclusive=True, exit_on_error=False)

    def action_reopen(self) -> None:
        found = chats.list_chats(self.app.runs_dir)
        if not found:
            self.status(f"no saved chats in {self.app.runs_dir}/chats yet")
            return

        def chosen(path: str | None) -> None:
            if path:
                conv = chats.load(path)
                refs = [r for r in (conv.models["a"], conv.models.get("b")) if r]
                self.run_worker(self.open_chat({"load": path, "runs_dir": str(self.app.runs_dir)}, refs),
                                group="chat-open", exclusive=True, exit_on_error=False)

        self.app.push_screen(ChatList(found), chosen)

    async def open_chat(self, args: dict, refs: list[str]) -> None:
        from tui.helper_client import HelperError
        from tui.screens.compare import DeviceChoice

        advice = await asyncio.to_thread(self.advice, refs)
        device = advice["device"]
        if advice["ask"]:
            choice = await self.app.push_screen_wait(DeviceChoice(advice["message"]))
            if choice == "wait":
                self.status(f"waiting: {advice['message']} (checking every 5 s)")
                while advice["ask"]:
                    await asyncio.sleep(5)
                    advice = await asyncio.to_thread(self.advice, refs)
                device = advice["device"]
            elif choice == "cpu":
                device = "cpu"
            elif choice != "go":
                self.status("chat not started")
                return
        await self.close_session()
        self.status(f"loading on {device}...")
        try:
            result = None
            async for msg in self.app.helper_stream("loading the chat", "chat_open", **args, device=device):
                if msg.get("event") == "phase":
                    self.status(msg["text"])
                elif msg.get("type") == "done":
                    result = msg["result"]
        except HelperError as e:
            self.status(f"chat not started: {e.args[0] if e.args else e}", error=True)
            return
        self.session, self.conv, self.live = result["session"], result["conversation"], None
        self.conv["path"] = result.get("path")
        self.show_settings(self.conv)
        shared = " · one base shared by A and B" if result.get("shared_base") else ""
        self.status(f"on {result['device']}, loaded in {result['load_s']:.1f} s{shared} · enter sends · ctrl+t: to Dataset")
        self.paint()
        self.query_one("#chat-input", Input).focus()

    def show_settings(self, conv: dict) -> None:
        """The open chat's models, mode, system prompt and decoding in the inputs: what the next message uses."""
        dec = conv.get("decoding") or {}
        values = {"#chat-a-ref": conv["models"]["a"], "#chat-b-ref": conv["models"].get("b") or "",
                  "#chat-system": conv.get("system") or "", "#chat-tokens": str(dec.get("max_new_tokens", 256)),
                  "#chat-temp": str(dec.get("temperature", 0.7))}
        for selector, value in values.items():
            self.query_one(selector, Input).value = value
        self.query_one("#chat-mode", Select).value = conv["mode"]
        self.query_one("#chat-sample", Checkbox).value = bool(dec.get("sample"))

    def advice(self, refs: list[str]) -> dict:
        from engine.checkpoints.refs import busy_runs, device_advice, resolve_ref, weights_bytes
        from engine.system.telemetry import Nvml

        gpus = self.gpus() if self.gpus else Nvml().devices()
        need = 0
        for r in dict.fromkeys(refs):
            try:
                need += weights_bytes(resolve_ref(r, self.app.runs_dir))
            except LookupError:
                pass
        return device_advice(gpus, need, busy_runs(self.app.runs_dir))

    async def close_session(self) -> None:
        if self.session is not None:
            sid, self.session = self.session, None
            try:
                await self.app.helper.request("chat_close", session=sid)
            except Exception:  # noqa: BLE001 - a helper that died has nothing loaded any more
                pass

    async def on_unmount(self) -> None:
        await self.close_session()

    # -- talking ----------------------------------------------------------------------------------
    @on(Input.Submitted, "#chat-input")
    def submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        if self.session is None or self.conv is None:
            self.status("start a chat first: ctrl+n (or open a saved one: ctrl+o)", error=True)
            return
        if self.live is not None:
            self.status("wait for the answer to finish")
            return
        pending = self.pending_pick()
        if pending is not None:
            if text.lower() not in PICKS:
                self.status("pick first: type 1 or 2 (the better answer) or t (tie) and press enter")
                return
            event.input.value = ""
            self.run_worker(self.pick(pending, PICKS[text.lower()]), group="chat-pick", exit_on_error=False)
            return
        event.input.value = ""
        self.live = {"user": text, "a": "", "b": ""}
        self.paint()
        self.run_worker(self.send(text), group="chat-send", exclusive=True, exit_on_error=False)

    async def send(self, text: str) -> None:
        from tui.helper_client import HelperError

        args = {"session": self.session, "text": text, "system": self.query_one("#chat-system", Input).value}
        try:
            args["decoding"] = self.settings()  # a changed temperature or length applies from this message on
        except ValueError as e:
            self.status(str(e), error=True)
            self.live = None
            self.paint()
            return
        try:
            async for msg in self.app.helper_stream("answering", "chat_send", **args):
                if msg.get("event") == "token" and self.live is not None:
                    side = msg["side"]
                    self.live[side] = msg["text"] if msg.get("full") else self.live[side] + msg["text"]
                    self.paint()
                elif msg.get("type") == "done":
                    self.conv["turns"].append(msg["result"]["turn"])
                    self.conv["path"] = msg["result"]["path"]
        except HelperError as e:
            self.status(f"no answer: {e.args[0] if e.args else e}", error=True)
        finally:
            self.live = None
            self.paint()
        if self.pending_pick() is not None:
            self.status("which answer is better? type 1, 2 or t and press enter")
        elif self.conv.get("path"):
            self.status(f"saved {self.conv['path']}")

    def pending_pick(self) -> int | None:
        if self.conv and self.conv["mode"] == "blind" and self.conv["turns"] and self.conv["turns"][-1].get("pick") is None:
            return len(self.conv["turns"]) - 1
        return None

    async def pick(self, index: int, position: str) -> None:
        from tui.helper_client import HelperError

        try:
            res = await self.app.helper_request("saving the pick", "chat_pick", session=self.session, index=index,
                                                position=position)
        except HelperError as e:
            self.status(f"pick not saved: {e.args[0] if e.args else e}", error=True)
            return
        self.conv["turns"][index]["pick"] = res["pick"]
        self.conv["votes_path"] = res["votes_path"]
        order = BlindOrder(self.conv["blind_seed"])
        left = order.model_for(index, "left")
        labels = self.conv["labels"]
        self.status(f"1 was {labels[left]}, 2 was {labels['b' if left == 'a' else 'a']}"
                    + (f" · preference row in {res['votes_path']}" if res.get("row") else " · a tie: no row"))
        self.paint()

    # -- painting ---------------------------------------------------------------------------------
    def paint(self) -> None:
        conv = self.conv or {"mode": "single", "turns": [], "labels": {"a": "chat", "b": None}, "blind_seed": 0}
        mode = conv["mode"]
        col_b = self.query_one("#chat-col-b")
        col_b.display = mode != "single"
        order = BlindOrder(conv.get("blind_seed") or 0)
        turns = list(conv["turns"]) + ([self.live] if self.live is not None else [])
        for col, position in (("a", "left"), ("b", "right")):
            parts = []
            for i, t in enumerate(turns):
                side = order.model_for(i, position) if mode == "blind" else col
                answer = t.get(side) or ""
                mark = ""
                if mode == "blind" and t.get("pick"):
                    mark = "  ✓" if t["pick"] in (side, "tie") else ""
                parts += [("you: ", "bold $text-accent"), (printable(t["user"]) + "\n", ""),
                          ("model: ", "bold $text-success"), (printable(answer) + mark + "\n\n", "")]
            self.query_one(f"#chat-{col}", Static).update(Content.assemble(*parts))
            box = self.query_one(f"#chat-col-{col}")
            if mode == "blind":
                box.border_title = "1" if col == "a" else "2"
            else:
                box.border_title = conv["labels"].get(col) or ""
            box.scroll_end(animate=False)

    # -- to the Dataset pane ----------------------------------------------------------------------
    async def action_to_dataset(self) -> None:
        path = (self.conv or {}).get("path")
        if not path:
            self.status("no saved chat to send: have a conversation first (ctrl+o opens a saved one)", error=True)
            return
        try:
            out = chats.write_sft(chats.load(path))
        except ValueError as e:
            self.status(str(e), error=True)
            return
        pane = await self.app.ensure_pane("dataset")
        if pane is None:
            self.status(f"SFT rows written to {out}")
            return
        pane.query_one("#ds-path", Input).value = str(out)
        pane.open(str(out))
        await self.app.action_show_pane("dataset")
        self.app.set_status(f"chat sent to Dataset as SFT rows: {out}")
