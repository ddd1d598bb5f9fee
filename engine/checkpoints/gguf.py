"""GGUF through llama.cpp's own converter (convert_hf_to_gguf.py, convert_lora_to_gguf.py), and its check by greedy tokens.

No converter of our own: the scripts run as llama.cpp ships them, in a subprocess, from a llama.cpp checkout
(`TUNEBENCH_LLAMA_CPP=DIR`) or from the copy inside the llama-cpp-python source distribution on PyPI, fetched
once with pip (`pip download --no-binary :all: llama-cpp-python==PIN`, ~73 MiB) and unpacked into the cache
(convert_*.py, conversion/, gguf-py/: the gguf library version the scripts were written against). The `gguf`
package (the `export` extra) is what transformers reads a GGUF back with. Heavy only inside `verify`.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

PIN = "0.3.36"  # llama-cpp-python whose vendor/llama.cpp carries the converter we run
QUANTS = ("f16", "bf16", "q8_0", "f32")  # what llama.cpp's converter writes itself
EXACT = ("f32", "f16", "bf16")
INSTALL = "pip install 'tunebench[export]'"
KEEP = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion/", "gguf-py/gguf/", "LICENSE")
# Verification: greedy tokens of the GGUF against the merged model on a few prompts.
VERIFY_TOKENS = 8  # compared per prompt
QUANT_PREFIX = 4  # q8_0: these first tokens must agree...
QUANT_SHARE = 2 / 3  # ...on at least this share of the prompts


class ExportError(ValueError):
    """An export refused or failed, with what to do."""


def cache_root() -> Path:
    base = os.environ.get("TUNEBENCH_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tunebench")
    return Path(base)


def need_gguf() -> None:
    try:
        import gguf  # noqa: F401 - the package transformers reads a GGUF back with
    except ImportError:
        raise ExportError(f"GGUF export needs the gguf and sentencepiece packages: {INSTALL}") from None
    if importlib.util.find_spec("sentencepiece") is None:  # llama.cpp's converter imports it for Llama models
        raise ExportError(f"GGUF export needs the sentencepiece package (llama.cpp's converter imports it): {INSTALL}")


def converter(on_phase=None) -> Path:
    """The directory holding llama.cpp's convert_hf_to_gguf.py (a checkout, the cache, or fetched now)."""
    phase = on_phase or (lambda text: None)
    env = os.environ.get("TUNEBENCH_LLAMA_CPP")
    if env:
        d = Path(env).expanduser()
        if not (d / "convert_hf_to_gguf.py").exists():
            raise ExportError(f"TUNEBENCH_LLAMA_CPP={env}: no convert_hf_to_gguf.py there (point it at a llama.cpp checkout)")
        return d
    d = cache_root() / f"llama.cpp-{PIN}"
    if (d / "convert_hf_to_gguf.py").exists():
        return d
    phase(f"fetching llama.cpp's converter: pip download llama-cpp-python=={PIN} (source, ~73 MiB, once)")
    with tempfile.TemporaryDirectory(prefix="tunebench-llamacpp-") as tmp:
        res = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                              "--quiet", f"llama-cpp-python=={PIN}", "-d", tmp],
                             capture_output=True, text=True)
        sdists = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if res.returncode != 0 or not sdists:
            raise ExportError(f"could not fetch llama.cpp's converter with pip ({(res.stderr or '').strip()[-300:]}); "
                              "point TUNEBENCH_LLAMA_CPP at a llama.cpp checkout instead")
        _unpack(sdists[0], d)
    return d


