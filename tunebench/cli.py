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
from engine.config.text import printable
from engine.data.errors import DataError
from engine.rundir.lock import Refused
from tunebench.errors import CliError

COMMAND_MODULES = [f"tunebench.commands.{name}" for name in
                   ("train", "join", "runs", "queue", "sweep", "eval", "attach", "inspect", "compare", "chat",
                    "export", "estimate", "demo")]


RUNS_DIR_HELP = "where runs live (default $TUNEBENCH_RUNS_DIR or ./runs)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tunebench", description="Fine-tune language models from the terminal.")
    p.add_argument("--runs-dir", default=None, help=RUNS_DIR_HELP)
    # --runs-dir after the subcommand too (`tunebench runs --runs-dir X`): SUPPRESS keeps the one given first
    # unless the subcommand's is given.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--runs-dir", default=argparse.SUPPRESS, help=RUNS_DIR_HELP)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    add = sub.add_parser
    sub.add_parser = lambda name, **kw: add(name, parents=[common, *kw.pop("parents", [])], **kw)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return p


def say(message: str) -> None:
    """An error for the terminal: each line with its control characters escaped (a file name or run id may hold
    escape sequences)."""
    for line in str(message).split("\n"):
        print(printable(line), file=sys.stderr)


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
        code = args.func(args)
        sys.stdout.flush()  # a reader that left (| head) shows here, inside the try, not at the exit's flush
        return code
    except ConfigError as e:
        where = f"{e.source}: " if e.source else ""
        say(f"tunebench: {len(e.problems)} problem(s) in the config {where.rstrip(': ')}".rstrip())
        for problem in e.problems:
            say(f"  {problem}")
        return 2
    except (CliError, LookupError, DataError, Refused) as e:
        say(f"tunebench: {e.args[0] if e.args else e}")
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `tunebench runs | head -2`: the reader left. Point stdout at /dev/null so the interpreter's final
        # flush does not raise again, and end quietly as a program killed by SIGPIPE would (128 + 13).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
