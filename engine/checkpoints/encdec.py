"""Encoder-decoder models (method seq2seq: T5, BART) in a comparison: the prompt as the encoder's source, the loss
of an eval row's target given its source.

Heavy when called (torch through the side's model). The source of a prompt is built as engine.data.convert builds a
seq2seq row's: the system and user turns' texts joined by a blank line, no chat template; a raw text prompt as is.
The token-by-token decoding itself is engine.checkpoints.generate.Stream's, which runs the encoder once and then
the decoder one token a step with its cache, so A and B still stream side by side.
"""
from __future__ import annotations

import math


def source_text(prompt: dict) -> str:
    """A compare/chat prompt ({"messages"} or {"text"}) as the text a seq2seq model reads."""
    if "messages" in prompt:
        return "\n\n".join(m.get("content") or "" for m in prompt["messages"]
                           if m.get("role") != "assistant" and (m.get("content") or "").strip())
    return prompt["text"]


def source_ids(tok, prompt: dict) -> list[int]:
    return tok(source_text(prompt))["input_ids"]


def eval_loss(side, rows: list[dict], max_length: int = 1024) -> dict:
    """Mean loss over the target tokens of {"prompt", "completion"} rows given their sources, and its perplexity."""
    import torch

    side.activate()
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            if not isinstance(row.get("prompt"), str) or not isinstance(row.get("completion"), str):
                continue  # a conversation row: the run that trained this model had single exchanges
            src = side.tok(row["prompt"])["input_ids"][:max_length]
            tgt = side.tok(row["completion"])["input_ids"][:max_length]
            x = torch.tensor([src], device=side.device)
            y = torch.tensor([tgt], device=side.device)
            loss = side.model(input_ids=x, labels=y).loss  # the mean over the target's tokens
            total += float(loss) * len(tgt)  # cost: one sync per row
            count += len(tgt)
    if not count:
        return {"eval_loss": None, "perplexity": None, "eval_tokens": 0}
    loss = total / count
    return {"eval_loss": round(loss, 6), "perplexity": round(math.exp(min(loss, 50)), 4), "eval_tokens": count}
