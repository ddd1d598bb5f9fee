"""The helper process: ML-stack work for the TUI (tokenising, chat templates, estimates) over JSON lines.

`python -m engine.helper` reads requests from stdin and writes replies to stdout, one JSON object a line:

    request   {"id": 7, "op": "tokenize", "args": {...}}
    replies   {"id": 7, "type": "data", ...}          zero or more, streamed while the op works
              {"id": 7, "type": "done", "result": ...} exactly one of done / error ends the request
              {"id": 7, "type": "error", "error": "one line for the user"}
    cancel    {"id": 8, "op": "cancel", "args": {"target": 7}}  the target's next emit() raises Cancelled

Ops register with `@op("name")`: `fn(args: dict, emit) -> result`; `emit(**fields)` streams a data
message. Modules listed in OP_MODULES are imported at start so other parts (checkpoint generation, ...)
add ops without editing this file's dispatch. Each request runs on its own thread, so a long generation
does not hold up a tokenisation; ops that share a loaded model keep it in `CACHE` and lock as they need.
Heavy imports happen inside ops: the process starts in ~0.1 s and pays for torch/transformers once.
"""
from __future__ import annotations

import json
import sys
import threading
import traceback
from typing import Any, Callable

OPS: dict[str, Callable[[dict, Callable], Any]] = {}
# Modules whose import registers more ops (each calls `engine.helper.server.op`). Append yours here.
OP_MODULES: list[str] = ["engine.helper.data_ops", "engine.helper.compare_ops", "engine.helper.chat_ops"]
# Loaded tokenizers/models shared between requests: key -> object. Guard with CACHE_LOCK when filling.
CACHE: dict[Any, Any] = {}
CACHE_LOCK = threading.Lock()


class Cancelled(Exception):
    """Raised inside an op by emit() when the client cancelled the request."""


class OpError(Exception):
    """A user-facing failure of an op (bad path, bad args): sent as one line, no traceback."""


def op(name: str):
    """Register `fn(args, emit) -> result` as the op `name`."""
    def register(fn):
        OPS[name] = fn
        return fn
    return register


@op("ping")
def _ping(args, emit):
    return {"pong": True, "ops": sorted(OPS)}


@op("count")
def _count(args, emit):
    """Stream n data messages (a protocol check for clients; costs nothing)."""
    n = int(args.get("n", 3))
    for i in range(n):
        emit(i=i)
    return {"n": n}


def cached(key, build: Callable[[], Any]):
    """CACHE[key], building it once under the lock (loading a tokenizer costs ~0.2-2 s)."""
    with CACHE_LOCK:
        if key not in CACHE:
            CACHE[key] = build()
        return CACHE[key]


class Server:
    """Reads requests, runs each op on a thread, writes replies under one lock (lines never interleave)."""

    def __init__(self, inp=None, out=None):
        self.inp = inp or sys.stdin
        self.out = out or sys.stdout
        self.write_lock = threading.Lock()
        self.cancelled: set = set()
        self.threads: list[threading.Thread] = []

    def send(self, msg: dict) -> None:
        line = json.dumps(msg, default=str)
        with self.write_lock:
            self.out.write(line + "\n")
            self.out.flush()

    def handle(self, req: dict) -> None:
        rid = req.get("id")
        name = req.get("op")
        args = req.get("args") or {}

        def emit(**fields):
            if rid in self.cancelled:
                raise Cancelled()
            self.send({"id": rid, "type": "data", **fields})

        fn = OPS.get(name)
        if fn is None:
            self.send({"id": rid, "type": "error", "error": f"unknown helper op {name!r}; known: {', '.join(sorted(OPS))}"})
            return
        try:
            result = fn(args, emit)
            if rid in self.cancelled:
                raise Cancelled()
            self.send({"id": rid, "type": "done", "result": result})
        except Cancelled:
            self.send({"id": rid, "type": "error", "error": "cancelled", "cancelled": True})
        except (OpError, FileNotFoundError, ValueError, KeyError, OSError) as e:
            self.send({"id": rid, "type": "error", "error": str(e) or type(e).__name__})
        except Exception as e:  # an op bug: keep serving, give the client the traceback's last lines
            tb = traceback.format_exc(limit=6)
            self.send({"id": rid, "type": "error", "error": f"{type(e).__name__}: {e}", "traceback": tb})
        finally:
            self.cancelled.discard(rid)

    def serve(self) -> int:
        for line in self.inp:
            line = line.strip()
            if not line:
                continue
            try:
                req = json.loads(line)
                if not isinstance(req, dict):
                    raise ValueError("not an object")
            except ValueError as e:
                self.send({"id": None, "type": "error", "error": f"bad request line: {e}"})
                continue
            if req.get("op") == "cancel":
                self.cancelled.add((req.get("args") or {}).get("target"))
                self.send({"id": req.get("id"), "type": "done", "result": None})
                continue
            if req.get("op") == "shutdown":
                self.send({"id": req.get("id"), "type": "done", "result": None})
                break
            t = threading.Thread(target=self.handle, args=(req,), daemon=True, name=f"op-{req.get('id')}")
            t.start()
            self.threads.append(t)
            self.threads = [t for t in self.threads if t.is_alive()]
        return 0


def load_op_modules() -> list[str]:
    """Import OP_MODULES; a module that fails is reported, not fatal (its ops are just missing)."""
    import importlib

    problems = []
    for name in OP_MODULES:
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - one broken extension must not take the helper down
            problems.append(f"{name}: {type(e).__name__}: {e}")
    return problems


def main() -> int:
    # Replies own stdout; anything a library prints goes to stderr so it cannot corrupt the protocol.
    out = sys.stdout
    sys.stdout = sys.stderr
    problems = load_op_modules()
    server = Server(sys.stdin, out)
    server.send({"id": None, "type": "ready", "ops": sorted(OPS), "problems": problems})
    return server.serve()
