"""A busy indicator for work in the helper process: shows a spinner and a label while counted jobs run."""
from __future__ import annotations

from textual.widgets import Static

FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


class Spinner(Static):
    """`with spinner.busy("tokenising")` style counter; hidden when idle. Animates at 10 Hz only while busy."""

    DEFAULT_CLASSES = "spinner"

    def __init__(self, **kw):
        super().__init__("", **kw)
        self.jobs: list[str] = []
        self.frame = 0
        self._timer = None

    def start(self, label: str) -> None:
        self.jobs.append(label)
        self.add_class("-busy")
        if self._timer is None:
            self._timer = self.set_interval(0.1, self._tick)
        self._tick()

    def stop(self, label: str) -> None:
        if label in self.jobs:
            self.jobs.remove(label)
        if not self.jobs:
            self.remove_class("-busy")
            self.update("")
            if self._timer is not None:
                self._timer.stop()
                self._timer = None

    def _tick(self) -> None:
        self.frame = (self.frame + 1) % len(FRAMES)
        self.update(f"{FRAMES[self.frame]} {self.jobs[-1]}" if self.jobs else "")
