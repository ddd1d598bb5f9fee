"""Load the two sides of a comparison and run them: token streams, eval loss and perplexity, classification scores.

Heavy module: torch, transformers and peft are imported inside functions (importing it stays cheap), but
every function here needs them. engine.checkpoints.refs resolves what to load; this module loads and runs it.
Decoding is a manual loop (one forward per token with a KV cache) rather than `generate()`, so A and B
advance one token each in turn and stream side by side, each with its own seeded torch.Generator: the
same seed gives the same text whatever the interleaving.
"""
from __future__ import annotations

import gc
import math
import time
from pathlib import Path

from engine.checkpoints import encdec
from engine.checkpoints.display import prompt_text
from engine.checkpoints.refs import ModelRef
from engine.checkpoints.settings import Decoding  # noqa: F401 (generate.Decoding for callers)
from engine.config import Config
from engine.training.metrics import classification_scores as label_scores


class Switch:
    """Selects which adapter of a shared PeftModel is live (None = the bare base), touching only LoRA layers.

    PeftModel.set_adapter walks every module twice per call (~27 ms a token on the tiny test model under
    load); keeping the list of tuner layers makes a switch a loop over them, and no switch is made when the
    wanted side is already live.
    """

    def __init__(self, model):
        from peft.tuners.tuners_utils import BaseTunerLayer

        self.layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
        self.current: str | None | bool = False  # False = unknown

    def select(self, name: str | None) -> None:
        if name == self.current:
            return
        for layer in self.layers:
            if name is None:
                layer.enable_adapters(False)
            else:
                layer.set_adapter(name, inference_mode=True)
                layer.enable_adapters(True)
        self.current = name


class Side:
    """One side (A or B): a model, its tokenizer (the base model's), and how to make it the live one."""

    def __init__(self, name: str, ref: ModelRef, model, tok, adapter_name: str | None = None, switch: Switch | None = None):
        self.name, self.ref, self.model, self.tok = name, ref, model, tok
        self.adapter_name = adapter_name  # set when several adapters share one PeftModel
        self.switch = switch

    @property
    def shared(self) -> bool:
        return self.switch is not None

    def activate(self) -> None:
        """Make this side's adapter the live one on a shared base (a no-op for a model of its own)."""
        if self.switch is not None:
            self.switch.select(self.adapter_name)

    @property
    def device(self):
        return next(self.model.parameters()).device

    @property
    def encoder_decoder(self) -> bool:
        return bool(getattr(self.model.config, "is_encoder_decoder", False))

    def prompt_ids(self, prompt: dict) -> list[int]:
        """A prompt's token ids: the encoder's source for an encoder-decoder, else through the chat template."""
        return encdec.source_ids(self.tok, prompt) if self.encoder_decoder else encode_prompt(self.tok, prompt)


# -- loading ------------------------------------------------------------------------------------------
def _cfg_for(ref: ModelRef, device: str) -> tuple[Config, dict]:
    """The config the model loads with: its run's (dtype, quantization, attention as trained) or defaults."""
    from engine.training import modeling

    if ref.run is not None:
        cfg = ref.run.settings()
    else:
        cfg = Config().replace(model={"name_or_path": ref.base_model,
                                      "quantization": ref.meta.get("quantization", "none")},
                               adapter={"kind": "lora" if ref.adapter else "none"})
    cfg = cfg.replace(hardware={"device": device})
    if not ref.adapter:
        cfg = cfg.replace(model={"quantization": "none"})  # full weights load as saved
    resolved = modeling.resolve(cfg)
    if resolved["device"] == "cpu":
        resolved["dtype"] = "float32"  # half-precision matmuls are slow or missing on CPUs
    elif cfg.model.dtype == "auto":
        resolved["dtype"] = "bfloat16" if resolved["precision"] == "bf16" else "float16"
    return cfg, resolved


def _auto_class(ref: ModelRef):
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification

    if ref.method in ("classification", "reward"):
        return AutoModelForSequenceClassification
    return AutoModelForSeq2SeqLM if ref.seq2seq else AutoModelForCausalLM


def _load_weights(ref: ModelRef, device: str, path: str | None = None):
    from engine.training import modeling

    cfg, resolved = _cfg_for(ref, device)
    cfg = cfg.replace(model={"name_or_path": path or (ref.base_model if ref.adapter else ref.path)})
    extra = {}
    labels = run_labels(ref) if ref.adapter and ref.method == "classification" else None
    if labels:  # the base gets a head of the run's size; the adapter checkpoint carries its trained weights
        extra = dict(num_labels=len(labels), id2label=dict(enumerate(labels)),
                     label2id={n: i for i, n in enumerate(labels)}, ignore_mismatched_sizes=True)
    model = modeling.load_model(cfg, resolved, _auto_class(ref), **extra)
    if ref.adapter and path is None:
        fit_saved_vocab(model, ref.path)
    return model


