"""`python -m engine.scheduling RUNS_DIR`: the scheduler process that `ensure_scheduler` starts detached."""
from __future__ import annotations

import sys

from engine.scheduling.scheduler import run_scheduler


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m engine.scheduling RUNS_DIR", file=sys.stderr)
        return 2
    return run_scheduler(argv[0])


if __name__ == "__main__":
    sys.exit(main())
