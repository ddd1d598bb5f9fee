"""Token counts of method rows, as the trainers build them: total length, where training starts, what trains,
and what data.truncation does to each row.

Takes a tokenizer (the caller has loaded transformers). sft rows are encoded by engine.data.encode, the very
function that prepares them for training; other methods' rows are measured here (the chosen side of a pair).
Plain strings of other methods are tokenized in batches; conversations go through the chat template, one
render per row (Jinja is the cost there, ~0.1 ms a turn).
"""
from __future__ import annotations

from engine.data import seq2seq, templates
from engine.data.encode import IGNORE, SFTEncoder, split_lengths, too_long_detail, truncate
from engine.data.errors import Problem

BATCH = 1024


def _ids(tok, texts: list[str], special: bool = True) -> list[list[int]]:
    if not texts:
        return []
    backend = getattr(tok, "_tokenizer", None) if getattr(tok, "is_fast", False) else None
    if backend is not None and hasattr(backend, "encode_batch_fast"):
        # The Rust tokenizer directly, without offsets: transformers' per-row conversion cost ~15% on top here.
        return [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=special)]
    return tok(texts, add_special_tokens=special)["input_ids"]


def _with_eos(ids: list[int], eos: int | None) -> list[int]:
    return ids + [eos] if eos is not None and (not ids or ids[-1] != eos) else ids


