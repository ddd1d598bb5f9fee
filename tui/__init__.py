"""tunebench's Textual workbench: imports only the engine's light modules (no torch)."""
