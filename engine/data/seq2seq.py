"""Source and target token ids of seq2seq rows, bounded by data.max_length: one definition for the engine
(engine/training/methods/seq2seq.py), data.truncation's verdicts (engine.data.tokens) and `tunebench inspect`.

Light module: takes the tokenizer the caller loaded. Each side is tokenised as the model's own tokenizer does it
(T5 appends </s>; BART wraps in <s> ... </s>) and is bounded by data.max_length on its own: an encoder-decoder
reads the source and writes the target as two sequences, never one. A side that is too long is cut inside its
special tokens, so the cut source still ends (and a BART source still starts) as the model saw in pretraining:

  source  prompt_left: its first tokens go (the oldest text, as a prompt is cut in sft); right: its end goes;
          drop: the row goes (counted); refuse: the row is invalid (named with its location)
  target  cut at its end under every policy but drop (the end-of-sequence token is kept, so the model still
          learns to stop); drop: the row goes
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Encoded:
    """One row's ids and what the policy did to it."""

    input_ids: list[int]
    labels: list[int]
    verdict: str  # kept, cut, dropped or refused
    source_tokens: int  # before any cut
    target_tokens: int
    tokens_cut: int = 0
    source_cut: int = 0


def ids(tok, texts: list[str]) -> list[list[int]]:
    """Token ids with the tokenizer's special tokens (its post-processor), a batch at a time."""
    if not texts:
        return []
    backend = getattr(tok, "_tokenizer", None) if getattr(tok, "is_fast", False) else None
    if backend is not None and hasattr(backend, "encode_batch_fast"):
        return [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=True)]
    return tok(texts, add_special_tokens=True)["input_ids"]


def cut(seq: list[int], keep: int, special: set[int], from_start: bool) -> list[int]:
    """`seq` shortened to `keep` tokens inside its leading and trailing special tokens (from its start or end)."""
    if len(seq) <= keep:
        return seq
    pre = 0
    while pre < len(seq) and seq[pre] in special:
        pre += 1
    post = 0
    while post < len(seq) - pre and seq[len(seq) - 1 - post] in special:
        post += 1
    if pre + post >= keep:  # no room for any text between them (a max_length of a few tokens)
        return seq[:keep]
    room = keep - pre - post
    body = seq[pre:len(seq) - post]
    body = body[len(body) - room:] if from_start else body[:room]
    return seq[:pre] + body + seq[len(seq) - post:]


def encode_pair(source: list[int], target: list[int], max_length: int, policy: str, special: set[int]) -> Encoded:
    """Apply data.truncation `policy` to one row's source and target ids (see the module docstring)."""
    over_s, over_t = len(source) > max_length, len(target) > max_length
    out = Encoded(source, target, "kept", len(source), len(target))
    if not (over_s or over_t):
        return out
    lost = max(0, len(source) - max_length) + max(0, len(target) - max_length)
    if policy == "drop":
        out.verdict, out.tokens_cut = "dropped", len(source) + len(target)
        return out
    if policy == "refuse" and over_s:
        out.verdict = "refused"
        return out
    out.input_ids = cut(source, max_length, special, from_start=policy == "prompt_left")
    out.labels = cut(target, max_length, special, from_start=False)
    out.verdict, out.tokens_cut, out.source_cut = "cut", lost, max(0, len(source) - max_length)
    return out


def encode_rows(tok, rows: list[dict], max_length: int, policy: str, batch: int = 1024) -> list[Encoded]:
    """encode_pair over {"prompt", "completion"} rows, tokenised a batch at a time."""
    special = set(tok.all_special_ids)
    out: list[Encoded] = []
    for s in range(0, len(rows), batch):
        chunk = rows[s:s + batch]
        src = ids(tok, [r["prompt"] for r in chunk])
        tgt = ids(tok, [r["completion"] for r in chunk])
        out += [encode_pair(a, b, max_length, policy, special) for a, b in zip(src, tgt)]
    return out


def verdict(e: Encoded, eos: int | None) -> dict:
    """engine.data.tokens.Measurer.measure's answer for a seq2seq row. `length` is the longer side: a row is over
    max_length when either of its sequences is; `prompt_length` is the source's (the encoder reads all of it)."""
    trained = 0 if e.verdict in ("dropped", "refused") else len(e.labels)
    return {"length": max(e.source_tokens, e.target_tokens), "prompt_length": e.source_tokens, "trained": trained,
            "has_target": True, "ends_eot": bool(e.labels) and e.labels[-1] == eos, "cut": e.verdict,
            "tokens_cut": e.tokens_cut}


def measure(tok, row: dict, max_length: int, policy: str) -> dict:
    """verdict() of one row."""
    return verdict(encode_rows(tok, [row], max_length, policy)[0], tok.eos_token_id)


def too_long_detail(source_tokens: int, max_length: int) -> str:
    return (f"the source has {source_tokens} tokens, more than data.max_length {max_length} (data.truncation: "
            "refuse); raise data.max_length, or set data.truncation: right to keep its start")
