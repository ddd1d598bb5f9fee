"""Subcommands of the `tunebench` command, one module each: `add_parser(sub)` and a `run(args) -> int`."""
