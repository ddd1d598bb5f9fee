"""The TUI's side of the helper process: started lazily on the first request, kept, restarted if it dies.

Runs on the app's asyncio loop (an asyncio subprocess), so waiting never blocks the UI:

    result = await client.request("tokenize", tokenizer=path, texts=[...])
    async for msg in client.stream("generate", ...):   # data messages, then the loop ends
        ...

A failed request raises HelperError with the helper's one-line message.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, AsyncIterator

from engine.system.gpus import store_path

ROOT = Path(__file__).resolve().parent.parent
_END = object()


class HelperError(Exception):
    """The helper answered an error (or died); args[0] is one line for the user."""


class HelperClient:
    """One helper process per app; requests carry ids, replies are routed to per-request queues."""

    def __init__(self, command: list[str] | None = None, log_path: str | Path | None = None):
        self.command = command or [sys.executable, "-m", "engine.helper"]
        # The helper's stderr (library warnings, a traceback when it dies) goes here, not to the screen it would
        # paint over; when it dies its last lines are in the error the user sees.
        self.log_path = Path(log_path) if log_path else store_path().parent / "helper.log"
        self._log_from = 0  # where this helper's lines start in the (appended) log
        self.proc: asyncio.subprocess.Process | None = None
        self.ids = itertools.count(1)
        self.queues: dict[int, asyncio.Queue] = {}
        self.ops: list[str] = []
        self._reader: asyncio.Task | None = None
        self._starting: asyncio.Lock | None = None
        self._ready: asyncio.Future | None = None
        self.busy = 0  # requests in flight, for the spinner

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self.running:
                return
            env = dict(os.environ)
            env.setdefault("TOKENIZERS_PARALLELISM", "false")
            env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "ab") as log:
                os.chmod(self.log_path, 0o600)
                log.write(f"--- helper started {time.strftime('%Y-%m-%d %H:%M:%S')} by pid {os.getpid()}\n".encode())
                log.flush()
                self._log_from = log.tell()
                self.proc = await asyncio.create_subprocess_exec(
                    *self.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                    stderr=log, env=env, limit=64 * 1024 * 1024)
            self._ready = asyncio.get_running_loop().create_future()
            self._reader = asyncio.create_task(self._read(self.proc))
            await self._ready

    async def _read(self, proc) -> None:
        assert proc.stdout is not None
        while True:
            line = await proc.stdout.readline()
            if not line:
                break
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("type") == "ready":
                self.ops = msg.get("ops", [])
                if self._ready and not self._ready.done():
                    self._ready.set_result(msg)
                continue
            q = self.queues.get(msg.get("id"))
            if q is not None:
                q.put_nowait(msg)
        # The process ended: fail everything still waiting, with what it said last.
        code = await proc.wait()
        if self._ready and not self._ready.done():
            self._ready.set_exception(HelperError(self.death(code, "at start")))
        for q in self.queues.values():
            q.put_nowait({"type": "error", "error": self.death(code)})

    def death(self, code: int | None, when: str = "") -> str:
        """One message for a helper that died: its exit status and the last lines it wrote to its log."""
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"status {code}"
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_from)
                tail = f.read()[-4000:].decode("utf-8", errors="replace").strip().splitlines()[-6:]
        except OSError:
            tail = []
        said = (":\n" + "\n".join(tail)) if tail else " (it wrote nothing)"
        return f"the helper process exited {when + ' ' if when else ''}({how}); {self.log_path} ends{said}"

    async def _send(self, msg: dict) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        await self.proc.stdin.drain()

    async def stream(self, op: str, **args: Any) -> AsyncIterator[dict]:
        """Yield the op's data messages; return at done (result in the last message as `result`)."""
        await self.start()
        rid = next(self.ids)
        q: asyncio.Queue = asyncio.Queue()
        self.queues[rid] = q
        self.busy += 1
        finished = False
        try:
            await self._send({"id": rid, "op": op, "args": args})
            while True:
                msg = await q.get()
                kind = msg.get("type")
                if kind == "data":
                    yield msg
                elif kind == "done":
                    finished = True
                    yield {"type": "done", "result": msg.get("result")}
                    return
                else:
                    finished = True
                    raise HelperError(msg.get("error") or "helper error")
        finally:
            self.busy -= 1
            self.queues.pop(rid, None)
            if not finished and self.running:  # the caller stopped listening: stop the op too
                try:
                    await self._send({"id": next(self.ids), "op": "cancel", "args": {"target": rid}})
                except (ConnectionError, RuntimeError):
                    pass

    async def request(self, op: str, **args: Any) -> Any:
        """The op's final result (data messages are dropped)."""
        result = None
        async for msg in self.stream(op, **args):
            if msg.get("type") == "done":
                result = msg.get("result")
        return result

    async def close(self) -> None:
        if self.running:
            assert self.proc is not None
            try:
                self.proc.stdin.close()
                await asyncio.wait_for(self.proc.wait(), 2)
            except (asyncio.TimeoutError, ConnectionError, RuntimeError):
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            await self._reader  # the pipe transport closes before the loop does (no "loop is closed" noise)
            self._reader = None
        self.proc = None
