"""The decoding settings both sides of a comparison share (light: the TUI builds them from its form)."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Decoding:
    """The decoding settings both sides share."""

    max_new_tokens: int = 128
    sample: bool = False  # False = greedy
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int = 0

    def problems(self) -> list[str]:
        out = []
        if self.max_new_tokens < 1:
            out.append(f"max_new_tokens: {self.max_new_tokens} must be at least 1")
        if self.sample and self.temperature <= 0:
            out.append(f"temperature: {self.temperature} must be above 0 when sampling (or decode greedily)")
        if not 0 < self.top_p <= 1:
            out.append(f"top_p: {self.top_p} must be in (0, 1]")
        if self.top_k < 0 or self.repetition_penalty <= 0 or self.seed < 0:
            out.append("top_k, seed must be >= 0 and repetition_penalty > 0")
        return out

    def as_dict(self) -> dict:
        return asdict(self)
