"""Tiny encoder-decoder models (T5, BART) from transformers' config classes, with a BPE tokenizer trained here and
saved with save_pretrained: what the seq2seq tests and bench/seq2seq.py train and reload through the real code."""
from __future__ import annotations

from pathlib import Path

# T5 pads with id 0 and starts the decoder from it; BART's specials are <s> <pad> </s> (0, 1, 2) and its decoder
# starts from </s>. Each tokenizer appends end-of-sequence the way its family's does.
SPECIALS = {"t5": ["<pad>", "</s>", "<unk>"], "bart": ["<s>", "<pad>", "</s>", "<unk>"]}


def build_tokenizer(out_dir: Path, family: str, corpus: list[str], vocab_size: int = 400):
    """A byte-level BPE tokenizer trained on `corpus`, saved in `out_dir`; returns the transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = SPECIALS[family]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                        show_progress=False))
    eos = tok.token_to_id("</s>")
    if family == "t5":
        tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B:1 </s>:1",
                                                           special_tokens=[("</s>", eos)])
        hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                                     model_max_length=512)
    else:
        bos = tok.token_to_id("<s>")
        tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B:1 </s>:1",
                                                           special_tokens=[("<s>", bos), ("</s>", eos)])
        hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                     unk_token="<unk>", model_max_length=512)
    hf.save_pretrained(out_dir)
    return hf


def build_tiny_seq2seq(out_dir: Path, family: str, corpus: list[str], d_model: int = 32, layers: int = 2,
                       heads: int = 2, ffn: int = 64, vocab_size: int = 400, seed: int = 0) -> Path:
    """A random-weight T5ForConditionalGeneration or BartForConditionalGeneration of the given size and its
    tokenizer in `out_dir` (a later call with the same directory reuses them)."""
    out = Path(out_dir)
    if (out / "config.json").exists():
        return out
    import torch
    from transformers import BartConfig, BartForConditionalGeneration, T5Config, T5ForConditionalGeneration

    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(out, family, corpus, vocab_size)
    torch.manual_seed(seed)
    if family == "t5":
        cfg = T5Config(vocab_size=len(tok), d_model=d_model, d_kv=d_model // heads, d_ff=ffn, num_layers=layers,
                       num_decoder_layers=layers, num_heads=heads, relative_attention_num_buckets=16,
                       relative_attention_max_distance=64, dropout_rate=0.0, pad_token_id=tok.pad_token_id,
                       eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id)
        model = T5ForConditionalGeneration(cfg)
    elif family == "bart":
        cfg = BartConfig(vocab_size=len(tok), d_model=d_model, encoder_layers=layers, decoder_layers=layers,
                         encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=ffn,
                         decoder_ffn_dim=ffn, max_position_embeddings=256, dropout=0.0, attention_dropout=0.0,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         decoder_start_token_id=tok.eos_token_id, forced_eos_token_id=tok.eos_token_id)
        model = BartForConditionalGeneration(cfg)
    else:
        raise ValueError(f"family {family!r}: t5 or bart")
    model.save_pretrained(out)
    return out
