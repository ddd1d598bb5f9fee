"""Sinks for tests/test_data_workers.py, in a module of their own: a spawned data worker imports this module to
unpickle its job, so it imports only what such a worker would (the engine's data layer; no torch, no pytest)."""
from __future__ import annotations

import os
import signal
import sys

from engine.data.scan import HEAVY, Sink


class ProbeSink(Sink):
    """Counts as Sink does, and says which process read the shard and what that process had imported."""

    def finish(self) -> dict:
        out = super().finish()
        out.update(pid=os.getpid(), heavy=sorted(m for m in HEAVY if m in sys.modules),
                   main_file=getattr(sys.modules["__main__"], "__file__", None))
        return out


class KillSink(Sink):
    """Its worker dies at the first row, as one the out-of-memory killer chose would."""

    def add(self, location, row):
        os.kill(os.getpid(), signal.SIGKILL)


def _unreadable():
    raise ImportError("this job cannot be read in a fresh process")


class Unreadable:
    """Pickles in the parent, fails to unpickle in a worker (as a tokenizer whose module a worker lacks would)."""

    def __reduce__(self):
        return (_unreadable, ())
