"""The `tunebench` command: argument parsing and one module per subcommand (commands/).

The top layer: the one place that imports both the workbench (tui/) and the engine (engine/). Opening the
workbench and the headless commands share the same argument parser; a subcommand imports the ML stack only
inside its run function, so `tunebench runs` answers at once.
"""
