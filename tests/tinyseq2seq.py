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


# A summarisation-style task with a deterministic answer: each source is a short report padded with filler
# sentences; its target names who bought what where, the report's key entities, in a fixed order.
NAMES = ["anna", "boris", "chen", "dara", "emil", "fatima", "goran", "hana", "ivan", "julia", "karl", "lena"]
CITIES = ["oslo", "lima", "rome", "kyiv", "cairo", "dubai", "quito", "porto", "riga", "seoul", "tunis", "zagreb"]
ITEMS = ["apples", "bread", "candles", "lamps", "shoes", "maps", "pens", "rugs", "books", "cups", "hats", "tea"]
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
FILLERS = ["the weather was mild and the streets were busy .", "a band played near the old bridge .",
           "prices had gone up since last year .", "the market opened early that week .",
           "many people came by train from the north .", "the news did not mention it again .",
           "it was the third visit this month .", "nobody expected a crowd that large ."]


def summary_rows(n: int, seed: int = 0, columns: tuple[str, str] = ("document", "summary")) -> list[dict]:
    """`n` rows {document, summary} (or the given column names): the summary is the report's key entities."""
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        name, city, item, day = rng.choice(NAMES), rng.choice(CITIES), rng.choice(ITEMS), rng.choice(DAYS)
        key = f"{name} from {city} bought {rng.randint(2, 9)} {item} on {day} ."
        before, after = rng.sample(FILLERS, 2)
        out.append({columns[0]: f"{before} {key} {after}" if rng.random() < 0.5 else f"{key} {after} {before}",
                    columns[1]: f"{name} bought {item} in {city}"})
    return out


def summary_corpus() -> list[str]:
    """Text the tokenizer is trained on: every word the task uses, in its sentences."""
    rows = summary_rows(400, seed=12345)
    return [r["document"] for r in rows] + [r["summary"] for r in rows] + FILLERS
