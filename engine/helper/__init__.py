"""The helper process (`python -m engine.helper`): ML work for the TUI over JSON lines, and its ops.
Heavy in its ops (tokenizers, models); the TUI only starts it and talks to it through pipes."""
