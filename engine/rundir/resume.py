"""Where a resumed run goes on from: the checkpoint chosen (newest that loads, or the step asked for), what it lacks,
and which settings may change on resume.

Light. The CLI asks before it launches (a clear refusal, exit 2, nothing started); the engine asks again holding
the run's lock, and only it moves checkpoints aside.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from engine import config as cfgmod
from engine.rundir.lock import Refused
from engine.rundir.runs import Checkpoint, Run
from engine.rundir.verify import missing_resume_state, resume_problem

# Keys that change what is recorded, not what is trained: the same steps, losses and weights with any value.
RESUME_SAFE_KEYS = ("training.save_total_limit", "training.save_steps", "training.logging_steps",
                    "training.eval_steps", "training.report_to", "rl.samples_per_log")


class ResumeRefused(Refused):
    """The run cannot go on as asked; the message names the file or setting and the way out."""


@dataclass
class ResumePlan:
    checkpoint: Checkpoint | None           # None: from the start (no complete checkpoint)
    damaged: list[tuple[Checkpoint, str]] = field(default_factory=list)  # newer ones that do not load, and why
    superseded: list[Checkpoint] = field(default_factory=list)          # newer ones skipped by RUN@STEP
    weights_only: bool = False              # the optimizer/scheduler are missing and --resume-weights-only was given
    missing: list[str] = field(default_factory=list)

    def notes(self) -> list[str]:
        """What the user must be told, one line each (the engine writes them as warnings in the events)."""
        out = [f"{c.name} does not load ({why}); set aside as checkpoints/damaged-{c.name}" for c, why in self.damaged]
        if self.superseded:
            out.append(f"going back to step {self.checkpoint.step}: the later checkpoints "
                       f"({', '.join(c.name for c in self.superseded)}) are set aside as checkpoints/superseded-*")
        if self.weights_only:
            out.append(f"resuming weights only from {self.checkpoint.name}: it has no {' or '.join(self.missing)}, so the "
                       "optimizer and the learning-rate schedule start fresh (the learning rate restarts its schedule)")
        return out


def plan(run: Run, step: int | None = None, weights_only: bool = False) -> ResumePlan:
    """The checkpoint to resume from: `step` when given, else the newest complete one that loads. Refuses (naming the
    file and the fix) a checkpoint without its optimizer or scheduler unless `weights_only`."""
    cps = run.checkpoints()
    if step is not None:
        match = [c for c in cps if c.step == step]
        if not match:
            have = ", ".join(str(c.step) for c in cps) or "none"
            raise ResumeRefused(f"{run.id}@{step}: no complete checkpoint at step {step} (complete: {have})")
        why = resume_problem(match[0].path)
        if why:
            raise ResumeRefused(f"{run.id}@{step}: {why}; choose another step (tunebench train --resume {run.id}@STEP)")
        chosen = ResumePlan(match[0], superseded=[c for c in cps if c.step > step])
    else:
        chosen = ResumePlan(None)
        for c in reversed(cps):
            why = resume_problem(c.path)
            if why is None:
                chosen.checkpoint = c
                break
            chosen.damaged.append((c, why))
        if chosen.checkpoint is None and chosen.damaged:
            raise ResumeRefused(f"{run.id}: no checkpoint loads; the newest: {chosen.damaged[0][1]}")
    if chosen.checkpoint is not None:
        missing = missing_resume_state(chosen.checkpoint.path)
        if missing and not weights_only:
            raise ResumeRefused(
                f"{chosen.checkpoint.path}: no {' or '.join(missing)}, so a resume would restart the optimizer and the "
                f"learning-rate schedule (the learning rate jumps back to its peak); resume from an earlier checkpoint "
                f"(tunebench train --resume {run.id}@STEP) or accept that with --resume-weights-only")
        chosen.missing, chosen.weights_only = missing, bool(missing)
    return chosen


def set_aside(run: Run, chosen: ResumePlan) -> None:
    """Move the damaged and superseded checkpoints out of the way (renamed, never deleted: nothing is lost)."""
    for c, prefix in [(c, "damaged") for c, _ in chosen.damaged] + [(c, "superseded") for c in chosen.superseded]:
        target = c.path.with_name(f"{prefix}-{c.name}")
        if target.exists():
            target = c.path.with_name(f"{prefix}-{c.name}-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(c.path, target)


def parse_ref(text: str) -> tuple[str, int | None]:
    """`RUN` or `RUN@STEP` -> (RUN, STEP or None)."""
    ref, at, step = text.rpartition("@")
    if not at:
        return text, None
    if not step.isdigit():
        raise ResumeRefused(f"{text}: after @ comes a checkpoint's step, e.g. {ref}@200")
    return ref, int(step)


def check_overrides(overrides: list[str]) -> dict:
    """The `--set` values a resume may change ({dotted key: value}); refuses a key that changes the trajectory."""
    out = {}
    for text in overrides:
        key, value = cfgmod.parse_override(text)
        if key not in RESUME_SAFE_KEYS:
            raise ResumeRefused(f"--set {key}: a resumed run keeps the settings it was trained with; on resume only "
                                f"{', '.join(RESUME_SAFE_KEYS)} may change (for other changes start a new run)")
        out[key] = value
    return out


def with_overrides(run: Run, overrides: list[str]) -> tuple[cfgmod.Config, list[str]]:
    """The run's config with resume-safe overrides applied and validated, and one line per changed value."""
    values = check_overrides(overrides)
    before = run.settings()
    after = cfgmod.load_config(base=run.config(), overrides=list(overrides))
    changes = [f"{k} {before.get(k)!r} -> {after.get(k)!r}" for k in values if before.get(k) != after.get(k)]
    return after, changes
