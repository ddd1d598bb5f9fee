"""Subcommands of the `tunebench` CLI, one module each (add_parser + run)."""
