"""Datasets: reading the files users bring, detecting their format, converting rows for a method, and preparing
them for training at any size (streamed, in parallel, tokenised once, cached).
Light: never imports the ML stack at import; only a hub id (engine.data.hub) imports `datasets`, inside the
function, and tokenizer-based work (encode, tokens, pipeline) takes the tokenizer its caller loaded."""
