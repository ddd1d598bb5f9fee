"""`tunebench chat MODEL [B] [--blind] [--system TEXT] [sampling options]`: talk to a checkpoint in the terminal.

MODEL (and B) are what `tunebench compare` takes: a run (its final model), RUN@STEP, a checkpoint or base model
directory. From a terminal it is an interactive loop; with --input FILE, or with standard input that is not a
terminal, each line is one message (so a script or a test drives it). Lines starting with / are commands:
/pick 1|2|t (blind), /system TEXT, /sft (write the chat as SFT rows), /quit. The chat is saved under
<runs dir>/chats/ after every turn; --load FILE continues a saved one.
"""
from __future__ import annotations

import json
import sys

from tunebench.commands.compare import add_sampling_args
from tunebench.errors import CliError

HELP = "commands: /pick 1|2|t (blind) · /system TEXT · /sft · /quit"


def add_parser(sub):
    p = sub.add_parser("chat", help="chat with a checkpoint (or A and B side by side, or blind)")
    p.add_argument("a", nargs="?", help="the model: a run id (its final model), RUN@STEP, a checkpoint or base model dir")
    p.add_argument("b", nargs="?", help="a second model: both answer every message side by side")
    p.add_argument("--blind", action="store_true", help="with B: hide which is which; /pick 1|2|t after each answer "
                   "(picks become DPO rows in <runs dir>/votes/)")
    p.add_argument("--system", default="", help="the system prompt")
    p.add_argument("--load", metavar="FILE", help="continue a saved chat (<runs dir>/chats/*.json)")
    p.add_argument("--input", metavar="FILE", help="read the messages from FILE, one a line (default: standard input)")
    p.add_argument("--max-new-tokens", type=int, default=256, metavar="N", help="tokens per answer (default 256)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (turn i uses seed + i)")
    add_sampling_args(p)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto = the GPU unless a training run holds it short of memory, then the CPU")
    p.add_argument("--json", action="store_true", help="print one JSON object per turn instead of text")
    p.set_defaults(func=run)


def _conversation(args, runs_dir):
    import secrets

    from engine.checkpoints import chats
    from engine.checkpoints.refs import resolve_ref
    from engine.checkpoints.settings import Decoding

    if args.load:
        try:
            return chats.load(args.load)
        except ValueError as e:
            raise CliError(str(e)) from None
    if not args.a:
        raise CliError("chat: name a model (a run, RUN@STEP, a checkpoint or base model dir) or --load a saved chat")
    if args.blind and not args.b:
        raise CliError("chat: --blind needs two models, A and B")
    dec = Decoding(max_new_tokens=args.max_new_tokens, sample=args.sample, temperature=args.temperature,
                   top_p=args.top_p, top_k=args.top_k, repetition_penalty=args.repetition_penalty, seed=args.seed)
    if dec.problems():
        raise CliError("chat: " + "; ".join(dec.problems()))
    a = resolve_ref(args.a, runs_dir)
    b = resolve_ref(args.b, runs_dir) if args.b else None
    mode = "blind" if args.blind else ("side" if b else "single")
    return chats.Conversation(models={"a": args.a, "b": args.b}, labels={"a": a.label, "b": b.label if b else None},
                              mode=mode, system=args.system, decoding=dec.as_dict(), blind_seed=secrets.randbits(32))