def _unpack(sdist: Path, dest: Path) -> None:
    """Only the converter's files out of the sdist, into a temporary sibling renamed when complete."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(3)}.partial")
    try:
        with tarfile.open(sdist) as tf:
            members = []
            for m in tf.getmembers():
                rel = m.name.partition("/vendor/llama.cpp/")[2]
                if rel and (m.isfile() or m.isdir()) and any(rel == k or rel.startswith(k) for k in KEEP):
                    m.name = rel
                    members.append(m)
            tf.extractall(tmp, members=members, filter="data")
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def architectures(conv: Path) -> set[str]:
    """The Hugging Face architectures llama.cpp's converter knows (its TEXT_MODEL_MAP)."""
    text = (conv / "conversion" / "__init__.py").read_text(encoding="utf-8")
    block = text.partition("TEXT_MODEL_MAP")[2].partition("}")[0]
    return set(re.findall(r'"(\w+)"\s*:', block))


def model_config(model_dir: str) -> dict:
    try:
        return json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return {}


def check_architecture(model_dir: str, conv: Path) -> str:
    """The model's architecture, or ExportError naming why llama.cpp cannot take it."""
    arch = (model_config(model_dir).get("architectures") or [""])[0]
    if not arch:
        raise ExportError(f"{model_dir}: config.json names no architecture; llama.cpp's converter needs one")
    if arch not in architectures(conv):
        raise ExportError(f"llama.cpp's converter has no support for {arch} (llama-cpp-python {PIN}): no GGUF for this model")
    return arch


def can_verify(model_dir: str) -> str:
    """Which reader checks the written file: "llama.cpp" (llama-cpp-python) or "transformers"; ExportError when none."""
    if importlib.util.find_spec("llama_cpp") is not None:
        return "llama.cpp"
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

    mtype = model_config(model_dir).get("model_type", "")
    if mtype in GGUF_CONFIG_MAPPING:
        return "transformers"
    raise ExportError(f"cannot check a {mtype or 'this'} GGUF here: transformers reads GGUF only for "
                      f"{', '.join(sorted(k for k in GGUF_CONFIG_MAPPING if k not in ('general', 'tokenizer')))} "
                      "and llama-cpp-python is not installed; pip install llama-cpp-python, or pass --no-verify")


def run_script(args: list[str], on_phase=None, what: str = "converting") -> None:
    """Run one of llama.cpp's scripts; its log lines become phases, its last lines the error when it fails."""
    phase = on_phase or (lambda text: None)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("NO_LOCAL_GGUF", None)  # the scripts import the gguf-py they came with
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    tail: list[str] = []
    last = 0.0
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-15:]
        if time.monotonic() - last > 0.5 and line:  # a line per tensor: a few phases a second are enough
            phase(f"{what}: {line[-100:]}")
            last = time.monotonic()
    if proc.wait() != 0:
        raise ExportError(f"llama.cpp's {Path(args[0]).name} failed:\n  " + "\n  ".join(tail[-6:]))


def convert(model_dir: Path, out_file: Path, quant: str, conv: Path, on_phase=None) -> None:
    run_script([str(conv / "convert_hf_to_gguf.py"), str(model_dir), "--outfile", str(out_file), "--outtype", quant],
               on_phase)


def convert_lora(adapter_dir: str, base_dir: str, out_file: Path, quant: str, conv: Path, on_phase=None) -> None:
    run_script([str(conv / "convert_lora_to_gguf.py"), "--base", base_dir, "--outfile", str(out_file),
                "--outtype", quant, adapter_dir], on_phase)


# -- verification ------------------------------------------------------------------------------------------
def _greedy_hf(model, prompts: list[list[int]], stop: set[int]) -> list[list[int]]:
    import torch

    out = []
    for ids in prompts:
        with torch.no_grad():
            gen = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 max_new_tokens=VERIFY_TOKENS, do_sample=False, pad_token_id=0)
        out.append(_cut([int(t) for t in gen[0, len(ids):]], stop))
    return out


def _greedy_llama_cpp(path: Path, prompts: list[list[int]], stop: set[int]) -> list[list[int]]:
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=512, verbose=False, n_threads=max(1, min(4, os.cpu_count() or 1)))
    out = []
    for ids in prompts:
        toks = []
        for t in llm.generate(ids, top_k=1, temp=0.0, reset=True):
            toks.append(int(t))
            if len(toks) >= VERIFY_TOKENS or t in stop:
                break
        out.append(_cut(toks, stop))
    llm.close() if hasattr(llm, "close") else None
    return out


