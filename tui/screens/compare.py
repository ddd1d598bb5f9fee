"""The A/B comparison screen: both answers stream side by side, differing words highlighted; blind voting.

The helper process runs the comparison (engine/compare_ops.py `compare`) and streams every token; this
screen only paints. In blind mode each prompt shows the two models in a seeded random order under the
names 1 and 2; a (left), b (right) or t (tie) votes, and every decisive vote is appended at once to a
preference JSONL (engine/votes.py) that `method: dpo` trains on. Closing the screen cancels the helper's
work, which then unloads the models.
"""
from __future__ import annotations

import secrets

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Label, Static

from engine.checkpoints.display import printable, prompt_text, word_diff
from engine.checkpoints.votes import BlindOrder, VoteBook, default_path
from engine.rundir.evalkeys import fmt_metric

DIFF_STYLE = "bold $text-warning on $warning-muted"  # theme variables: the words where A and B differ


def task_lines(answers: dict | None, models: dict) -> list[str]:
    """Both answers scored against the references, and each checkpoint's eval metrics at its step (its run's)."""
    def fmt(scores: dict) -> str:
        return ", ".join(f"{k} {fmt_metric(k, v)}" for k, v in scores.items()) or "-"

    lines = []
    if answers:
        lines.append(f"vs reference ({answers['rows']} prompts): A {fmt(answers['a'])}   B {fmt(answers['b'])}")
    runs = {side: (models.get(side) or {}).get("run_eval") for side in ("a", "b")}
    if any(runs.values()):
        lines.append("run eval: " + "   ".join(
            f"{side.upper()} @ step {r['step']}: {fmt({k: v for k, v in r.items() if k != 'step'})}" if r
            else f"{side.upper()}: none" for side, r in runs.items()))
    return lines


def diff_content(segments: list[tuple[str, bool]]) -> Content:
    return Content.assemble(*[(printable(seg), DIFF_STYLE) if differs else printable(seg) for seg, differs in segments])


class DeviceChoice(ModalScreen[str]):
    """A training run holds the GPU: wait for it, use the CPU, or go ahead on the GPU anyway."""

    CSS_PATH = "compare.tcss"
    BINDINGS = [Binding("escape", "dismiss('cancel')", "Cancel"), Binding("w", "dismiss('wait')", "Wait"),
                Binding("c", "dismiss('cpu')", "CPU"), Binding("g", "dismiss('go')", "Go ahead")]

    def __init__(self, message: str):
        super().__init__()
        self.message = message

    def compose(self) -> ComposeResult:
        with Vertical(id="device-choice"):
            yield Label(self.message, id="device-message")
            with Horizontal(id="device-buttons"):
                # Content: plain text (as markup, "[w]" is a style tag and the key hint vanished)
                yield Button(Content("Wait [w]"), id="wait")
                yield Button(Content("Use the CPU [c]"), id="cpu", variant="primary")
                yield Button(Content("Go ahead [g]"), id="go", variant="warning")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id)


