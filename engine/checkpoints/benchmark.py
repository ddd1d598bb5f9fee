"""Benchmarks through lm-evaluation-harness: a checkpoint and its base model on the same tasks, side by side.

Tasks come from local data only: a user's JSONL as a custom multiple-choice task (rows with `choices` and an
`answer`) or generation task (a prompt and a target string, exact match), an lm-eval task YAML of one's own
(its `dataset_kwargs.data_files` naming local files), or a task of lm-eval's registry by name (its data must
already sit in the datasets cache). Every task's data loads before any model does, in offline mode unless
downloads are allowed, so a task whose data is not here fails at once with the files or hub data set it needs,
instead of hanging on a network that is not there.

Heavy when called: lm_eval, datasets, torch, transformers and peft are imported inside functions; results are
recorded by engine.checkpoints.bench_results (light, the workbench reads them).
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from engine.checkpoints.refs import ModelRef

PROMPT_KEYS = ("question", "query", "prompt", "input", "instruction", "text")
TARGET_KEYS = ("answer", "target", "completion", "output")
# datasets' packaged builders: a task YAML with one of these reads local files (data_files)
LOCAL_BUILDERS = {"json", "csv", "parquet", "text", "arrow", "pandas"}


class BenchmarkError(LookupError):
    """A task that cannot run here: the message names the task, the file or data set, and what to do."""


@dataclass
class TaskSpec:
    """One --tasks entry resolved: what lm-eval loads (a config dict, a YAML path or a registry name)."""

    name: str
    kind: str  # "multiple_choice" | "generation" (a JSONL), "yaml", "registry"
    load: object  # dict config, str path or str name, as TaskManager.load takes it
    source: str  # the file or registry name the user gave
    needs: list[str] = field(default_factory=list)  # hub data sets it reads (for the offline message)


# -- tasks --------------------------------------------------------------------------------------------
def read_rows(path: Path) -> list[tuple[str, dict]]:
    """(location, row) pairs of a JSONL file (or a JSON array)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        data = json.loads(text)
        return [(f"{path}[{i}]", r) for i, r in enumerate(data)]
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append((f"{path}:{n}", json.loads(line)))
            except ValueError as e:
                raise BenchmarkError(f"{path}:{n}: not JSON ({e})") from None
    return out


def first_key(row: dict, keys) -> str | None:
    return next((k for k in keys if isinstance(row.get(k), str)), None)


