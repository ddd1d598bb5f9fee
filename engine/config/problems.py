"""What can be wrong with a config, as data: a Problem names its key, says what is wrong and what to do.

Light module. The CLI prints one line per problem; the workbench marks the row of `path` (and of `related`)
and shows the message beside the field; presets and `--set` report through the same objects.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One problem with one key."""

    path: str            # dotted key ("training.learning_rate", "method"), or the file ("c.yaml:3") when unreadable
    message: str         # what is wrong, e.g. "0 is below the minimum 1"
    fix: str = ""        # what to do, e.g. "did you mean lr_scheduler?"; empty when the message says it
    related: tuple = ()  # other keys the problem is about (rl.reward_file beside rl.reward_model)

    def __str__(self) -> str:
        where = " / ".join((self.path, *self.related))
        return f"{where}: {self.message}" + (f"; {self.fix}" if self.fix else "")

    def keys(self) -> tuple:
        """Every key this problem marks in a form."""
        return (self.path, *self.related)


class ConfigError(Exception):
    """Every problem in a config; str() gives one line per problem."""

    def __init__(self, problems: list[Problem], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        super().__init__("\n".join(map(str, self.problems)))
