"""The one place sft rows become token ids and labels, as TRL 1.16's SFTTrainer builds them (but with every
assistant turn of a conversation trained, whatever the template), then cut to data.max_length by the truncation
policy.

Takes a tokenizer (the caller has loaded transformers and trl). `SFTEncoder.encode(row)` mirrors SFTTrainer's
`tokenize_fn`, `build_labels` and its EOS step, so a dataset of its output trains with the losses plain TRL
gives on the same rows; `truncate` applies data.truncation (TRL's own is `right`: keep the start, drop rows
left with nothing to train). The preparation pipeline (engine.data.pipeline) and the inspection's
measurements (engine.data.tokens) both call this module, so what `inspect` reports is what trains.
"""
from __future__ import annotations

from dataclasses import dataclass

from engine.data import templates

IGNORE = -100  # the label of a token that does not train (transformers' ignore_index)
POLICIES = ("prompt_left", "right", "drop", "refuse")


class Unusable(Exception):
    """A row that cannot train with this tokenizer: `kind` groups it in summaries (as formats.Invalid)."""

    def __init__(self, kind: str, detail: str):
        self.kind, self.detail = kind, detail
        super().__init__(f"{kind}: {detail}")


class SFTEncoder:
    """sft rows ({"messages"} | {"prompt", "completion"} | {"text"}) -> {"input_ids", "labels"}, as TRL would.

    `loss_on` completion trains every assistant turn of a conversation (by the template's generation markers,
    else by rendering conversation prefixes: engine.data.templates.assistant_mask) and the completion of a
    prompt/completion row; `all` trains every token. `name` is how errors call the template.
    """

    def __init__(self, tok, loss_on: str = "completion", plan: dict | None = None,
                 name: str = "the tokenizer's chat template"):
        self.tok, self.loss_on, self.name = tok, loss_on, name
        self._plan = plan
        self.eos_token = tok.eos_token

    @property
    def plan(self) -> dict:
        if self._plan is None:
            self._plan = templates.plan(self.tok, self.name)
        return self._plan

    def _chat(self, msgs: list[dict], **kw) -> dict:
        if self.plan["mode"] == "none":
            raise Unusable("chat template error", self.plan["note"])
        # tools=None as TRL passes it for rows without a tools column.
        return self.tok.apply_chat_template(msgs, tokenize=True, return_dict=True, tools=None, **kw)

    def tokenize(self, row: dict) -> tuple[list[int], list[int] | None]:
        """(input_ids, the mask of trained tokens or None when every token trains), before truncation."""
        if "messages" in row:
            if self.loss_on != "completion":
                return list(self._chat(row["messages"])["input_ids"]), None
            if self.plan["mode"] == "markers":
                out = self._chat(row["messages"], return_assistant_tokens_mask=True)
                ids, mask = list(out["input_ids"]), list(out["assistant_masks"])
            elif self.plan["mode"] == "prefix":
                try:
                    ids, mask = templates.assistant_mask(self.tok, row["messages"], None, self.plan.get("name", self.name))
                except templates.TemplateMismatch as e:
                    raise Unusable("chat template mismatch", str(e)) from None
            else:
                raise Unusable("chat template error", self.plan["note"])
            if 1 not in mask:  # TRL raises for such a row and stops the run; here it is this row's problem
                raise Unusable("chat template error", "the chat template marks no assistant token in this row")
            return ids, mask
        if "prompt" in row:
            return self._pair(row["prompt"], row["completion"])
        text = row["text"]
        if not text.endswith(self.eos_token):  # TRL's "Adding EOS" step, on the text
            text += self.eos_token
        return list(self.tok(text=text)["input_ids"]), None

    def _pair(self, prompt, completion) -> tuple[list[int], list[int] | None]:
        if isinstance(prompt, list) or isinstance(completion, list):
            p = prompt if isinstance(prompt, list) else ([{"role": "user", "content": prompt}] if prompt else [])
            c = completion if isinstance(completion, list) else [{"role": "assistant", "content": completion}]
            prompt_ids = list(self._chat(p, add_generation_prompt=True)["input_ids"]) if p else []
            full = list(self._chat(p + c)["input_ids"])
        else:
            if not completion.endswith(self.eos_token):
                completion += self.eos_token
            prompt_ids = list(self.tok(text=prompt)["input_ids"])
            full = list(self.tok(text=prompt + completion)["input_ids"])
        if self.loss_on != "completion":
            return full, None
        n = templates.common_prefix(prompt_ids, full)  # trl.data_utils.common_prefix_length
        return full, [0] * n + [1] * (len(full) - n)

    def encode(self, row: dict) -> dict:
        """{"input_ids", "labels"} before truncation: labels are the ids, IGNORE where nothing trains."""
        ids, mask = self.tokenize(row)
        labels = ids if mask is None else [t if m else IGNORE for t, m in zip(ids, mask)]
        return {"input_ids": ids, "labels": list(labels)}


