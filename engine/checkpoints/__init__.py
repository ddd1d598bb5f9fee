"""What to do with a checkpoint: resolve a model reference, generate and score A against B, chat, blind votes, export.

Light (the TUI imports them): refs, display, settings, votes, chats (saved conversations), template (a chat
template's shape), modelfile (Ollama), vllm (vLLM's adapter rules). prompts reads data (engine.data). Heavy when
called: compare, generate, chat and export import torch, transformers and peft inside their functions; gguf runs
llama.cpp's converter in a subprocess and reads GGUF back with transformers or llama-cpp-python.
"""