def saved_vocab(adapter_dir: str, embedding: str | None = None) -> int | None:
    """Rows of the input embedding an adapter saved whole (modules_to_save after data.chat_template added tokens),
    else None. `embedding` is the model's module name for it (model.embed_tokens, transformer.wte); without one,
    the usual names."""
    from safetensors import safe_open

    f = Path(adapter_dir) / "adapter_model.safetensors"
    if not f.exists():
        return None
    names = (embedding,) if embedding else ("embed_tokens", "wte", "word_embeddings")
    with safe_open(str(f), "pt") as st:
        for k in st.keys():
            if "lora_" not in k and any(f".{n}." in k for n in names):
                return int(st.get_slice(k).get_shape()[0])
    return None


def fit_saved_vocab(model, adapter_dir: str) -> None:
    """Grow the base's embeddings to the vocabulary the adapter saved, as training grew them: without it
    PeftModel.from_pretrained fails on the size of every checkpoint trained with a template that added tokens."""
    emb = model.get_input_embeddings()
    name = next((n for n, m in model.named_modules() if m is emb), None)
    rows = saved_vocab(adapter_dir, name)
    if rows and rows != emb.weight.shape[0]:
        model.resize_token_embeddings(rows)


def run_labels(ref: ModelRef) -> list[str] | None:
    """The label names a classification run trained with (its `data` event), or None."""
    from engine.rundir.events import read_events

    if ref.run is None:
        return None
    found = [e["labels"] for e in read_events(ref.run.events_path, ("data",)) if e.get("labels")]
    return found[-1] if found else None


def load_tokenizer(ref: ModelRef):
    """The tokenizer the checkpoint was trained with when it saved one (the engine saves it with every checkpoint,
    with the chat template used in training and any tokens data.chat_template added), else the base model's."""
    from transformers import AutoTokenizer

    tok = None
    own = ref.path and (Path(ref.path) / "tokenizer_config.json").is_file()
    for src in ((ref.path, ref.base_model) if own else (ref.base_model, ref.path)):
        try:
            tok = AutoTokenizer.from_pretrained(src)
            break
        except (OSError, ValueError):
            continue
    if tok is None:
        raise LookupError(f"{ref.label}: no tokenizer in {ref.base_model} or {ref.path}")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _peft_type(path: str) -> str:
    import json

    try:
        return json.loads((Path(path) / "adapter_config.json").read_text()).get("peft_type", "")
    except (OSError, ValueError):
        return ""


def _same(p: str, q: str) -> bool:
    try:
        return Path(p).resolve() == Path(q).resolve()
    except OSError:
        return p == q


def can_share(a: ModelRef, b: ModelRef) -> bool:
    """True when one base model can serve both sides: LoRA adapters on the same base, or that base itself."""
    if not _same(a.base_model, b.base_model) or {a.method, b.method} & {"classification", "reward"}:
        return False  # a classification head is saved beside the adapter (modules_to_save): one per model
    for r in (a, b):
        if r.adapter and _peft_type(r.path) != "LORA":
            return False  # prompt-learning adapters cannot be switched off layer by layer
        if not r.adapter and not _same(r.path, r.base_model):
            return False  # full fine-tuned weights are a model of their own
    if any(r.adapter and saved_vocab(r.path) for r in (a, b)):
        return False  # embeddings saved whole (a resized vocabulary) are no LoRA layer the switch turns off
    quant = {r.meta.get("quantization", "none") for r in (a, b) if r.adapter}
    return len(quant) <= 1 and (a.adapter or b.adapter)


def load_pair(a: ModelRef, b: ModelRef, device: str = "cpu") -> tuple[Side, Side]:
    """Load both sides; one base in memory when they share it (halves the memory of a checkpoint A/B)."""
    from peft import PeftModel

    tok = load_tokenizer(a)
    if _same(a.path, b.path):
        model = _load_weights(a, device)
        if a.adapter:
            model = PeftModel.from_pretrained(model, a.path)
        model.eval()
        return Side("a", a, model, tok), Side("b", b, model, tok)
    if can_share(a, b):
        first = a if a.adapter else b
        base = _load_weights(first, device)
        model = None
        names = {}
        for name, r in (("a", a), ("b", b)):
            if not r.adapter:
                continue
            if model is None:
                model = PeftModel.from_pretrained(base, r.path, adapter_name=name)
            else:
                model.load_adapter(r.path, adapter_name=name)
            names[name] = name
        model.eval()
        switch = Switch(model)
        return Side("a", a, model, tok, names.get("a"), switch), Side("b", b, model, tok, names.get("b"), switch)
    sides = []
    for name, r in (("a", a), ("b", b)):
        model = _load_weights(r, device)
        if r.adapter:
            model = PeftModel.from_pretrained(model, r.path)
        model.eval()
        sides.append(Side(name, r, model, tok if name == "a" else load_tokenizer(b)))
    return sides[0], sides[1]


