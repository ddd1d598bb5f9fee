"""Build a tiny Llama-style model with a locally trained tokenizer: for tests, the demo and benchmarks.

No hub access: the tokenizer is trained by the `tokenizers` library on the given text, the weights are
random from a seed, and both are written with save_pretrained so they load back through the real
AutoTokenizer / AutoModelForCausalLM code. Heavy module (imports torch and transformers).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

# The chat template marks the assistant's content and its end-of-turn token with {% generation %} so
# completion-only loss (assistant_only_loss) trains the model to stop.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ message['content'] + eos_token + '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
SPECIAL = ["<unk>", "<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>", "<|tool|>"]

DEFAULT_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Fine-tuning adapts a pretrained language model to a task with a small dataset.",
    "Write a short answer. Explain the idea in one sentence. Translate the text to French.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 100 1000.",
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:!?'\"()[]{}<>-_+=*/\\|@#$%^&~`",
]


def build_tokenizer(out_dir: str | Path, texts: Iterable[str] = (), vocab_size: int = 512, kind: str = "bytelevel"):
    """Train a BPE tokenizer on `texts` and save it as a Hugging Face fast tokenizer.

    kind "bytelevel": GPT-2-style byte-level BPE. kind "llama": Llama-2-style BPE over "▁"-marked words with
    byte fallback (<0x00>..<0xFF> tokens): llama.cpp's converter takes it as a Llama vocabulary (its byte-level
    BPE path recognises only the pre-tokenizers of published models, by a hash of their output).
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if kind == "llama":
        tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
        tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
        special = SPECIAL + [f"<0x{i:02X}>" for i in range(256)]
        trainer = trainers.BpeTrainer(vocab_size=vocab_size + 256, special_tokens=special, show_progress=False)
    else:
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    corpus = list(texts) or DEFAULT_CORPUS
    tok.train_from_iterator(corpus * (1 if len(corpus) > 50 else 20), trainer=trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                 unk_token="<unk>", additional_special_tokens=SPECIAL[4:])
    hf.chat_template = CHAT_TEMPLATE
    hf.model_max_length = 2048
    hf.save_pretrained(out_dir)
    return hf


def build_tiny_llama(out_dir: str | Path, texts: Iterable[str] = (), *, vocab_size: int = 512, hidden: int = 64,
                     layers: int = 2, heads: int = 4, kv_heads: int = 2, intermediate: int | None = None,
                     max_positions: int = 2048, seed: int = 0, tokenizer: str = "bytelevel") -> Path:
    """Write a randomly initialised Llama-style causal LM and its tokenizer (build_tokenizer's `kind`) to `out_dir`."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(out, texts, vocab_size, tokenizer)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=intermediate or hidden * 4 // 3 * 2,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions, tie_word_embeddings=False,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    return out


if __name__ == "__main__":  # python -m engine.demo.tinymodel OUT_DIR
    import sys

    print(build_tiny_llama(sys.argv[1]))
