"""`tunebench demo [--dir DIR] [--no-ui]`: prepare the embedded demo workspace and open the workbench there."""
from __future__ import annotations

import os


def add_parser(sub):
    p = sub.add_parser("demo", help="build a tiny model and a task it learns on a CPU, then open the workbench")
    p.add_argument("--dir", default="tunebench-demo", help="workspace to create or reuse (default ./tunebench-demo)")
    p.add_argument("--no-ui", action="store_true", help="prepare the workspace and print its paths; do not open the UI")
    p.set_defaults(func=run)


def run(args) -> int:
    from engine.demo.workspace import prepare  # light at import; building the model imports torch inside

    made = prepare(args.dir)
    print(f"demo workspace: {made['dir']}")
    for key in ("model", "train", "eval", "preset", "runs"):
        print(f"  {key:7} {made[key]}")
    if args.no_ui:
        print(f"train it headless: cd {made['dir']} && tunebench --runs-dir runs train presets/demo.yaml")
        return 0
    # The workbench runs in the workspace: relative paths and ./runs mean the demo's.
    os.chdir(made["dir"])
    if not args.runs_dir:
        os.environ["TUNEBENCH_RUNS_DIR"] = str(made["runs"])
    args.runs_dir = os.environ["TUNEBENCH_RUNS_DIR"]
    args.preset = str(made["preset"])
    args.dataset = str(made["train"])
    from tui.app import main as workbench  # textual loads only when the workbench opens

    return workbench(args)