class Measurer:
    """Measures rows of one method with one tokenizer; `plan` is templates.plan(tok), computed once."""

    def __init__(self, tok, method: str, max_length: int, loss_on: str = "completion", truncation: str = "refuse",
                 min_completion: int = 1):
        self.tok, self.method, self.max_length, self.loss_on = tok, method, max_length, loss_on
        self.truncation, self.min_completion = truncation, min_completion
        self.eos = tok.eos_token_id
        self.special = set(tok.all_special_ids)
        self._plan = None
        self._sft = None

    @property
    def plan(self) -> dict:
        if self._plan is None:
            self._plan = templates.plan(self.tok)
        return self._plan

    def _render(self, msgs: list[dict], generation_prompt: bool = False) -> list[int]:
        if self.plan["mode"] == "none":
            raise ValueError(self.plan["note"])
        out = self.tok.apply_chat_template(msgs, chat_template=self.plan["template"], tokenize=True,
                                           add_generation_prompt=generation_prompt, return_dict=True)
        return list(out["input_ids"])

    def _chat(self, msgs: list[dict]) -> dict:
        """A conversation (the chosen side of a conversational preference row): every assistant turn's mask."""
        if self.plan["mode"] == "markers":
            out = self.tok.apply_chat_template(msgs, chat_template=self.plan["template"], tokenize=True,
                                               return_dict=True, return_assistant_tokens_mask=True)
            ids, mask = list(out["input_ids"]), list(out["assistant_masks"])
        elif self.plan["mode"] == "prefix":
            ids, mask = templates.assistant_mask(self.tok, msgs, self.plan["template"], self.plan["name"])
        else:
            raise ValueError(self.plan["note"])
        return {"ids": ids, "mask": mask if self.loss_on == "completion" else [1] * len(ids)}

    def _pair(self, prompt, completion) -> dict:
        if isinstance(prompt, list) or isinstance(completion, list):
            p = self._render(prompt, generation_prompt=True) if prompt else []
            full = self._render((prompt or []) + completion)
        else:
            p, full = _ids(self.tok, [prompt])[0] if prompt else [], _with_eos(_ids(self.tok, [prompt + completion])[0], self.eos)
        n = len(p) if self.loss_on == "completion" else 0
        return {"ids": full, "mask": [0] * n + [1] * (len(full) - n)}

    def encode(self, row: dict) -> dict:
        """{"ids", "mask"} of the sequence the trainer builds from `row` (the chosen side for preference rows)."""
        m = self.method
        if m == "sft":
            if self._sft is None:
                self._sft = SFTEncoder(self.tok, self.loss_on, self.plan if "messages" in row else None)
            enc = self._sft.encode(row)
            return {"ids": enc["input_ids"], "mask": [int(v != IGNORE) for v in enc["labels"]]}
        if m == "seq2seq":  # shown as the source (the encoder's, untrained) then the target (trained)
            src, tgt = seq2seq.ids(self.tok, [row["prompt"], row["completion"]])
            return {"ids": src + tgt, "mask": [0] * len(src) + [1] * len(tgt)}
        if m == "classification":
            ids = self.tok(row["text"], row.get("text_pair"))["input_ids"]
            return {"ids": ids, "mask": [0] * len(ids)}  # the label trains, not the tokens
        if "messages" in row:
            return self._chat(row["messages"])
        if "text" in row:
            ids = _with_eos(_ids(self.tok, [row["text"]])[0], self.eos)
            return {"ids": ids, "mask": [1] * len(ids)}
        if "chosen" in row:
            return self._pair(row.get("prompt") or ([] if isinstance(row["chosen"], list) else ""), row["chosen"])
        if "completion" in row:
            return self._pair(row["prompt"], row["completion"])
        prompt = row["prompt"]  # grpo/rloo: the prompt only; the completions are generated
        ids = self._render(prompt, True) if isinstance(prompt, list) else _ids(self.tok, [prompt])[0]
        return {"ids": ids, "mask": [0] * len(ids)}

    def measure(self, row: dict) -> dict:
        """length, prompt_length (tokens before the first trained one), trained (after data.truncation), ends_eot,
        and `cut`: what the policy does (kept, cut, dropped, refused) with tokens_cut."""
        if self.method == "seq2seq":  # two sequences, each bounded on its own (engine.data.seq2seq)
            return seq2seq.measure(self.tok, row, self.max_length, self.truncation)
        enc = self.encode(row)
        ids, mask = enc["ids"], enc["mask"]
        first = next((i for i, v in enumerate(mask) if v), None)
        labels = [t if v else IGNORE for t, v in zip(ids, mask)]
        policy = self.truncation if self.method == "sft" else _pair_policy(self.truncation)
        cut = truncate(ids, labels, self.max_length, policy, self.min_completion, self.tok.bos_token_id)
        trained = sum(1 for v in cut.labels if v != IGNORE) if cut.labels is not None else 0
        if first is not None and not trained and cut.verdict not in ("dropped", "refused"):
            cut.verdict = "refused" if self.truncation == "refuse" else "dropped"
        # The last trained token that is not whitespace (templates often add a newline after end-of-turn).
        last = next((i for i in range(len(ids) - 1, -1, -1) if mask[i] and (ids[i] in self.special
                                                                          or self.tok.decode([ids[i]]).strip())), None)
        ends = None if last is None else (ids[last] in self.special or ids[last] == self.eos)
        return {"length": len(ids), "prompt_length": first if first is not None else len(ids), "trained": trained,
                "has_target": first is not None, "ends_eot": ends, "cut": cut.verdict, "tokens_cut": cut.tokens_cut}

    def measure_many(self, rows: list[dict]) -> list[dict]:
        """measure() over rows; plain-text rows are tokenized in batches (the fast path for big corpora)."""
        if self.method == "seq2seq":  # both sides of every row tokenised a batch at a time
            return [seq2seq.verdict(e, self.tok.eos_token_id)
                    for e in seq2seq.encode_rows(self.tok, rows, self.max_length, self.truncation)]
        out: list[dict | None] = [None] * len(rows)
        texts = [i for i, r in enumerate(rows) if set(r) == {"text"} and self.method not in ("classification", "sft")]
        for s in range(0, len(texts), BATCH):
            chunk = texts[s:s + BATCH]
            for i, ids in zip(chunk, _ids(self.tok, [rows[i]["text"] for i in chunk])):
                ids = _with_eos(ids, self.eos)
                n = len(ids)
                over = n > self.max_length
                dropped = over and self.truncation == "drop"
                out[i] = {"length": n, "prompt_length": 0, "trained": 0 if dropped else min(n, self.max_length),
                          "has_target": True, "ends_eot": True, "cut": ("dropped" if dropped else "cut") if over
                          else "kept", "tokens_cut": (n if dropped else n - self.max_length) if over else 0}
        for i, r in enumerate(rows):
            if out[i] is None:
                try:
                    out[i] = self.measure(r)
                except Exception as e:  # noqa: BLE001 - a template that refuses this row: reported with the row
                    out[i] = {"error": " ".join(f"{type(e).__name__}: {e}".split())[:300]}
        return out


