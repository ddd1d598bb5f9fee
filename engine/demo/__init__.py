"""The embedded demo: a tiny Llama built locally with its own tokenizer, and a task it visibly learns on a CPU.
workspace is light; tinymodel imports torch and transformers in its functions."""
