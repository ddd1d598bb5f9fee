"""Monitoring a run from its directory: decoding events.jsonl, bounded chart series, the history snapshot.
Light: never imports the ML stack (the TUI and the engine both use it)."""
