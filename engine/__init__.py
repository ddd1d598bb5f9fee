"""tunebench's engine: config, run directory, events, telemetry and the training process."""

__version__ = "0.1.0"