@dataclass
class Cut:
    """What the truncation policy did to one row: the kept ids/labels (None when the row goes), tokens cut,
    and `verdict`: kept (untouched), cut, dropped (by the policy) or refused (too long: invalid)."""

    input_ids: list[int] | None
    labels: list[int] | None
    tokens_cut: int
    verdict: str
    prompt_tokens: int = 0


def first_trained(labels: list[int]) -> int | None:
    return next((i for i, v in enumerate(labels) if v != IGNORE), None)


def split_lengths(prompt: int, answer: int, max_length: int, min_answer: int) -> tuple[int, int]:
    """(prompt tokens kept, answer tokens kept) for a row longer than max_length, as LLaMA-Factory shares the
    length (an answer under half of it stays whole; a prompt under half stays whole; else in proportion to
    their lengths), the answer keeping at least `min_answer` tokens when it has them."""
    if 2 * answer < max_length:
        keep = answer
    elif 2 * prompt < max_length:
        keep = max_length - prompt
    else:
        keep = int(max_length * answer / (prompt + answer))
    keep = min(max_length, max(min(keep, answer), min(answer, min_answer)))
    return min(prompt, max_length - keep), keep


def truncate(ids: list[int], labels: list[int], max_length: int, policy: str, min_completion: int = 0,
             bos: int | None = None) -> Cut:
    """Apply data.truncation to one encoded row.

    prompt_left: the prompt loses its oldest tokens (a leading BOS stays) and the answer keeps its start, the
    two sharing max_length by split_lengths; right: keep the first max_length tokens (TRL's keep_start),
    dropping a row left with no trained token; drop: drop every row longer than max_length; refuse: cut at the
    right, but a row whose prompt alone fills max_length is refused (invalid) instead of dropped.
    """
    n = len(ids)
    first = first_trained(labels)
    prompt = n if first is None else first
    if n <= max_length:
        return Cut(ids, labels, 0, "kept", prompt)
    if policy == "drop":
        return Cut(None, None, n, "dropped", prompt)
    if policy == "prompt_left" and first is not None:
        keep_p, keep_a = split_lengths(prompt, n - prompt, max_length, min_completion)
        start, end = prompt - keep_p, prompt + keep_a
        if bos is not None and start > 0 and ids[0] == bos and keep_p > 0:  # the BOS the model always saw first
            kept_ids, kept_labels = ids[:1] + ids[start + 1:end], labels[:1] + labels[start + 1:end]  # stays first
        else:
            kept_ids, kept_labels = ids[start:end], labels[start:end]
        return Cut(kept_ids, kept_labels, n - len(kept_ids), "cut", prompt)
    kept_ids, kept_labels = ids[:max_length], labels[:max_length]
    if first is None or first >= max_length:
        return Cut(None, None, n, "refused" if policy == "refuse" else "dropped", prompt)
    return Cut(kept_ids, kept_labels, n - max_length, "cut", prompt)


def too_long_detail(prompt_tokens: int, max_length: int) -> str:
    return (f"{prompt_tokens} prompt tokens fill data.max_length {max_length}: truncation would cut every trained "
            "token")