def jsonl_task(path: Path, workdir: Path, max_new_tokens: int) -> TaskSpec:
    """A user's JSONL as a task: multiple choice when rows have `choices`, else generation (exact match).

    The rows are normalised into workdir (query, choices, gold / query, target), so any of the usual column
    names works and lm-eval sees one shape."""
    rows = read_rows(path)
    if not rows:
        raise BenchmarkError(f"{path}: no rows")
    name = re.sub(r"\W+", "_", path.stem).strip("_") or "task"
    mc = isinstance(rows[0][1], dict) and "choices" in rows[0][1]
    out = []
    for where, r in rows:
        q = first_key(r, PROMPT_KEYS) if isinstance(r, dict) else None
        if q is None:
            raise BenchmarkError(f"{where}: no prompt: a row needs one of {', '.join(PROMPT_KEYS)} (a string)")
        if mc:
            choices, answer = r.get("choices"), r.get("answer", r.get("label", r.get("gold")))
            if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
                raise BenchmarkError(f"{where}: `choices` must be a list of at least two strings")
            gold = choices.index(answer) if isinstance(answer, str) and answer in choices else answer
            if not isinstance(gold, int) or isinstance(gold, bool) or not 0 <= gold < len(choices):
                raise BenchmarkError(f"{where}: `answer` must be the index of the right choice (0-{len(choices) - 1}) "
                                     f"or its text; got {answer!r}")
            out.append({"query": r[q], "choices": choices, "gold": gold})
        else:
            t = first_key(r, TARGET_KEYS)
            if t is None:
                raise BenchmarkError(f"{where}: no target: a generation row needs one of {', '.join(TARGET_KEYS)} "
                                     "(a string); a multiple-choice row needs `choices` and `answer`")
            out.append({"query": r[q], "target": r[t]})
    data = workdir / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out), encoding="utf-8")
    config = {"task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
              "test_split": "test", "doc_to_text": "{{query}}"}
    if mc:
        config.update(output_type="multiple_choice", doc_to_choice="{{choices}}", doc_to_target="{{gold}}",
                      metric_list=[{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                                   {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}])
    else:
        config.update(output_type="generate_until", doc_to_target="{{target}}", target_delimiter="",
                      generation_kwargs={"until": ["\n"], "do_sample": False, "max_gen_toks": max_new_tokens},
                      metric_list=[{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                                    "ignore_case": True, "ignore_punctuation": True,
                                    "regexes_to_ignore": [r"^\s+", r"\s+$"]}])
    return TaskSpec(name, "multiple_choice" if mc else "generation", config, str(path))


def data_needs(cfg: dict) -> tuple[list[str], list[str]]:
    """(hub data sets, missing local files) a task config reads."""
    path = cfg.get("dataset_path")
    if not path:
        return [], []
    if path in LOCAL_BUILDERS:
        files = (cfg.get("dataset_kwargs") or {}).get("data_files") or {}
        names = [files] if isinstance(files, str) else \
            [f for v in (files.values() if isinstance(files, dict) else files) for f in ([v] if isinstance(v, str) else v)]
        return [], [f for f in names if not Path(f).exists()]
    if Path(path).exists():
        return [], []
    sub = cfg.get("dataset_name")
    return [f"{path}" + (f" (subset {sub})" if sub else "")], []


def yaml_task(path: Path) -> TaskSpec:
    from lm_eval.tasks._yaml_loader import load_yaml

    try:
        cfg = load_yaml(path, resolve_func=False)
    except TypeError:  # an lm-eval whose loader takes no resolve_func
        cfg = load_yaml(path)
    except Exception as e:  # noqa: BLE001 - any YAML error is the user's to fix
        raise BenchmarkError(f"{path}: not a readable lm-eval task file ({e})") from None
    if not isinstance(cfg, dict) or "task" not in cfg:
        raise BenchmarkError(f"{path}: an lm-eval task file needs a `task:` name")
    hub, missing = data_needs(cfg)
    if missing:
        raise BenchmarkError(f"{path}: task {cfg['task']} reads {', '.join(missing)}, which is not there "
                             "(a relative data_files path is read from the directory you run tunebench in)")
    return TaskSpec(str(cfg["task"]), "yaml", str(path), str(path), hub)


def registry_task(name: str, manager) -> TaskSpec:
    entry = manager.task_index.get(name)
    if entry is None:
        from engine.config.validate import closest

        hint = closest(name, manager.all_tasks)
        raise BenchmarkError(f"--tasks {name}: not a file and not an lm-eval task" + (f"; {hint}" if hint else "")
                             + " (give a JSONL, a task YAML, or a name from `lm-eval ls tasks`)")
    hub, _ = data_needs(entry.cfg or {})
    if not hub and entry.kind.name in ("GROUP", "TAG"):  # its members' data sets, named when they fail to load
        hub = [f"the data sets of the {name} {entry.kind.name.lower()}'s tasks"]
    return TaskSpec(name, "registry", name, name, hub)


def resolve_tasks(items: list[str], workdir: Path, max_new_tokens: int = 32) -> list[TaskSpec]:
    """--tasks entries -> TaskSpecs; a name that is not a file is looked up in lm-eval's registry (indexing
    it reads lm-eval's ~15k task files: some seconds, paid only when a name is given)."""
    specs, names = [], []
    for item in items:
        p = Path(item).expanduser()
        if p.suffix in (".jsonl", ".json", ".yaml", ".yml"):
            if not p.is_file():
                raise BenchmarkError(f"--tasks {item}: no such file")
            specs.append(jsonl_task(p, workdir, max_new_tokens) if p.suffix in (".jsonl", ".json") else yaml_task(p))
        else:
            names.append(item)
            specs.append(None)
    if names:
        manager = registry()
        it = iter(names)
        specs = [s if s is not None else registry_task(next(it), manager) for s in specs]
    seen = [s.name for s in specs]
    dup = {n for n in seen if seen.count(n) > 1}
    if dup:
        raise BenchmarkError(f"--tasks: two tasks are named {', '.join(sorted(dup))} (a task is named after its file)")
    return specs


# -- data ---------------------------------------------------------------------------------------------
def go_offline() -> None:
    """Refuse the network for hub data sets and models, for the rest of this process: a missing one fails at
    once, it does not hang (the CLI sets the same variables before any ML import)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    import sys

    if "datasets" in sys.modules:  # read at import; set it on the module too when it is already loaded
        import datasets

        datasets.config.HF_HUB_OFFLINE = True


_REGISTRY = None


def registry():
    """lm-eval's TaskManager over its own ~15k task files (indexed once per process: some seconds)."""
    global _REGISTRY
    if _REGISTRY is None:
        from lm_eval.tasks import TaskManager

        _REGISTRY = TaskManager()
    return _REGISTRY


def task_manager(specs: list[TaskSpec]):
    """The TaskManager that loads these specs: the registry's when a task is named, else a bare one."""
    from lm_eval.tasks import TaskManager

    if any(s.kind == "registry" for s in specs):
        return registry()
    return TaskManager(include_defaults=False)


def check_data(specs: list[TaskSpec], manager, offline: bool = True) -> None:
    """Load every task with its data, before any model; a task whose data is not here raises BenchmarkError
    naming what it needs (offline: at once, without waiting on a network)."""
    if offline:
        go_offline()
    for s in specs:
        try:
            manager.load([s.load])
        except Exception as e:  # noqa: BLE001 - datasets raises many kinds (ConnectionError, FileNotFoundError, ...)
            raise BenchmarkError(missing_data_message(s, e, offline)) from e


def missing_data_message(s: TaskSpec, exc: Exception, offline: bool) -> str:
    from datasets import config as dconfig

    what = ", ".join(s.needs) or "its data"
    cache = getattr(dconfig, "HF_DATASETS_CACHE", "the datasets cache")
    why = " ".join(str(exc).split())[:300]
    if s.needs:
        fix = (f"it needs the hub data set {what}, which is not in {cache}"
               + (" (offline: tunebench eval does not download unless --allow-download)" if offline else "")
               + f". Fetch it where the hub is reachable (python -c \"import datasets; datasets.load_dataset('"
               f"{s.needs[0].split(' ')[0]}')\") and copy {cache} here, or describe the task in a YAML whose "
               "dataset_kwargs.data_files name local files, or give a JSONL")
    else:
        fix = f"its data did not load ({why})"
    return f"task {s.name} ({s.source}): {fix} [{type(exc).__name__}: {why}]"


# -- models -------------------------------------------------------------------------------------------
def base_ref(ref: ModelRef) -> ModelRef | None:
    """The base model a checkpoint was trained from, as a reference of its own; None for a base model."""
    if ref.kind == "base" or not ref.base_model or ref.base_model == ref.path:
        return None
    return ModelRef(label=f"base {Path(ref.base_model).name or ref.base_model}", path=ref.base_model, kind="base",
                    base_model=ref.base_model, meta={"method": ref.method})


def evaluate(model, tok, specs: list[TaskSpec], manager, batch_size: int, limit: int | None,
             num_fewshot: int | None, chat: bool, seed: int) -> tuple[dict, dict, dict]:
    """One model on the tasks: ({task: {metric: value}}, {task: samples evaluated}, lm-eval's samples).
    Each call builds fresh task objects (a task keeps the requests of the model it last served); their data
    comes from the datasets cache that check_data filled."""
    import logging

    import lm_eval
    from lm_eval.models.huggingface import HFLM

    # lm-eval warns at length about a model passed as an object and metrics without aggregation: not the user's
    logging.getLogger("lm_eval").setLevel(logging.ERROR)

    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size)
    res = lm_eval.simple_evaluate(model=lm, tasks=[s.load for s in specs], task_manager=manager, limit=limit,
                                  num_fewshot=num_fewshot, apply_chat_template=chat, bootstrap_iters=0,
                                  log_samples=True, random_seed=seed, numpy_random_seed=seed,
                                  torch_random_seed=seed, fewshot_random_seed=seed)
    metrics = {}
    for task, values in res["results"].items():
        m = {}
        for k, v in values.items():
            name, _, filt = k.partition(",")
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not name.endswith("_stderr") \
                    and name not in ("sample_len", "sample_count"):
                m[name if filt in ("none", "") else f"{name} ({filt})"] = float(v)
        metrics[task] = m
    return metrics, {t: len(s) for t, s in (res.get("samples") or {}).items()}, res.get("samples") or {}


