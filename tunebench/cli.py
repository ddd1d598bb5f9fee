"""The `tunebench` command: headless subcommands, and the workbench when no command is given.

Light module: no torch at import, so `tunebench runs` answers at once. Each subcommand lives in a
module with `add_parser(sub)` and `run(args) -> int`; COMMAND_MODULES lists them.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from engine.config import ConfigError
from engine.data.errors import DataError
from tunebench.errors import CliError

COMMAND_MODULES = [f"tunebench.commands.{name}" for name in
                   ("train", "runs", "eval", "attach", "inspect", "compare", "export", "estimate", "demo")]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tunebench", description="Fine-tune language models from the terminal.")
    p.add_argument("--runs-dir", default=None, help="where runs live (default $TUNEBENCH_RUNS_DIR or ./runs)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.runs_dir:
        os.environ["TUNEBENCH_RUNS_DIR"] = args.runs_dir
    try:
        if args.command is None:
            from tui.app import main as workbench  # textual loads only when the workbench opens

            return workbench(args)
        return args.func(args)
    except ConfigError as e:
        where = f"{e.source}: " if e.source else ""
        print(f"tunebench: {len(e.problems)} problem(s) in the config {where.rstrip(': ')}".rstrip(), file=sys.stderr)
        for problem in e.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except (CliError, LookupError, DataError) as e:
        print(f"tunebench: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
