"""What tunebench trusts on a shared server: only run directories, and runs directories, that you own.

Light. A run's config.yaml decides what code the engine runs (trust_remote_code, rl.reward_file), so a run
directory another user could have written is never read: a runs directory must be yours and, when others may
write to it, carry the sticky bit (as /tmp does), so nobody can swap one of your runs for theirs.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from engine.config import Config
from engine.config.text import printable
from engine.rundir.lock import Refused


def _owner(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def check_runs_dir(path: str | Path) -> None:
    """Refuse a runs directory that is not yours, or that others may write to without the sticky bit."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return  # created owner-only by create_run
    if st.st_uid != os.getuid():
        raise Refused(f"{printable(path)}: the runs directory belongs to {_owner(st.st_uid)}, not you; tunebench "
                      "reads only your own runs (use --runs-dir or TUNEBENCH_RUNS_DIR for a directory of yours)")
    if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
        raise Refused(f"{printable(path)}: the runs directory is writable by every user without the sticky bit, "
                      f"so anyone could replace a run; run `chmod o-w {printable(path)}` (or `chmod +t`)")


def check_run_dir(path: str | Path) -> None:
    """Refuse a run directory (or its config.yaml) owned by another user."""
    path = Path(path)
    for p in (path, path / "config.yaml"):
        try:
            st = os.stat(p)
        except FileNotFoundError:
            continue
        if st.st_uid != os.getuid():
            what = "run directory" if p == path else "run's config.yaml"
            raise Refused(f"{printable(path.name)}: the {what} belongs to {_owner(st.st_uid)}, not you; "
                          "tunebench never reads another user's run (its config decides what code runs)")


def is_mine(path: str | Path) -> bool:
    try:
        return os.stat(path).st_uid == os.getuid()
    except OSError:
        return False


def code_warnings(cfg: Config) -> list[str]:
    """One line for each way the config runs code that did not come with tunebench."""
    out = []
    if cfg.model.trust_remote_code:
        out.append(f"model.trust_remote_code is on: Python code shipped with {printable(cfg.model.name_or_path)} "
                   "will run in the engine with your permissions; only for models you trust")
    if cfg.method in ("grpo", "rloo") and cfg.rl.reward_file:
        out.append(f"rl.reward_file {printable(cfg.rl.reward_file)} is Python code: it runs in the engine with "
                   "your permissions; only a file you wrote or trust")
    return out