class CompareScreen(Screen):
    """Prompts one at a time (n / p), A and B side by side; metrics at the end."""

    CSS_PATH = "compare.tcss"
    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("n,right", "move(1)", "Next prompt"),
        Binding("p,left", "move(-1)", "Previous"),
        Binding("a", "vote('left')", "Left better", show=False),
        Binding("b", "vote('right')", "Right better", show=False),
        Binding("t,equals_sign", "vote('tie')", "Tie", show=False),
    ]

    def __init__(self, args: dict, a_label: str, b_label: str, blind: bool = False, votes_path=None, source=None):
        """`source()`: an async iterator of the helper's messages; default the helper's `compare` op on `args`
        (a recorded stream replays a comparison, as the snapshot tests do)."""
        super().__init__()
        self.source = source or (lambda: self.app.helper_stream("comparing", "compare", **self.args))
        self.args, self.labels, self.blind = args, {"a": a_label, "b": b_label}, blind
        self.order = BlindOrder(secrets.randbits(32)) if blind else None
        self.prompts: list[dict] = []
        self.texts: dict[int, dict] = {}
        self.rows: dict[int, dict] = {}
        self.index = 0
        self.follow = True  # show the prompt being generated until the user moves
        self.result: dict | None = None
        self.error: str | None = None
        self.book = VoteBook(votes_path or default_path(args["runs_dir"], a_label, b_label), self.labels,
                             args.get("decoding")) if blind else None

    def compose(self) -> ComposeResult:
        yield self.app.system_header()
        with Vertical(id="compare-body"):
            yield Static("", id="compare-title")
            yield Static("", id="compare-prompt")
            with Grid(id="compare-grid"):
                with VerticalScroll(id="left-box"):
                    yield Static("", id="left")
                with VerticalScroll(id="right-box"):
                    yield Static("", id="right")
            yield Static("", id="compare-metrics")
            yield Label("", id="compare-phase")
        yield Footer()

    def on_mount(self) -> None:
        d = self.args.get("decoding") or {}
        how = (f"{'sampled (temperature ' + str(d.get('temperature')) + ')' if d.get('sample') else 'greedy'}, "
               f"{d.get('max_new_tokens')} tokens, seed {d.get('seed')}, on {self.args.get('device', 'cpu')}")
        if self.blind:
            self.query_one("#compare-title", Static).update(
                f"Blind: which answer is better? a = left, b = right, t = tie. Models revealed at the end. ({how})")
        else:
            self.query_one("#compare-title", Static).update(f"A: {self.labels['a']}    B: {self.labels['b']}    ({how})")
        self.run_worker(self.stream(), group="compare", exclusive=True, exit_on_error=False)
        self.paint()

    async def stream(self) -> None:
        from tui.helper_client import HelperError

        try:
            async for msg in self.source():
                self.on_helper(msg)
        except HelperError as e:
            self.error = str(e.args[0] if e.args else e)
            self.phase(f"failed: {self.error}", error=True)

    def on_helper(self, msg: dict) -> None:
        event = msg.get("event")
        if event == "phase":
            self.phase(msg["text"])
        elif event == "prompts":
            self.prompts = msg["prompts"]
        elif event == "token":
            texts = self.texts.setdefault(msg["i"], {"a": "", "b": ""})
            texts[msg["side"]] = msg["text"] if msg.get("full") else texts[msg["side"]] + msg["text"]
            if self.follow:
                self.index = msg["i"]
            if msg["i"] == self.index:
                self.paint()
        elif event == "row":
            self.rows[msg["i"]] = msg["row"]
            self.texts[msg["i"]] = {"a": msg["row"]["a"], "b": msg["row"]["b"]}
            if msg["i"] == self.index:
                self.paint()
        elif msg.get("type") == "done":
            self.result = msg["result"] or {}
            for i, row in enumerate(self.result.get("prompts", [])):
                self.rows[i] = row
                self.texts[i] = {"a": row["a"], "b": row["b"]}
            self.phase("done" + (": vote on every prompt (a / b / t)" if self.blind else ""))
            self.paint()

    # -- painting ---------------------------------------------------------------------------------
    def phase(self, text: str, error: bool = False) -> None:
        label = self.query_one("#compare-phase", Label)
        label.update(text)
        label.set_class(error, "error")

    def positions(self, i: int) -> tuple[str, str]:
        """The real sides ("a"/"b") shown left and right for prompt i."""
        if self.order is None:
            return "a", "b"
        return self.order.model_for(i, "left"), self.order.model_for(i, "right")

    def paint(self) -> None:
        i = self.index
        n = len(self.prompts) or len(self.rows)
        prompt = self.prompts[i] if i < len(self.prompts) else None
        ref = f"  (reference: {printable(prompt['reference'])})" if prompt and prompt.get("reference") else ""
        self.query_one("#compare-prompt", Static).update(
            Content(f"[{i + 1}/{n}] {printable(prompt_text(prompt))}{ref}") if prompt else Content("waiting for the helper..."))
        texts = self.texts.get(i, {"a": "", "b": ""})
        left, right = self.positions(i)
        sl, sr = word_diff(texts[left], texts[right])
        self.query_one("#left", Static).update(diff_content(sl))
        self.query_one("#right", Static).update(diff_content(sr))
        box_l, box_r = self.query_one("#left-box"), self.query_one("#right-box")
        if self.blind:
            vote = self.book.votes.get(i) if self.book else None
            won = None if not vote else "tie" if vote["choice"] == "tie" else ("left" if vote["choice"] == left else "right")
            mark = {pos: " ✓ your pick" if won in (pos, "tie") else "" for pos in ("left", "right")}
            box_l.border_title, box_r.border_title = f"1{mark['left']}", f"2{mark['right']}"
        else:
            box_l.border_title, box_r.border_title = f"A {self.labels['a']}", f"B {self.labels['b']}"
        same = texts["a"] == texts["b"] and i in self.rows
        box_l.border_subtitle = box_r.border_subtitle = "identical" if same else ""
        scores = (self.rows.get(i) or {}).get("scores")
        if scores and not self.blind:  # this answer against the reference (blind: scores would steer the vote)
            box_l.border_subtitle, box_r.border_subtitle = (("identical · " if same else "") + ", ".join(
                f"{k} {fmt_metric(k, v)}" for k, v in scores[side].items()) for side in (left, right))
        self.paint_metrics()

    def paint_metrics(self) -> None:
        lines = []
        revealed = not self.blind
        if self.blind and self.book is not None:
            t = self.book.tally()
            voted, total = len(self.book.votes), len(self.prompts) or len(self.rows)
            lines.append(f"votes {voted}/{total} → {self.book.path}")
            if total and voted >= total:
                revealed = True
                lines.append(f"revealed: A {self.labels['a']} won {t['a']}, B {self.labels['b']} won {t['b']}, "
                             f"ties {t['tie']}")
        m = (self.result or {}).get("metrics")
        if m and revealed:
            parts = []
            for side in ("a", "b"):
                s = m.get(side, {})
                bits = [f"{k.replace('_', ' ')} {s[k]:.4g}" for k in ("eval_loss", "perplexity", "accuracy", "macro_f1")
                        if s.get(k) is not None]
                if s.get("gen_tokens_per_s"):
                    bits.append(f"{s['gen_tokens_per_s']:.1f} tok/s")
                parts.append(f"{side.upper()}: " + (", ".join(bits) or "-"))
            lines += ["   ".join(parts), f"{m.get('eval', '')} · on {m.get('device')}"]
            lines += task_lines(m.get("answers"), (self.result or {}).get("models") or {})
        self.query_one("#compare-metrics", Static).update(Content("\n".join(lines)))

    # -- actions ----------------------------------------------------------------------------------
    def action_move(self, step: int) -> None:
        n = max(len(self.prompts), len(self.rows))
        if not n:
            return
        self.follow = False
        self.index = (self.index + step) % n
        self.paint()

    def action_vote(self, position: str) -> None:
        if not self.blind or self.book is None:
            return
        i = self.index
        if i not in self.rows:
            self.phase("wait until both answers of this prompt are complete, then vote")
            return
        if i in self.book.votes:
            self.phase(f"prompt {i + 1} already has your vote")
            return
        choice = "tie" if position == "tie" else self.order.model_for(i, position)
        prompt = self.prompts[i] if i < len(self.prompts) else {"messages": self.rows[i].get("messages", [])}
        try:
            self.book.cast(i, prompt, {"a": self.rows[i]["a"], "b": self.rows[i]["b"]}, choice)
        except (OSError, ValueError) as e:
            self.phase(f"vote not saved: {e}", error=True)
            return
        pending = [j for j in range(len(self.rows)) if j not in self.book.votes]
        if pending:
            self.follow = False
            self.index = next((j for j in pending if j > i), pending[0])
        self.paint()

    def action_close(self) -> None:
        self.workers.cancel_group(self, "compare")  # the helper gets a cancel and unloads the models
        self.app.pop_screen()