def run(args) -> int:
    import warnings

    from engine.checkpoints import chats
    from engine.checkpoints.refs import resolve_ref
    from engine.rundir.runs import runs_dir_from
    from tunebench.commands.compare import pick_device

    warnings.filterwarnings("ignore", category=FutureWarning)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # loading bars would land between the answers
    runs_dir = runs_dir_from()
    conv = _conversation(args, runs_dir)
    a = resolve_ref(conv.models["a"], runs_dir)
    b = resolve_ref(conv.models["b"], runs_dir) if conv.models.get("b") else None
    device = pick_device(args.device, a, b or a)
    interactive = args.input is None and sys.stdin.isatty()
    out = Printer(conv, args.json)
    from engine.checkpoints.chat import ChatSession

    if not args.json:
        print(f"· loading {a.label}" + (f" and {b.label}" if b else "") + f" on {device}", file=sys.stderr)
    session = ChatSession(conv, a, b, device)
    if interactive:
        print(f"chatting with {'two hidden models' if conv.mode == 'blind' else a.label}"
              + (f" and {b.label}" if b and conv.mode == "side" else "") + f". {HELP}", file=sys.stderr)
    lines = open(args.input, encoding="utf-8") if args.input else sys.stdin
    try:
        while True:
            if interactive:
                try:
                    line = input("you> ")
                except EOFError:
                    break
            else:
                line = lines.readline()
                if not line:
                    break
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if line.startswith("/"):
                if command(line, conv, runs_dir, out) == "quit":
                    break
                continue
            try:
                turn = session.send(line, on_token=out.token if not args.json else None)
            except ValueError as e:
                print(f"tunebench: {e}", file=sys.stderr)
                if not interactive:
                    return 2
                continue
            chats.save(conv, runs_dir)
            out.turn(len(conv.turns) - 1, turn)
    except KeyboardInterrupt:
        print(file=sys.stderr)
    finally:
        session.close()
        if args.input:
            lines.close()
    if conv.turns:
        path = chats.save(conv, runs_dir)
        print(json.dumps({"saved": str(path), "turns": len(conv.turns)}) if args.json else f"· saved {path}",
              file=sys.stdout if args.json else sys.stderr)
    return 0


def command(line: str, conv, runs_dir, out) -> str | None:
    """One /command; returns "quit" to end the loop."""
    from engine.checkpoints import chats

    name, _, rest = line[1:].partition(" ")
    if name in ("quit", "exit", "q"):
        return "quit"
    if name == "system":
        conv.system = rest.strip()
        out.note(f"system prompt: {conv.system or '(none)'}")
    elif name == "pick":
        i = conv.pending_pick()
        pos = {"1": "left", "2": "right", "t": "tie", "tie": "tie"}.get(rest.strip())
        if i is None or pos is None:
            out.note("nothing to pick" if i is None else "pick 1, 2 or t")
            return None
        conv.pick(i, pos, runs_dir)
        chats.save(conv, runs_dir)
        t = conv.turns[i]
        out.note(f"picked {'a tie' if t.pick == 'tie' else ('1' if pos == 'left' else '2')}: "
                 f"1 was {conv.labels[conv_left(conv, i)]}, 2 was {conv.labels['b' if conv_left(conv, i) == 'a' else 'a']}"
                 + (f" · row in {conv.votes_path}" if t.pick != "tie" else ""))
    elif name == "sft":
        if conv.path is None:
            chats.save(conv, runs_dir)
        try:
            out.note(f"SFT rows: {chats.write_sft(conv)}")
        except ValueError as e:
            out.note(str(e))
    else:
        out.note(f"unknown command /{name}; {HELP}")
    return None


def conv_left(conv, i: int) -> str:
    from engine.checkpoints.votes import BlindOrder

    return BlindOrder(conv.blind_seed).model_for(i, "left")


class Printer:
    """Answers to the terminal: a single model's streams token by token; A and B (or 1 and 2) print per turn."""

    def __init__(self, conv, as_json: bool):
        self.conv, self.json = conv, as_json
        self.started = False

    def token(self, side: str, text: str, full: bool) -> None:
        if self.conv.mode != "single":
            return  # two interleaved streams are unreadable in one terminal: shown when the turn ends
        if not self.started:
            sys.stdout.write("model> ")
            self.started = True
        sys.stdout.write("\r\033[Kmodel> " + text if full else text)
        sys.stdout.flush()

    def turn(self, i: int, turn) -> None:
        from engine.checkpoints.display import printable

        if self.json:
            print(json.dumps({"turn": i, "user": turn.user, "a": turn.a, "b": turn.b, "stats": turn.stats},
                             ensure_ascii=False), flush=True)
            return
        if self.conv.mode == "single":
            sys.stdout.write("\n")
            self.started = False
        elif self.conv.mode == "side":
            print(f"A> {printable(turn.a)}\nB> {printable(turn.b or '')}")
        else:
            left = conv_left(self.conv, i)
            right = "b" if left == "a" else "a"
            print(f"1> {printable(getattr(turn, left) or '')}\n2> {printable(getattr(turn, right) or '')}\n"
                  "   which is better? /pick 1, /pick 2 or /pick t")
        sys.stdout.flush()

    def note(self, text: str) -> None:
        if self.json:
            print(json.dumps({"note": text}, ensure_ascii=False), flush=True)
        else:
            print(f"· {text}", file=sys.stderr)
