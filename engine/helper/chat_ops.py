"""Helper-process ops for the Chat pane: open a chat (load the models), send a message (stream the answers), pick, close.

Imported by the helper process (OP_MODULES). A chat keeps its models loaded between messages, unlike a
comparison; one chat is open at a time (opening another closes the first and gives its memory back), and
closing the pane or the workbench closes it. Each turn is saved to `<runs dir>/chats/` when it completes; a
cancelled turn is dropped whole.
"""
from __future__ import annotations

import secrets
import threading

from engine.helper.server import OpError, op

_LOCK = threading.Lock()  # guards _OPEN
_OPEN: dict = {}  # session id -> {"session": ChatSession, "runs_dir": str, "busy": Lock}


def _close_all() -> None:
    for sid in list(_OPEN):
        entry = _OPEN.pop(sid)
        with entry["busy"]:
            entry["session"].close()


def _get(args: dict) -> dict:
    entry = _OPEN.get(args.get("session"))
    if entry is None:
        raise OpError("no such chat open (it was closed, or the helper restarted): open it again")
    return entry


@op("chat_open")
def _open(args, emit):
    """args: a, b (refs; b optional), mode, system, decoding, device, runs_dir, or load (a saved chat's path).
    Returns {session, conversation, labels, shared_base, load_s, device, path}."""
    from engine.checkpoints import chats
    from engine.checkpoints.chat import ChatSession
    from engine.checkpoints.refs import resolve_ref
    from engine.checkpoints.settings import Decoding

    runs_dir = args.get("runs_dir")
    try:
        if args.get("load"):
            conv = chats.load(args["load"])
        else:
            dec = Decoding(**(args.get("decoding") or {}))
            if dec.problems():
                raise OpError("; ".join(dec.problems()))
            a_ref = resolve_ref(args["a"], runs_dir)
            b_ref = resolve_ref(args["b"], runs_dir) if args.get("b") else None
            conv = chats.Conversation(models={"a": args["a"], "b": args.get("b")},
                                      labels={"a": a_ref.label, "b": b_ref.label if b_ref else None},
                                      mode=args.get("mode") or ("side" if args.get("b") else "single"),
                                      system=args.get("system") or "", decoding=dec.as_dict(),
                                      blind_seed=secrets.randbits(32))
        a = resolve_ref(conv.models["a"], runs_dir)
        b = resolve_ref(conv.models["b"], runs_dir) if conv.models.get("b") else None
    except (LookupError, ValueError) as e:
        raise OpError(str(e.args[0] if e.args else e)) from None
    with _LOCK:
        _close_all()  # one chat's models in memory at a time
        emit(event="phase", text=f"loading {a.label}" + (f" and {b.label}" if b else "") + f" on {args.get('device', 'cpu')}")
        try:
            session = ChatSession(conv, a, b, args.get("device", "cpu"))
        except LookupError as e:  # a model chat cannot take (an encoder-decoder): the reason, not a traceback
            raise OpError(str(e.args[0])) from None
        sid = secrets.token_hex(4)
        _OPEN[sid] = {"session": session, "runs_dir": runs_dir, "busy": threading.Lock()}
    return {"session": sid, "conversation": conv.to_dict(), "path": conv.path, "labels": conv.labels,
            "shared_base": session.shared_base, "load_s": session.load_s, "device": session.device}


@op("chat_send")
def _send(args, emit):
    """args: session, text, system (optional: replaces the system prompt first). Streams {event: token, side, text,
    full}; returns {turn, index, path}."""
    from engine.checkpoints import chats

    entry = _get(args)
    session = entry["session"]
    if not entry["busy"].acquire(timeout=0.5):
        raise OpError("the chat is still answering the last message")
    try:
        if args.get("system") is not None:
            session.conv.system = args["system"]
        if args.get("decoding"):
            session.conv.decoding = {**session.conv.decoding, **args["decoding"]}
        try:
            turn = session.send(args["text"], on_token=lambda side, text, full: emit(
                event="token", side=side, text=text, **({"full": True} if full else {})))
        except ValueError as e:
            raise OpError(str(e)) from None
        path = chats.save(session.conv, entry["runs_dir"] or ".")
        return {"turn": turn.__dict__, "index": len(session.conv.turns) - 1, "path": str(path)}
    finally:
        entry["busy"].release()


@op("chat_pick")
def _pick(args, emit):
    """args: session, index, position (left/right/tie). Returns {pick, row, votes_path, revealed labels}."""
    from engine.checkpoints import chats

    entry = _get(args)
    conv = entry["session"].conv
    try:
        row = conv.pick(int(args["index"]), args["position"], entry["runs_dir"] or ".")
    except (ValueError, IndexError) as e:
        raise OpError(str(e)) from None
    chats.save(conv, entry["runs_dir"] or ".")
    return {"pick": conv.turns[int(args["index"])].pick, "row": row, "votes_path": conv.votes_path}


@op("chat_close")
def _close(args, emit):
    with _LOCK:
        entry = _OPEN.pop(args.get("session"), None)
    if entry is not None:
        with entry["busy"]:
            entry["session"].close()
    return {"closed": entry is not None}