def unload(*sides: Side) -> None:
    """Drop the models and give their memory back (the GPU's too) when a comparison ends."""
    for s in sides:
        s.model = None
        s.switch = None  # it holds the adapter layers, and through them the weights
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# -- prompts and streaming ----------------------------------------------------------------------------
def encode_prompt(tok, prompt: dict) -> list[int]:
    """Token ids of a prompt: chat messages through the base model's chat template, raw text as is."""
    if "messages" in prompt:
        if tok.chat_template:
            text = tok.apply_chat_template(prompt["messages"], add_generation_prompt=True, tokenize=False)
            return tok(text, add_special_tokens=False)["input_ids"]
        text = "\n".join(m["content"] for m in prompt["messages"]) + "\n"  # no template: plain text
        return tok(text)["input_ids"]
    return tok(prompt["text"])["input_ids"]


def _stop_ids(side: Side) -> set[int]:
    ids = {side.tok.eos_token_id}
    gen = getattr(side.model, "generation_config", None)
    eos = getattr(gen, "eos_token_id", None)
    ids |= set(eos) if isinstance(eos, (list, tuple)) else {eos}
    return {i for i in ids if i is not None}


class Stream:
    """Greedy or sampled decoding of one prompt on one side, one token per `step()`."""

    def __init__(self, side: Side, prompt_ids: list[int], dec: Decoding, seed: int, extra_stop: set[int] = frozenset()):
        import torch
        from transformers.generation.logits_process import (
            LogitsProcessorList,
            RepetitionPenaltyLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        self.side, self.dec = side, dec
        self.device = side.device
        self.ids = torch.tensor([prompt_ids], device=self.device)
        self.source = self.encoded = None
        if side.encoder_decoder:  # the prompt is the encoder's; the decoder starts from its start token alone
            model_cfg = side.model.config
            start = getattr(side.model.generation_config, "decoder_start_token_id", None)
            start = start if start is not None else model_cfg.decoder_start_token_id
            self.source, self.ids = self.ids, torch.tensor([[start]], device=self.device)
        self.pending = self.ids  # what the next forward consumes: the prompt, then one token at a time
        self.cache = None
        self.out: list[int] = []
        self.text = ""
        self.done = False
        self.stop = _stop_ids(side) | set(extra_stop)  # chat adds the template's end-of-turn token
        self.gen = torch.Generator(device=self.device).manual_seed(seed)
        procs = LogitsProcessorList()
        if dec.repetition_penalty != 1.0:
            procs.append(RepetitionPenaltyLogitsProcessor(dec.repetition_penalty))
        if dec.sample:
            procs.append(TemperatureLogitsWarper(dec.temperature))
            if dec.top_k:
                procs.append(TopKLogitsWarper(dec.top_k))
            if dec.top_p < 1.0:
                procs.append(TopPLogitsWarper(dec.top_p))
        self.procs = procs
        self.seconds = 0.0
        self.rewrote = False

    def step(self) -> str:
        """Generate one token; return the text it adds ("" while a multi-byte character is incomplete)."""
        import torch

        if self.done:
            return ""
        self.rewrote = False
        t0 = time.perf_counter()
        self.side.activate()
        with torch.no_grad():
            if self.source is None:
                out = self.side.model(input_ids=self.pending, past_key_values=self.cache, use_cache=True)
            else:
                if self.encoded is None:  # the source is read once, on the live side's weights
                    self.encoded = self.side.model.get_encoder()(input_ids=self.source)
                out = self.side.model(encoder_outputs=self.encoded, decoder_input_ids=self.pending,
                                      past_key_values=self.cache, use_cache=True)
            self.cache = out.past_key_values
            logits = self.procs(self.ids, out.logits[:, -1, :].float())
            if self.dec.sample:
                nxt = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=self.gen)
            else:
                nxt = logits.argmax(dim=-1, keepdim=True)
        token = int(nxt)  # cost: a CPU-GPU sync per token, needed to stream and to stop at end-of-turn
        self.seconds += time.perf_counter() - t0
        if token in self.stop:
            self.done = True
            return ""
        self.out.append(token)
        self.ids = torch.cat([self.ids, nxt], dim=-1)
        self.pending = nxt
        if len(self.out) >= self.dec.max_new_tokens:
            self.done = True
        text = self.side.tok.decode(self.out, skip_special_tokens=True)
        if text.endswith("\ufffd") and not self.done:
            return ""  # half a UTF-8 character: wait for the next token
        if not text.startswith(self.text):
            self.rewrote = True  # decoding changed earlier characters: the caller resends the whole text
        delta, self.text = text[len(self.text):] if not self.rewrote else text, text
        return delta