def _pair_policy(truncation: str) -> str:
    """TRL cuts preference, kto and reward rows at the right (keep_start); under prompt_left apply_truncation
    has shortened their prompts first (cut_prompt), so what is left to cut is the answer's end."""
    return "right" if truncation == "prompt_left" else truncation


def _rendered(tok, msgs: list[dict]) -> int:
    return len(tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"])


def _tail(tok, text: str, drop: int) -> str:
    ids = tok(text, add_special_tokens=False)["input_ids"]
    return tok.decode(ids[drop:]) if drop < len(ids) else ""


def cut_prompt(tok, prompt, keep: int):
    """The prompt shortened to about its last `keep` tokens: a string loses its first tokens; a conversation
    loses its oldest exchanges, then the start of its system turn (all of it if need be), then the start of
    its first remaining turn's text."""
    if isinstance(prompt, str):
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        return _tail(tok, prompt, max(0, len(ids) - keep))
    system = [m for m in prompt[:1] if m["role"] in ("system", "developer")]
    turns = list(prompt[len(system):])
    while len(turns) > 2 and _rendered(tok, system + turns) > keep:
        turns = turns[2:]  # a user turn and its answer: the conversation still starts with the user
    excess = _rendered(tok, system + turns) - keep
    if excess > 0 and system:
        text = system[0].get("content") or ""
        rest = _tail(tok, text, excess) if isinstance(text, str) else ""
        system = [{**system[0], "content": rest}] if rest.strip() else []
        excess = _rendered(tok, system + turns) - keep
    if excess > 0 and isinstance(turns[0].get("content"), str):
        turns[0] = {**turns[0], "content": _tail(tok, turns[0]["content"], excess)}
    return system + turns


def apply_truncation(pairs: list[tuple[str, dict]], tok, max_length: int, method: str, loss_on: str = "completion",
                     truncation: str = "refuse", min_completion: int = 1):
    """data.truncation over (location, row) pairs: (the pairs kept, problems, counts).

    refuse: a row whose prompt alone fills max_length is a problem ("too long"); drop: a row longer than
    max_length goes; right and prompt_left: a row left with no trained token goes (TRL drops such rows silently;
    here they are counted). counts: rows_cut, rows_dropped, tokens_cut. grpo, rloo and classification rows
    are not measured (prompts only; the classifier truncates its input).
    """
    counts = {"policy": truncation, "max_length": max_length, "rows_cut": 0, "rows_dropped": 0, "tokens_cut": 0}
    if method in ("grpo", "rloo", "classification"):
        return pairs, [], counts
    measurer = Measurer(tok, method, max_length, loss_on, truncation, min_completion)
    kept, problems = [], []
    shorten = truncation == "prompt_left" and method in ("dpo", "kto", "reward")
    for (loc, row), m in zip(pairs, measurer.measure_many([row for _, row in pairs])):
        if "error" in m:
            problems.append(Problem(loc, "chat template error", m["error"]))
            continue
        if shorten and m["length"] > max_length and m["has_target"] and row.get("prompt"):
            p = m["prompt_length"]
            keep_p, keep_a = split_lengths(p, m["length"] - p, max_length, min_completion)
            if keep_p < p:
                row["prompt"] = cut_prompt(tok, row["prompt"], keep_p)  # TRL then cuts only the answer's end
            counts["rows_cut"] += 1
            counts["tokens_cut"] += m["length"] - keep_p - keep_a
            kept.append((loc, row))
            continue
        if m["cut"] == "refused":
            why = (seq2seq.too_long_detail if method == "seq2seq" else too_long_detail)(m["prompt_length"], max_length)
            problems.append(Problem(loc, "too long", why))
            continue
        if m["cut"] in ("cut", "dropped"):
            counts["rows_" + m["cut"]] += 1
            counts["tokens_cut"] += m["tokens_cut"]
        if m["cut"] != "dropped":
            kept.append((loc, row))
    return kept, problems, counts


def length_problems(pairs: list[tuple[str, dict]], tok, max_length: int, method: str, loss_on: str = "completion"):
    """Rows whose prompt alone fills max_length, so truncation would cut away every trained token."""
    return apply_truncation(pairs, tok, max_length, method, loss_on, "refuse")[1]
