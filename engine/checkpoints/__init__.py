"""What to do with a checkpoint: resolve a model reference, generate and score A against B, blind votes, export.

Light (the TUI imports them): refs, display, settings, votes. prompts reads data (engine.data). Heavy when
called: compare, generate and export import torch, transformers and peft inside their functions.
"""
