"""Datasets: reading the files users bring, detecting their format, converting rows for a method.
Light: never imports the ML stack at import; only loading a hub id (engine.data.hub) imports `datasets`, inside
the function, and tokenizer-based checks take the tokenizer their caller loaded."""