def run_benchmark(ref: ModelRef, specs: list[TaskSpec], *, device: str = "cpu", with_base: bool = True,
                  batch_size: int = 8, limit: int | None = None, num_fewshot: int | None = None, chat: bool = False,
                  offline: bool = True, seed: int = 0, on_phase=None, keep_samples: bool = False) -> dict:
    """The tasks on `ref` and (unless with_base is False or ref is a base) its base model, one after the other.

    Returns {"model", "base", "tasks": {task: {"kind", "source", "samples", "metrics": {metric: {"model", "base"}}}},
    "limit", "num_fewshot", "chat", "device"}."""
    import gc

    phase = on_phase or (lambda text: None)
    if ref.method in ("classification", "reward"):
        raise BenchmarkError(f"{ref.label} is a {ref.method} model (a classification head); lm-eval benchmarks "
                             "score language models")
    if ref.seq2seq:
        raise BenchmarkError(f"{ref.label} is an encoder-decoder (seq2seq) model; tunebench eval runs lm-eval on "
                             "causal language models: score it with eval.metrics in its run (ROUGE, BLEU, ...) or "
                             "tunebench compare")
    phase(f"loading the data of {len(specs)} task(s)")
    manager = task_manager(specs)
    check_data(specs, manager, offline)
    run = lambda m: evaluate(m, tok, specs, manager, batch_size, limit, num_fewshot, chat, seed)  # noqa: E731
    from peft import PeftModel

    from engine.checkpoints.generate import _load_weights, load_tokenizer

    base = base_ref(ref) if with_base else None
    tok = load_tokenizer(ref)
    phase(f"loading {ref.label}")
    model = _load_weights(ref, device)
    if ref.adapter:
        model = PeftModel.from_pretrained(model, ref.path)
    model.eval()
    sides, samples = {}, {}
    phase(f"evaluating {ref.label}")
    sides["model"], counts, samples["model"] = run(model)
    if base is not None:
        if ref.adapter:  # the same weights with the adapter switched off are the base model: no second load
            phase(f"evaluating {base.label} (the adapter switched off)")
            with model.disable_adapter():
                sides["base"], _, samples["base"] = run(model)
        else:
            del model
            gc.collect()
            phase(f"loading {base.label}")
            model = _load_weights(base, device).eval()
            phase(f"evaluating {base.label}")
            sides["base"], _, samples["base"] = run(model)
    by_name = {s.name: s for s in specs}
    out_tasks = {}
    for task, metrics in sides["model"].items():
        s = by_name.get(task)
        out_tasks[task] = {"kind": s.kind if s else "registry", "source": s.source if s else task,
                           "samples": counts.get(task),
                           "metrics": {k: {"model": v, **({"base": sides["base"].get(task, {}).get(k)}
                                                          if "base" in sides else {})} for k, v in metrics.items()}}
    result = {"model": ref.describe(), "base": base.label if base else None, "tasks": out_tasks, "limit": limit,
              "num_fewshot": num_fewshot, "chat": chat, "device": device}
    if keep_samples:
        result["samples"] = samples
    return result


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="tunebench-eval-"))
