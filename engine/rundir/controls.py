"""The engine's control state machine: a batch of control files, in the order they were sent, applied to
(paused, stop, save, eval) between two steps.

Light. Every command of a batch counts: pause then resume before the next step ends running, pause then stop
ends stopping; save and eval asked for while paused happen while paused, and the run stays paused after them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

FLAGS = ("paused", "stop", "save", "eval")


@dataclass
class Decision:
    """Where a batch of commands leaves the run: paused or not, and what to do before the next step."""

    paused: bool = False
    stop: bool = False
    save: bool = False
    eval: bool = False
    applied: list[str] = field(default_factory=list)

    def flags(self) -> dict[str, bool]:
        return {k: bool(getattr(self, k)) for k in FLAGS}


def apply(paused: bool, commands: list[str]) -> Decision:
    """Apply `commands` in order to a run that is `paused` (or not)."""
    d = Decision(paused=paused)
    for cmd in commands:
        d.applied.append(cmd)
        if cmd == "pause":
            d.paused = True
        elif cmd == "resume":
            d.paused = False
        elif cmd == "stop":
            d.stop, d.paused = True, False
            break  # the run ends here: what follows a stop has nothing left to act on
        elif cmd == "save":
            d.save = True
        elif cmd == "eval":
            d.eval = True
    return d
