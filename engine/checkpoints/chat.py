"""A live chat: one model, or A and B answering the same message side by side, streamed token by token.

Heavy when used (engine.checkpoints.generate loads torch, transformers, peft). The decoding loop is compare's
(generate.Stream: one forward a token, a KV cache per answer, A and B a token each in turn); two LoRA
checkpoints of one base share one loaded base with the adapter switched per token. Each turn renders the
side's whole history through the base model's chat template and stops at end-of-sequence or at the
template's end-of-turn token (the assistant suffix, e.g. <|im_end|>). Conversations are engine.checkpoints.chats
data, saved after each turn.
"""
from __future__ import annotations

import time

from engine.checkpoints import generate
from engine.checkpoints.chats import Conversation, Turn
from engine.checkpoints.refs import ModelRef
from engine.checkpoints.settings import Decoding


class ChatSession:
    """Models loaded for a conversation; `send` adds a turn. Call `close` to give the memory back."""

    def __init__(self, conv: Conversation, a: ModelRef, b: ModelRef | None = None, device: str = "cpu"):
        from engine.checkpoints.export import chat_shape, stop_ids
        from engine.checkpoints.template import TemplateError

        self.conv, self.device = conv, device
        for ref in (a, b):
            if ref is not None and ref.seq2seq:  # refused before any weight loads
                raise LookupError(f"{ref.label}: an encoder-decoder (seq2seq) model maps one source text to one "
                                  "target and keeps no conversation; compare it on prompts instead (tunebench "
                                  "compare, or A/B in the Checkpoints pane)")
        t0 = time.perf_counter()
        self.side_a, self.side_b = generate.load_pair(a, b or a, device)
        self.load_s = round(time.perf_counter() - t0, 3)
        self.shared_base = b is not None and (self.side_a.shared or self.side_a.model is self.side_b.model)
        self.stops = {}
        for side in self.sides():
            try:
                shape = chat_shape(side.tok)
            except TemplateError:
                shape = None  # no fixed shape: stop at end-of-sequence only
            self.stops[side.name] = stop_ids(side.tok, shape)

    def sides(self):
        return (self.side_a,) if self.conv.mode == "single" else (self.side_a, self.side_b)

    @property
    def decoding(self) -> Decoding:
        return Decoding(**self.conv.decoding) if self.conv.decoding else Decoding()

    def send(self, text: str, on_token=None, should_stop=None) -> Turn | None:
        """One user message to every side; on_token(side, text, full) as answers grow. Returns the turn (added
        to the conversation), or None when should_stop() ended it early (nothing is added)."""
        if self.conv.pending_pick() is not None:
            raise ValueError(f"pick the better answer of turn {self.conv.pending_pick() + 1} first (1, 2 or t)")
        if not text.strip():
            raise ValueError("an empty message")
        dec = self.decoding
        index = len(self.conv.turns)
        streams = {}
        for side in self.sides():
            msgs = self.conv.messages(side.name) + [{"role": "user", "content": text}]
            ids = generate.encode_prompt(side.tok, {"messages": msgs})
            streams[side.name] = generate.Stream(side, ids, dec, dec.seed + index, self.stops[side.name])
        if not generate.interleave(streams, on_token, should_stop):
            return None
        turn = Turn(user=text, a=streams["a"].text, b=streams["b"].text if "b" in streams else None,
                    stats={n: {"tokens": len(st.out), "seconds": round(st.seconds, 4)} for n, st in streams.items()})
        self.conv.turns.append(turn)
        return turn

    def close(self) -> None:
        generate.unload(self.side_a, self.side_b)