def interleave(streams: dict, on_token=None, should_stop=None) -> bool:
    """Step every stream a token in turn until all are done; on_token(name, text, full) as text arrives
    (full=True: `text` replaces what came before). False when should_stop() asked to stop first."""
    while not all(st.done for st in streams.values()):
        if should_stop is not None and should_stop():
            return False
        for name, st in streams.items():
            if not st.done:
                delta = st.step()
                if (delta or st.rewrote) and on_token is not None:
                    on_token(name, st.text if st.rewrote else delta, st.rewrote)
    return True


def generate_pair(a: Side, b: Side, prompts: list[dict], dec: Decoding, on_token=None, should_stop=None,
                  on_row=None) -> list[dict]:
    """Both sides on every prompt, a token each in turn; on_token(index, side, text, full) as text arrives
    (full=True: `text` replaces what came before), on_row(index, row) when both answers of a prompt are done."""
    results = []
    for i, prompt in enumerate(prompts):
        streams = {s.name: Stream(s, s.prompt_ids(prompt), dec, dec.seed + i) for s in (a, b)}
        tell = None if on_token is None else (lambda name, text, full, i=i: on_token(i, name, text, full))
        if not interleave(streams, tell, should_stop):
            return results
        row = {"prompt": prompt_text(prompt), **({"messages": prompt["messages"]} if "messages" in prompt else {})}
        for name, st in streams.items():
            row[name] = st.text
            row[f"{name}_tokens"] = len(st.out)
            row[f"{name}_seconds"] = round(st.seconds, 4)
        results.append(row)
        if on_row is not None:
            on_row(i, row)
    return results


# -- scores --------------------------------------------------------------------------------------------
def _target_ids(tok, row: dict, max_length: int) -> tuple[list[int], list[bool]]:
    """Token ids of an eval row and which of them are scored: the tokens sft training trains on that row (every
    assistant turn of a conversation, by the template's generation markers or by rendering conversation prefixes;
    the completion and its EOS; every token of text and its EOS), from engine.data.encode, the one definition.
    The score is of data.loss_on: completion (the default); a run trained with `all` is still scored on answers."""
    from engine.data.encode import SFTEncoder, Unusable

    try:
        ids, mask = SFTEncoder(tok).tokenize(row)
    except Unusable as e:  # e.g. conversations and a tokenizer without a chat template
        raise ValueError(f"cannot score an eval row: {e.detail}") from None
    scored = [True] * len(ids) if mask is None else [bool(m) for m in mask]
    return ids[:max_length], scored[:max_length]


def eval_loss(side: Side, rows: list[dict], max_length: int = 1024) -> dict:
    """Mean loss over the scored tokens of `rows` and its perplexity (one row per forward)."""
    import torch

    if side.encoder_decoder:
        return encdec.eval_loss(side, rows, max_length)
    side.activate()
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            ids, mask = _target_ids(side.tok, row, max_length)
            if sum(mask[1:]) == 0:
                continue
            x = torch.tensor([ids], device=side.device)
            logits = side.model(input_ids=x).logits[0, :-1].float()
            target = x[0, 1:]
            m = torch.tensor(mask[1:], device=side.device)
            nll = torch.nn.functional.cross_entropy(logits[m], target[m], reduction="sum")
            total += float(nll)  # cost: one sync per row
            count += int(m.sum())
    if not count:
        return {"eval_loss": None, "perplexity": None, "eval_tokens": 0}
    loss = total / count
    return {"eval_loss": round(loss, 6), "perplexity": round(math.exp(min(loss, 50)), 4), "eval_tokens": count}


def classification_scores(side: Side, rows: list[dict], text_key: str = "text", label_key: str = "label",
                          max_length: int = 512) -> dict:
    """Accuracy and macro F1 (over the gold labels, as the trainer reports them) of a sequence-classification
    model on rows with a text and an integer label."""
    import torch

    side.activate()
    preds, gold = [], []
    with torch.no_grad():
        for row in rows:
            enc = side.tok(row[text_key], row.get("text_pair"), truncation=True, max_length=max_length,
                           return_tensors="pt").to(side.device)
            preds.append(int(side.model(**enc).logits[0].argmax()))
            gold.append(int(row[label_key]))
    out = label_scores(preds, gold)
    rounded = {k: round(out[k], 6) if out[k] is not None else None for k in ("accuracy", "f1_macro")}
    return {"accuracy": rounded["accuracy"], "macro_f1": rounded["f1_macro"], "eval_rows": len(gold)}
