"""What the Hyperparameters pane does outside the form: presets on disk, the model check, starting a run.

Light: reads files and starts the engine process; never imports the ML stack.
"""
from __future__ import annotations

from pathlib import Path

from engine import config as cfgmod
from engine.planning.preflight import model_check, model_problems
from engine.rundir.launch import local_problems, start
from engine.rundir.paths import absolute_paths  # noqa: F401 - the one rule the CLI uses too; the pane imports it here
from engine.rundir.queue import Queue, enqueue
from engine.rundir.runs import ACTIVE, Run, create_run, list_runs
from engine.scheduling.control import ensure_scheduler

PROJECT_PRESETS = Path(__file__).resolve().parent.parent / "presets"


def list_presets(workdir: str | Path | None = None) -> list[Path]:
    """The project's presets, then the workspace's own (./presets, where Save puts them)."""
    dirs = [PROJECT_PRESETS]
    if workdir is not None:
        local = Path(workdir).resolve() / "presets"
        if local != PROJECT_PRESETS:
            dirs.append(local)
    out: list[Path] = []
    for d in dirs:
        out += sorted(d.glob("*.yaml")) if d.is_dir() else []
    return out


def preset_text(cfg: dict | cfgmod.Config, source: Path | None = None) -> str:
    """The config's changes from the defaults as a preset, each key commented with its schema help."""
    changed = cfgmod.diff(cfg)
    lines = [f"# Saved from the tunebench workbench{f' (started from {source.name})' if source else ''}.",
             "# Each comment is the key's description; say here why a value was chosen."]
    for key, value in changed.items():
        if not isinstance(value, dict):
            lines.append(f"{cfgmod.dump({key: value}).strip()}  # {cfgmod.field_for(key).help}")
    for section, fields in changed.items():
        if isinstance(fields, dict):
            lines.append(f"{section}:")
            for key, value in fields.items():
                text = cfgmod.dump({key: value}).strip().replace("\n", "\n  ")
                lines.append(f"  {text}  # {cfgmod.field_for(f'{section}.{key}').help}")
    return "\n".join(lines) + "\n"


def check_model(name: str, trust_remote_code: bool) -> tuple[bool, str]:
    """(launchable, one paragraph for the user): the preflight's model check, as Launch and the CLI apply it."""
    cfg = cfgmod.Config().with_values({"model.name_or_path": name, "model.trust_remote_code": trust_remote_code})
    problems = model_problems(cfg)
    if problems:
        return False, str(problems[0])
    info = model_check(name)
    if not info["exists"]:
        return True, f"{name}: not a local path; treated as a hub id (downloaded by the engine, needs network)"
    arch = ", ".join(info.get("architectures") or []) or info.get("model_type") or "unknown architecture"
    if info.get("ships_code") and trust_remote_code:  # transformers then runs it, even for a type it knows
        return True, f"{name}: {arch}; runs the model's own code (trust_remote_code is on)"
    if info.get("ships_code"):
        return True, f"{name}: {arch}; transformers' own {info.get('model_type')} classes (its shipped code is not run)"
    return True, f"{name}: {arch}; no remote code needed"


def busy(runs_dir: str | Path) -> list[str]:
    """Why a new run should queue rather than start: the active runs (holding the GPU or the CPU) and the runs
    already waiting (a new one does not jump the queue)."""
    waiting = [e.run_id for e in Queue(runs_dir).entries()]
    return [r.id for r in list_runs(runs_dir) if r.state() in ACTIVE] + waiting


def launch_run(runs_dir: str | Path, cfg: cfgmod.Config) -> tuple[Run, int | None]:
    """Start the run now when nothing else runs or waits (returns once its engine has taken it); otherwise put
    it in the queue and make sure a scheduler runs. Returns (run, its queue place or None).
    A launch the CLI would refuse (a multi-node run without its rendezvous address) is refused before the
    run directory exists, with the same Problem."""
    problems = local_problems(cfg.hardware)
    if problems:
        raise cfgmod.ConfigError(problems)
    if busy(runs_dir):
        run, position = enqueue(runs_dir, cfg)
        ensure_scheduler(runs_dir)
        return run, position
    run = create_run(runs_dir, cfg)
    start(run)
    return run, None
