"""The one configuration schema: a frozen dataclass per section, every key declared with its default, a one-line
description, and its choices or bounds.

Light module. `Config` is what the engine and the planning code read (`cfg.training.learning_rate`); `SCHEMA`
is the same keys as `Field`s for generic code (the workbench's form, `--set`, presets, validation).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

METHODS = ("sft", "seq2seq", "dpo", "kto", "reward", "grpo", "rloo", "classification")
ADAPTERS = ("none", "lora", "dora", "ia3", "prompt_tuning", "prefix_tuning")
# TRL 1.16's loss names (DPOConfig.loss_type, KTOConfig.loss_type).
DPO_LOSSES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
              "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")
KTO_LOSSES = ("kto", "apo_zero_unpaired")
# Adapter kinds each method can train (peft task types differ: prompt/prefix tuning need a causal LM; seq2seq's
# SEQ_2_SEQ_LM task takes LoRA, DoRA and IA3 on the encoder's and the decoder's linears).
METHOD_ADAPTERS = {"sft": ADAPTERS, "seq2seq": ADAPTERS[:4], "dpo": ADAPTERS[:4], "kto": ADAPTERS[:4],
                   "reward": ADAPTERS[:4], "grpo": ADAPTERS[:4], "rloo": ADAPTERS[:4], "classification": ADAPTERS}
REPORT_TO = ("none", "tensorboard", "wandb", "trackio", "mlflow")
FORMATS = ("auto", "messages", "sharegpt", "alpaca", "prompt_completion", "text", "preference", "kto",
           "classification", "prompt")
# A very large but finite bound: past it a number is a typo, and the engine would fail after the run exists.
HUGE = 2**31 - 1


@dataclass(frozen=True)
class Field:
    """One config key as generic code sees it: its type, default, one-line help and optional bounds or choices."""

    type: str  # "str", "int", "float", "bool", "str?" (nullable str), "strlist" (str or list of str)
    default: Any
    help: str
    choices: tuple = ()
    min: float | None = None
    max: float | None = None


# Annotation as written below (a string: `from __future__ import annotations`) -> Field.type
_KINDS = {"str": "str", "int": "int", "float": "float", "bool": "bool", "str | None": "str?",
          "str | list[str]": "strlist"}


def key(default: Any, help: str, *, choices: tuple = (), min: float | None = None, max: float | None = None):
    """Declare a config key: its default, its one-line help, and its choices or bounds."""
    meta = {"help": help, "choices": tuple(choices), "min": min, "max": max}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


class Section:
    """Shared behaviour of the section dataclasses."""

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Model(Section):
    """The base model and how its weights load."""

    name_or_path: str = key("", "Local model directory or hub id of the base model (required).")
    dtype: str = key("auto", "Dtype the weights load in; auto follows training.precision.",
                     choices=("auto", "float32", "bfloat16", "float16"))
    quantization: str = key("none", "Load the base weights quantized by bitsandbytes; 4bit with lora is QLoRA.",
                            choices=("none", "4bit", "8bit"))
    trust_remote_code: bool = key(False, "Run Python code shipped with the model; only for models you trust.")
    attn_implementation: str = key("auto", "Attention kernel: auto picks sdpa (flash_attention_2 when installed on CUDA).",
                                   choices=("auto", "eager", "sdpa", "flash_attention_2"))
    revision: str | None = key(None, "Hub revision (branch, tag or commit) when name_or_path is a hub id.")


@dataclass(frozen=True)
class Adapter(Section):
    """What trains: the whole model, or an adapter beside frozen base weights."""

    kind: str = key("lora", "none = full fine-tuning; lora (QLoRA with 4bit weights), dora, ia3, prompt_tuning, prefix_tuning.",
                    choices=ADAPTERS)
    use_rslora: bool = key(False, "Rank-stabilised LoRA: scale by alpha/sqrt(r), so higher ranks keep learning (lora, dora).")
    num_virtual_tokens: int = key(20, "Learned virtual tokens for prompt_tuning and prefix_tuning.", min=1, max=4096)
    r: int = key(16, "LoRA rank: the adapter's inner dimension; more capacity, more memory.", min=1, max=4096)
    alpha: float = key(32.0, "LoRA scaling numerator (the update is scaled by alpha/r).", min=0, max=1e6)
    dropout: float = key(0.05, "Dropout on the adapter's input during training.", min=0, max=1)
    target_modules: str | list[str] = key("all-linear",
                                          "Modules that get adapters: all-linear, or a list of names such as q_proj, v_proj.")


@dataclass(frozen=True)
class Data(Section):
    """Where the rows come from and how they become sequences."""

    train: str | list[str] = key("", "Training data: a file, a list of files or a glob (required); a list of "
                                 "{path, weight} or path:weight entries mixes the sources by weight each epoch.")
    eval: str | None = key(None, "Held-out evaluation file; when empty, eval_fraction of train is held out.")
    eval_fraction: float = key(0.0, "Share of train rows held out for evaluation when data.eval is empty.", min=0, max=0.5)
    format: str = key("auto", "Row format; auto detects it from the columns (see tunebench inspect).", choices=FORMATS)
    columns: str | list[str] = key([], "Column mapping NAME=COLUMN (e.g. instruction=question,output=answer) onto the format's names.")
    skip_invalid: bool = key(False, "Drop invalid rows (counted by reason in the run's events) instead of refusing to start.")
    train_on_chosen: bool = key(False, "sft on preference data: train on the prompt and the chosen answer.")
    split: str | None = key(None, "Split of a hub dataset or DatasetDict directory (default train).")
    subset: str | None = key(None, "Subset (configuration) of a hub dataset.")
    max_length: int = key(1024, "Longest sequence in tokens; longer rows are cut by data.truncation.", min=8, max=1 << 20)
    truncation: str = key("prompt_left", "A row longer than max_length: prompt_left (cut the prompt's oldest tokens so the "
                          "answer fits), right (keep the start), drop (drop the row, counted) or refuse (invalid when "
                          "the prompt alone fills max_length).", choices=("prompt_left", "right", "drop", "refuse"))
    min_completion_tokens: int = key(16, "prompt_left: answer tokens a cut row keeps at least, however long its prompt.",
                                     min=1, max=1 << 20)
    cache: bool = key(True, "Reuse the prepared (tokenised) data from the user's cache when file, tokenizer and "
                            "settings match; the run's events say whether it did.")
    num_proc: int = key(0, "Processes that read and tokenise the data; 0 = one per available core.", min=0, max=1024)
    packing: bool = key(False, "Pack several short rows into one sequence of max_length (SFT only).")
    general_eval: str | None = key(None, "Forgetting watch: general text whose loss is tracked beside the task's eval loss.")
    general_mix: float = key(0.0, "Share of each epoch drawn from general data (data.general_mix_data, else "
                             "data.general_eval) against forgetting; the task rows keep their count; 0 = off.",
                             min=0, max=0.9)
    general_mix_data: str | None = key(None, "General data mixed in by data.general_mix (default: data.general_eval's file).")
    order: str = key("shuffle", "Row order: shuffle, length (shortest first), column:NAME (the column ascending) or "
                     "easy_first (sft, dpo, kto: lowest base-model loss first, scored once and cached), for the first "
                     "curriculum_epochs epochs, shuffled after.")
    curriculum_epochs: int = key(0, "Epochs data.order holds before the order returns to shuffled; 0 = every epoch.",
                                 min=0, max=HUGE)
    loss_on: str = key("completion", "Which tokens train: completion (every assistant turn / the completion) or all.",
                       choices=("completion", "all"))
    chat_template: str = key("auto", "Chat template for conversations: auto (the tokenizer's own), chatml, qwen2.5, "
                             "llama3, mistral, gemma, phi3, alpaca, from:<model dir> (another tokenizer's) or a "
                             "Jinja file; special tokens it needs are added when missing.")


@dataclass(frozen=True)
class Training(Section):
    """The optimisation: length, batch, learning rate and schedule, precision, cadence of evals and saves."""

    max_steps: int = key(-1, "Optimizer steps to run; -1 means train for `epochs` instead.", min=-1, max=HUGE)
    epochs: float = key(1.0, "Passes over the training data when max_steps is -1.", min=0, max=1e6)
    batch_size: int = key(4, "Rows per device per forward pass.", min=1, max=1 << 20)
    grad_accum: int = key(1, "Forward passes accumulated into one optimizer step.", min=1, max=1 << 20)
    learning_rate: float = key(2e-4, "Peak learning rate (LoRA likes ~1e-4..1e-3, full fine-tuning ~1e-5).", min=0, max=1)
    lr_scheduler: str = key("linear", "Learning-rate schedule after warmup.",
                            choices=("linear", "cosine", "constant", "constant_with_warmup"))
    warmup_steps: int = key(0, "Steps of linear warmup from 0 to the peak learning rate.", min=0, max=HUGE)
    weight_decay: float = key(0.0, "AdamW weight decay.", min=0, max=1e3)
    max_grad_norm: float = key(1.0, "Gradient clipping norm; 0 turns clipping off.", min=0, max=1e9)
    optimizer: str = key("auto", "Optimizer: auto (fused AdamW), adamw_torch, adamw_8bit (bitsandbytes), paged_adamw_8bit, sgd.",
                         choices=("auto", "adamw_torch", "adamw_torch_fused", "adamw_8bit", "paged_adamw_8bit",
                                  "paged_adamw_32bit", "sgd"))
    precision: str = key("auto", "Compute precision: auto = bf16 on GPUs that support it, fp32 on a CPU.",
                         choices=("auto", "fp32", "bf16", "fp16"))
    gradient_checkpointing: str = key("auto", "Recompute activations to save memory; auto = on only when the estimate says the GPU needs it.",
                                      choices=("auto", "true", "false"))
    liger_kernel: str = key("auto", "Liger's Triton kernels (RMSNorm, SwiGLU, RoPE): auto = on with CUDA when liger-kernel is installed.",
                            choices=("auto", "true", "false"))
    seed: int = key(0, "Seed for weights init, dropout and data order.", min=0, max=2**32 - 1)
    logging_steps: int = key(1, "Write a metrics event every this many steps.", min=1, max=HUGE)
    eval_steps: int = key(0, "Evaluate every this many steps; 0 evaluates only at the end (when there is eval data).",
                          min=0, max=HUGE)
    save_steps: int = key(0, "Save a checkpoint every this many steps; 0 saves only at the end.", min=0, max=HUGE)
    save_total_limit: int = key(0, "Keep at most this many checkpoints (the best by eval loss is kept too); 0 keeps all.",
                                min=0, max=HUGE)
    early_stopping_patience: int = key(0, "Evaluations without a better eval loss before stopping; 0 never stops early.",
                                       min=0, max=HUGE)
    freeze: str | list[str] = key([], "Parameter-name patterns (fnmatch, e.g. '*embeddings*', '*layer.0.*') kept frozen.")
    group_by_length: bool = key(False, "Classification: batch rows of similar length together; less padding, faster on short texts.")
    unfreeze_every: int = key(0, "Gradual unfreezing: every this many steps the frozen layer nearest the output trains again; 0 = never.",
                              min=0, max=HUGE)
    report_to: str | list[str] = key("none", "Extra trackers: none, tensorboard, wandb, trackio, mlflow (when installed).")
    layer_lr_decay: float = key(1.0, "Layer-wise rates: each layer below the top trains at the rate x this per layer, "
                                "embeddings lowest; ~0.8-0.95 helps keep general ability (full or adapter tuning); 1 = off.",
                                min=0.01, max=1)
    label_smoothing: float = key(0.0, "Share of each target's probability spread over the other classes/tokens (sft, "
                                 "seq2seq, classification); helps noisy labels and overconfidence; costs a forward pass a step in sft.",
                                 min=0, max=0.5)
    neftune_noise_alpha: float = key(0.0, "NEFTune: noise on the input embeddings while training (sft; the paper uses 5); "
                                     "helps instruction tuning on small data generalise; 0 = off.", min=0, max=1000)


@dataclass(frozen=True)
class Preference(Section):
    """DPO and KTO: the reference and the loss."""

    # > 0: TRL divides by beta (ipo, robust losses); 0 would make the loss infinite or flat after the run exists
    beta: float = key(0.1, "DPO/KTO: how far the policy may move from the reference model (higher = closer).", min=1e-4, max=1e3)
    loss_type: str | list[str] = key("sigmoid", "DPO loss, or a list combined: sigmoid, ipo, hinge, robust, apo_zero, sppo_hard, ... (KTO: kto, apo_zero_unpaired).")
    desirable_weight: float = key(1.0, "KTO: weight of desirable (label true) rows, to balance unequal counts.", min=0, max=1e3)
    undesirable_weight: float = key(1.0, "KTO: weight of undesirable (label false) rows.", min=0, max=1e3)


@dataclass(frozen=True)
class RL(Section):
    """GRPO and RLOO: where rewards come from and how completions are sampled."""

    reward_model: str | None = key(None, "GRPO/RLOO: a reward model directory (e.g. a tunebench reward run's checkpoint).")
    reward_file: str | None = key(None, "GRPO/RLOO: a Python file with reward functions `def reward(completions, **columns) -> list[float]`.")
    reward_functions: str | list[str] = key("reward", "Names of the functions in reward_file to use (summed with equal weights).")
    num_generations: int = key(4, "Completions sampled per prompt; advantages compare them (batch_size must be a multiple).",
                               min=2, max=4096)
    max_completion_length: int = key(64, "Longest sampled completion in tokens.", min=1, max=1 << 20)
    # > 0: sampling divides the logits by it (transformers refuses 0 once the engine generates)
    temperature: float = key(1.0, "Sampling temperature for the completions.", min=1e-2, max=100)
    beta: float = key(0.0, "KL penalty towards the reference model (0 = none and no reference copy in memory).", min=0, max=1e3)
    samples_per_log: int = key(4, "Sample completions with their rewards written to the events at each log step.", min=0, max=4096)


@dataclass(frozen=True)
class Classification(Section):
    """Text classification: which columns hold the text and the label, and the label names."""

    text_column: str = key("auto", "Column with the text (auto: text, sentence, content or review).")
    text_pair_column: str | None = key(None, "Optional second text column for pair tasks (e.g. NLI premise/hypothesis).")
    label_column: str = key("label", "Column with the label: a name or an integer index.")
    labels: str | list[str] = key([], "Label names in index order; empty = taken from the data (sorted).")


# Metrics computed on generations at evaluation (engine/training/textmetrics.py); classification reports
# accuracy and F1 from its predicted labels whatever this says.
TEXT_METRICS = ("exact_match", "rouge1", "rouge2", "rougeL", "bleu", "chrf")


@dataclass(frozen=True)
class Eval(Section):
    """What each evaluation computes beyond the loss: metrics on generated answers, and how much it generates."""

    metrics: str | list[str] = key([], "Metrics on generated answers at each evaluation: exact_match, rouge1, rouge2, "
                                    "rougeL, bleu, chrf (sft and seq2seq; empty = the loss only).")
    max_new_tokens: int = key(64, "Longest answer generated for eval.metrics, in tokens.", min=1, max=1 << 16)
    # Generation costs a forward pass per new token per row; bounded so evaluation does not dominate the run.
    max_rows: int = key(64, "Eval rows answered for eval.metrics at each evaluation (the first ones, same every time).",
                        min=1, max=HUGE)


@dataclass(frozen=True)
class Hardware(Section):
    """Where the run trains: device, processes, launcher config, and the GPU estimates plan for."""

    device: str = key("auto", "Where to train: auto = cuda when a GPU is visible, else cpu.", choices=("auto", "cpu", "cuda"))
    num_processes: int = key(1, "Processes (GPUs) to train on; more than 1 launches through accelerate.", min=1, max=4096)
    accelerate_config: str | None = key(None, "An accelerate config file (FSDP, DeepSpeed) for multi-process runs.")
    nnodes: int = key(1, "Machines the run spans; above 1, torchrun's rendezvous joins them (start the others with "
                      "`tunebench join RUN`; under --slurm, the allocation's nodes).", min=1, max=4096)
    nproc_per_node: int = key(0, "Processes (GPUs) on each node of a multi-node run; 0 = hardware.num_processes.",
                              min=0, max=4096)
    rdzv_endpoint: str | None = key(None, "host:port of the rendezvous that every node reaches (the first node's "
                                    "address); needed when nnodes > 1, except under --slurm (its first node).")
    gpu: str = key("auto", "GPU that `tunebench estimate` plans for: auto = the visible one; a name (H100, A100-80GB, L4, RTX4090) for one not here.")
    max_concurrent: int = key(0, "Queue: start this run only while fewer runs are active; 0 = one at a time on a CPU, as many as fit by the memory estimate on a GPU.",
                              min=0, max=4096)


def section(cls):
    return field(default_factory=cls, metadata={"section": True})


@dataclass(frozen=True)
class Config:
    """A whole validated run configuration. Build it with engine.config.load_config or parse; read it by
    attribute (`cfg.data.max_length`); change it with replace(), which returns a new Config."""

    method: str = key("sft", "Training method: sft (supervised, causal LM), seq2seq (encoder-decoder: T5, BART), dpo, kto, "
                      "reward, grpo, rloo, classification.",
                      choices=METHODS)
    name: str = key("", "Optional label for the run; it becomes part of the run id.")
    model: Model = section(Model)
    adapter: Adapter = section(Adapter)
    data: Data = section(Data)
    training: Training = section(Training)
    preference: Preference = section(Preference)
    rl: RL = section(RL)
    classification: Classification = section(Classification)
    eval: Eval = section(Eval)
    hardware: Hardware = section(Hardware)

    def to_dict(self) -> dict:
        """The nested dict config.yaml holds (method and name at top level)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        """Typed view of an already validated nested dict (see engine.config.parse for raw input)."""
        top = {k: d[k] for k in SCHEMA[""] if k in d}
        parts = {s: SECTION_CLASSES[s](**{k: v for k, v in (d.get(s) or {}).items() if k in SCHEMA[s]})
                 for s in SECTIONS}
        return cls(**top, **parts)

    def get(self, path: str) -> Any:
        """The value at a dotted path: `training.learning_rate`, or `method`."""
        section_name, _, k = path.rpartition(".")
        return getattr(getattr(self, section_name) if section_name else self, k)

    def replace(self, **changes) -> Config:
        """A copy with top-level keys (`method="dpo"`) or section keys (`data={"eval": None}`) changed.
        Not re-validated: callers change values to ones the engine itself chose."""
        out = {}
        for k, v in changes.items():
            if k in SECTIONS and isinstance(v, dict):
                out[k] = getattr(self, k).replace(**v)
            else:
                out[k] = v
        return dataclasses.replace(self, **out)

    def with_values(self, values: dict[str, Any]) -> Config:
        """A copy with dotted keys changed, {"training.batch_size": 2, "method": "dpo"} (not re-validated)."""
        changes: dict[str, Any] = {}
        for path, v in values.items():
            section_name, _, k = path.rpartition(".")
            if section_name:
                changes.setdefault(section_name, {})[k] = v
            else:
                changes[k] = v
        return self.replace(**changes)


def _fields(cls) -> dict[str, Field]:
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    out = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("section"):
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        m = f.metadata
        out[f.name] = Field(_KINDS[str(hints[f.name])], default, m["help"], m["choices"], m["min"], m["max"])
    return out


SECTION_CLASSES: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(Config)
                                    if f.metadata.get("section")}
# section -> key -> Field. `method` and `name` are top-level scalars, kept in the pseudo-section "".
SCHEMA: dict[str, dict[str, Field]] = {"": _fields(Config), **{s: _fields(c) for s, c in SECTION_CLASSES.items()}}
SECTIONS = list(SECTION_CLASSES)
