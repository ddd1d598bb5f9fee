"""The `tunebench` command: headless subcommands, and the workbench when no command is given.

Light module: no torch at import, so `tunebench runs` answers at once. Each subcommand lives in a
module with `add_parser(sub)` and `run(args) -> int`; COMMAND_MODULES lists them.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from .config import ConfigError
from .data.load import DataError

COMMAND_MODULES = ["engine.commands.train", "engine.commands.runs", "engine.commands.attach", "engine.commands.inspect", "engine.commands.compare", "engine.commands.export", "engine.commands.estimate", "engine.commands.demo"]
# Commands that open the Textual app; imported by name so engine/ never imports tui/ statically.
UI_COMMANDS = {}


class CliError(Exception):
    """A user error: printed as one line (or one line per problem) with exit status 2, no traceback."""


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
            return importlib.import_module("tui.app").main(args)
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


if __name__ == "__main__":
    # Run the imported engine.cli, not this __main__ copy: commands raise engine.cli.CliError, a different class
    # from __main__.CliError, which main() here would not catch (a traceback and status 1 instead of 2).
    sys.exit(importlib.import_module("engine.cli").main())
