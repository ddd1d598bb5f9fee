"""Helpers for the workbench tests: waiting on a Pilot, reading widgets, an app on a runs dir."""
from __future__ import annotations

import time

from rich.text import Text


async def until(pilot, pred, timeout: float = 60.0, what: str = "condition"):
    """Pause the pilot until pred() is true (helper ops load a tokenizer: seconds under load)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if pred():
                return
        except Exception:  # noqa: BLE001 - a widget not mounted yet reads as "not yet"
            pass
        await pilot.pause(0.05)
    raise AssertionError(f"{what} not reached in {timeout} s")


def text(app, selector: str) -> str:
    """The plain text a Static (or any widget) shows now."""
    r = app.screen.query_one(selector).render()
    if isinstance(r, Text):
        return r.plain
    return str(getattr(r, "plain", r))


def cells(table) -> list[list[str]]:
    """The table's rows in display order, as plain strings."""
    out = []
    for i in range(table.row_count):
        out.append([c.plain if isinstance(c, Text) else str(c) for c in table.get_row_at(i)])
    return out


def settled(app) -> bool:
    """True when no widget of the app (nor the app) has a message waiting: what was posted has been handled."""
    pumps = [app, *app.screen.walk_children()]
    return all(p._message_queue.empty() for p in pumps)