def _cut(tokens: list[int], stop: set[int]) -> list[int]:
    for i, t in enumerate(tokens):
        if t in stop:
            return tokens[: i + 1]
    return tokens[:VERIFY_TOKENS]


def verify(hf_dir: Path, gguf_file: Path, prompts: list[list[int]], stop: set[int], quant: str, reader: str) -> dict:
    """Greedy tokens of the GGUF (read back by `reader`) against the merged model's, prompt by prompt.

    16/32-bit files must give the same tokens on every prompt; q8_0 the same first QUANT_PREFIX tokens on at
    least QUANT_SHARE of them. Returns the figures; raises ExportError when the file fails the check.
    """
    import torch
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    want = _greedy_hf(ref, prompts, stop)
    del ref
    if reader == "llama.cpp":
        got = _greedy_llama_cpp(gguf_file, prompts, stop)
    else:
        cand = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32).eval()
        got = _greedy_hf(cand, prompts, stop)
        del cand
    agree = [next((i for i, (a, b) in enumerate(zip(w, g)) if a != b), min(len(w), len(g))) if w != g else len(w)
             for w, g in zip(want, got)]
    same = sum(w == g for w, g in zip(want, got))
    if quant in EXACT:
        ok, rule = same == len(prompts), f"the same {VERIFY_TOKENS} greedy tokens on every prompt"
    else:
        first = sum(w[:QUANT_PREFIX] == g[:QUANT_PREFIX] for w, g in zip(want, got))
        ok = first >= QUANT_SHARE * len(prompts)
        rule = f"the same first {QUANT_PREFIX} greedy tokens on at least {QUANT_SHARE:.0%} of the prompts"
    report = {"reader": reader, "prompts": len(prompts), "identical": same, "agreeing_prefix": agree,
              "rule": rule, "passed": ok, "tokens": {"merged": want, "gguf": got}}
    if not ok:
        raise ExportError(f"the {quant} GGUF does not match the merged model ({rule}: {same}/{len(prompts)} identical, "
                          f"agreeing prefixes {agree}); nothing was written")
    return report


def verify_lora(gguf_file: Path, adapter_dir: str) -> dict:
    """Read a GGUF LoRA back: an adapter of type lora, the adapter's alpha, a lora_a/lora_b pair per adapted module."""
    import gguf
    from safetensors import safe_open

    reader = gguf.GGUFReader(str(gguf_file))
    fields = {f.name: f for f in reader.fields.values()}

    def value(key):
        f = fields.get(key)
        return None if f is None else f.contents()

    cfg = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    names = [t.name for t in reader.tensors]
    pairs = {n.rsplit(".lora_", 1)[0] for n in names if ".lora_" in n}
    with safe_open(str(Path(adapter_dir) / "adapter_model.safetensors"), "pt") as f:
        modules = {k.split(".lora_A")[0] for k in f.keys() if ".lora_A" in k}
    problems = []
    if value("general.type") != "adapter" or value("adapter.type") != "lora":
        problems.append(f"type {value('general.type')}/{value('adapter.type')}, not adapter/lora")
    if value("adapter.lora.alpha") is None or abs(float(value("adapter.lora.alpha")) - float(cfg["lora_alpha"])) > 1e-6:
        problems.append(f"alpha {value('adapter.lora.alpha')} instead of {cfg['lora_alpha']}")
    if len(pairs) != len(modules) or len(names) != 2 * len(modules):
        problems.append(f"{len(names)} tensors for {len(modules)} adapted modules")
    if problems:
        raise ExportError("the GGUF adapter read back wrong: " + "; ".join(problems))
    return {"reader": "gguf", "tensors": len(names), "modules": len(modules), "alpha": float(value("adapter.lora.alpha")),
            "passed": True}
