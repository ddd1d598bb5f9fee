"""The command's user errors (its own module so subcommands need not import the CLI that imports them)."""


class CliError(Exception):
    """A user error: printed as one line (or one line per problem) with exit status 2, no traceback."""
