"""A tiny BERT (BertConfig, 2 layers) with a WordPiece tokenizer trained here: for classification and reward tests."""
from __future__ import annotations

from pathlib import Path

CORPUS = ["this film is great and wonderful", "a terrible boring awful movie", "good fun", "bad and dull",
          "the acting was fine but the plot was weak", "i loved it", "i hated it", "brilliant", "worst ever",
          "say apple river stone cloud green seven light table", "yes no maybe"]


def build_tiny_bert(out_dir: Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """Write the model and tokenizer once (a later call with the same directory reuses them)."""
    out = Path(out_dir)
    if (out / "config.json").exists():
        return out
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(CORPUS * 5, trainers.WordPieceTrainer(vocab_size=300, special_tokens=special,
                                                                   show_progress=False))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                 sep_token="[SEP]", mask_token="[MASK]", model_max_length=512)
    hf.save_pretrained(out)
    cfg = BertConfig(vocab_size=len(hf), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=hidden * 2, max_position_embeddings=128, pad_token_id=hf.pad_token_id,
                     num_labels=2)
    torch.manual_seed(seed)
    BertForSequenceClassification(cfg).save_pretrained(out)
    return out


def build_tiny_encoder(out_dir: Path, family: str, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """A tiny *ForSequenceClassification of `family` (bert, distilbert, roberta, deberta-v2) with the WordPiece
    tokenizer of build_tiny_bert: the encoders people classify with, each with its own head layout."""
    out = Path(out_dir)
    if (out / "config.json").exists():
        return out
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(build_tiny_bert(out.parent / "tiny-bert"))
    tok.save_pretrained(out)
    common = dict(vocab_size=len(tok), pad_token_id=tok.pad_token_id, num_labels=2)
    if family == "distilbert":
        cfg = AutoConfig.for_model("distilbert", dim=hidden, n_layers=layers, n_heads=2, hidden_dim=hidden * 2,
                                   max_position_embeddings=128, **common)
    else:  # roberta's positions start after the padding index: room for it
        cfg = AutoConfig.for_model(family, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                                   intermediate_size=hidden * 2, max_position_embeddings=130, **common)
    torch.manual_seed(seed)
    AutoModelForSequenceClassification.from_config(cfg).save_pretrained(out)
    return out
