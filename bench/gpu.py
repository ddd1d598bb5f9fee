#!/usr/bin/env python
"""Speed, memory and estimate accuracy of tunebench's defaults against plain TRL's, on a GPU (or --cpu).

    .venv/bin/python bench/gpu.py [--models 0.5b,1.5b,8b] [--methods qlora,lora,full] [--steps 30] [--pairs 1]
    .venv/bin/python bench/gpu.py --cpu [--steps 12]          # tiny models, the same harness (bench/cpu.py)

Models are built from configs with random weights (no download) in the shapes of a 0.5B, a 1.5B and an 8B
Llama-class model (Qwen2.5-0.5B/1.5B and Llama-3.1-8B dimensions, Llama layers); the tokenizer is trained on
the data, so its ids are a prefix of the model's vocabulary and the head costs what the real one does.
Each model x method runs where the estimate says it fits: `tunebench train` with its defaults, and
`../shared/bench/plain_trl_sft.py` with TRL's defaults (plus --bf16 and --load-in-4bit where the method needs
them), alternating, on Alpaca rows from ../shared/data. For each run: tokens/s, MFU (model FLOPs: 6N full,
4N + 6N_lora for adapters, causal attention; no recompute counted), peak memory from torch (max allocated)
and NVML (device used minus the idle baseline), or peak RSS on a CPU, and the estimate with its error.
Results are appended to bench/RESULTS.md with the date, device and versions.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# bench/ holds inspect.py, which would shadow the standard library's for everything imported below
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
PEER = ROOT.parent / "shared" / "bench" / "plain_trl_sft.py"
ALPACA = ROOT.parent / "shared" / "data" / "llamafactory" / "alpaca_en_demo.json"
RESULTS = ROOT / "bench" / "RESULTS.md"
GIB = 2**30

SHAPES = {  # name: (hidden, intermediate, layers, heads, kv heads, vocab, tied)
    "0.5b": (896, 4864, 24, 14, 2, 151936, True),
    "1.5b": (1536, 8960, 28, 12, 2, 151936, True),
    "8b": (4096, 14336, 32, 32, 8, 128256, False),
    "tiny-s": (128, 352, 2, 4, 2, 2048, False),  # CPU mode
    "tiny-m": (256, 688, 4, 8, 4, 2048, False),
}
SETTINGS = {"gpu": dict(batch=8, max_length=512, lr=1e-4), "cpu": dict(batch=8, max_length=256, lr=1e-3)}


def make_data(out: Path) -> list[str]:
    rows = json.loads(ALPACA.read_text(encoding="utf-8"))
    texts = []
    with open(out, "w", encoding="utf-8") as f:
        for r in rows:  # the peer's own Alpaca conversion, so both read the same conversations
            prompt = r["instruction"] + (("\n\n" + r["input"]) if r.get("input") else "")
            f.write(json.dumps({"messages": [{"role": "user", "content": prompt},
                                             {"role": "assistant", "content": r["output"]}]}) + "\n")
            texts += [prompt, r["output"]]
    return texts


def build_model(name: str, out: Path, texts: list[str], cuda: bool) -> Path:
    """Random weights in the named shape, saved with save_pretrained (bf16 on a GPU, fp32 on a CPU)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from engine.demo.tinymodel import build_tokenizer

    h, i, layers, heads, kv, vocab, tied = SHAPES[name]
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(out, texts, vocab_size=min(vocab, 8000))
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=h, intermediate_size=i, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv, tie_word_embeddings=tied,
                      max_position_embeddings=4096, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    with torch.device("cuda" if cuda else "cpu"):  # initialising 8B on the GPU takes seconds, not minutes
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16 if cuda else torch.float32)
    model.save_pretrained(out)
    del model
    if cuda:
        torch.cuda.empty_cache()
    return out


class NvmlPeak:
    """Samples the device's used memory every 50 ms while a run goes; peak minus the idle baseline."""

    def __init__(self):
        from engine.system.telemetry import Nvml

        self.nvml = Nvml()
        self.base = self._used() or 0
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def _used(self):
        devs = self.nvml.devices()
        return devs[0]["mem_used"] if devs else None

    def _loop(self):
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self._used() or 0)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()

    @property
    def bytes(self):
        return max(0, self.peak - self.base) if self.nvml.available else None


def run_child(cmd: list[str], env: dict) -> tuple[str, str, int, int]:
    """(stdout, stderr, return code, peak RSS of that child in bytes) via wait4, so runs do not mix."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=ROOT, env=env, text=True)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return out.read(), err.read(), p.returncode, usage.ru_maxrss * 1024


def run_peer(model: Path, data: Path, method: str, a, s: dict, env: dict) -> dict:
    cmd = [sys.executable, str(PEER), "--model", str(model), "--data", str(data), "--steps", str(a.steps),
           "--batch-size", str(s["batch"]), "--max-length", str(s["max_length"]), "--lr", str(s["lr"]),
           "--lora-r", "0" if method == "full" else "16", "--device", "cpu" if a.cpu else "cuda"]
    if not a.cpu:
        cmd += ["--bf16"] + (["--load-in-4bit"] if method == "qlora" else [])
    with NvmlPeak() as nv:
        out, err, rc, rss = run_child(cmd, env)
    line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    if rc or not line:
        return {"error": (err or out)[-600:]}
    r = json.loads(line[-1][7:])
    return {"tokens_per_s": r["tokens_per_s"], "num_tokens": r["num_tokens"], "peak_torch": r["peak_cuda_bytes"],
            "peak_nvml": nv.bytes, "peak_rss": rss, "losses": r["losses"], "precision": "bf16" if "--bf16" in cmd
            else "fp32", "gradient_checkpointing": False}


def tb_config(model: Path, data: Path, method: str, a, s: dict, work: Path) -> Path:
    import yaml

    cfg = {"model": {"name_or_path": str(model), "quantization": "4bit" if method == "qlora" else "none"},
           "adapter": {"kind": "none" if method == "full" else "lora", "r": 16, "alpha": 32, "dropout": 0.0},
           "data": {"train": str(data), "max_length": s["max_length"], "loss_on": "all"},
           "training": {"max_steps": a.steps, "batch_size": s["batch"], "learning_rate": s["lr"]},
           "hardware": {"device": "cpu" if a.cpu else "cuda"}}
    path = work / f"tb-{model.name}-{method}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_tunebench(cfg: Path, work: Path, env: dict) -> dict:
    from engine.rundir.runs import list_runs

    runs = work / "runs"
    env = {**env, "TUNEBENCH_RUNS_DIR": str(runs), "TUNEBENCH_CACHE_DIR": str(work / "cache")}
    before = {r.id for r in list_runs(runs)} if runs.exists() else set()
    with NvmlPeak() as nv:
        out, err, rc, rss = run_child([sys.executable, "-m", "tunebench", "train", str(cfg)], env)
    new = [r for r in list_runs(runs) if r.id not in before] if runs.exists() else []
    if not new:
        return {"error": (err or out)[-600:] or f"tunebench train exited {rc} without a run"}
    st = new[0].status()
    if st.get("state") != "completed":
        return {"error": (st.get("error") or err)[-600:]}
    sm = st["summary"]
    return {"tokens_per_s": sm["tokens_per_s"], "num_tokens": sm["num_tokens"], "peak_torch": sm.get("peak_cuda_bytes"),
            "peak_nvml": nv.bytes, "peak_rss": sm.get("peak_rss_bytes"), "precision": st["resolved"]["precision"],
            "gradient_checkpointing": st["resolved"]["gradient_checkpointing"], "resolved": st["resolved"],
            "predicted": st.get("predicted_peak_bytes"), "predicted_alloc": st.get("predicted_peak_allocated_bytes")}


def model_flops_per_s(r: dict, cfg_path: Path, gpu) -> tuple[float, float | None]:
    """(model FLOP/s, MFU): FLOPs a token without recompute x tokens/s, over the peak of the run's precision."""
    from engine import config as cfgmod
    from engine.planning import estimate as E

    cfg = cfgmod.load_config(cfg_path)
    resolved = r.get("resolved") or {"device": "cuda" if gpu else "cpu", "precision": r["precision"],
                                     "dtype": "bfloat16" if r["precision"] == "bf16" else "float32",
                                     "gradient_checkpointing": r["gradient_checkpointing"],
                                     "optimizer": "adamw_torch_fused", "attn_implementation": "sdpa"}
    est = E.estimate(cfg, gpu=gpu, resolved=resolved, tokens_per_row=r["tokens_per_row"])
    flops = est["flops_per_token"] * r["tokens_per_s"]
    peak = gpu.peak(r["precision"]) if gpu else None
    return flops, (flops / peak if peak else None)


def gib(b):
    return f"{b / GIB:.2f}" if b else "-"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu", action="store_true", help="tiny models on this CPU (the same harness)")
    p.add_argument("--models", help="comma list of " + ", ".join(SHAPES))
    p.add_argument("--methods", help="comma list of qlora, lora, full")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--pairs", type=int, default=1)
    p.add_argument("--no-append", action="store_true", help="print the table without appending to RESULTS.md")
    a = p.parse_args(argv)
    if not PEER.exists() or not ALPACA.exists():
        print("bench/gpu.py needs ../shared (the peer script and the Alpaca data)")
        return 1
    import peft
    import torch
    import transformers  # noqa: E401 - versions for the record
    import trl

    from engine import config as cfgmod
    from engine.planning.verdict import verdict
    from engine.system.gpus import find_gpu

    if not a.cpu and not torch.cuda.is_available():
        print("no CUDA GPU visible: run with --cpu, or on a GPU machine")
        return 1
    a.steps = a.steps or (12 if a.cpu else 30)
    s = SETTINGS["cpu" if a.cpu else "gpu"]
    models = (a.models or ("tiny-s,tiny-m" if a.cpu else "0.5b,1.5b,8b")).split(",")
    methods = (a.methods or ("lora,full" if a.cpu else "qlora,lora,full")).split(",")
    device = (f"CPU {platform.processor() or platform.machine()} x{os.cpu_count()}" if a.cpu
              else torch.cuda.get_device_name())
    gpu = None if a.cpu else find_gpu(device)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    if a.cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    versions = (f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, "
                f"peft {peft.__version__}")
    if not a.cpu:
        import bitsandbytes

        versions += f", bitsandbytes {bitsandbytes.__version__}, CUDA {torch.version.cuda}"
    rows_out = []
    with tempfile.TemporaryDirectory(prefix="tb-bench-") as tmp:
        work = Path(tmp)
        data = work / "alpaca.jsonl"
        texts = make_data(data)
        for name in models:
            model = build_model(name, work / name, texts, cuda=not a.cpu)
            for method in methods:
                cfg_path = tb_config(model, data, method, a, s, work)
                free = None if a.cpu else torch.cuda.mem_get_info()[0]
                v = verdict(cfgmod.load_config(cfg_path), free, gpu=gpu)
                if v["verdict"] == "does_not_fit":
                    rows_out.append((name, method, "both", None, f"skipped: {v['message']}"))
                    print(f"{name} {method}: skipped, {v['message']}", flush=True)
                    continue
                for i in range(a.pairs):
                    order = ("trl", "tunebench") if i % 2 == 0 else ("tunebench", "trl")
                    for who in order:
                        r = run_peer(model, data, method, a, s, env) if who == "trl" else run_tunebench(cfg_path, work, env)
                        if "error" not in r:
                            r["tokens_per_row"] = r["num_tokens"] / (a.steps * s["batch"])
                            r["flops"], r["mfu"] = model_flops_per_s(r, cfg_path, gpu)
                        rows_out.append((name, method, who, r, None))
                        print(name, method, who, {k: v for k, v in (r or {}).items() if k not in ("losses", "resolved")},
                              flush=True)
            import shutil

            shutil.rmtree(work / name, ignore_errors=True)
    text = report(rows_out, device, versions, a, s)
    print(text)
    if not a.no_append:
        with open(RESULTS, "a", encoding="utf-8") as f:
            f.write("\n" + text)
    return 0


def report(rows, device, versions, a, s) -> str:
    mem = "peak RSS GiB" if a.cpu else "peak torch GiB | peak NVML GiB"
    lines = [f"## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {device}", "",
             f"`bench/gpu.py{' --cpu' if a.cpu else ''} --steps {a.steps} --pairs {a.pairs}`; {versions}; batch "
             f"{s['batch']}, max_length {s['max_length']}, Alpaca rows (../shared/data), LoRA r 16 all-linear.", "",
             f"| model | method | runner | tokens/s | {'GFLOP/s' if a.cpu else 'MFU'} | {mem} | predicted GiB | error |",
             "|---|---|---|---:|---:|" + ("---:|" if a.cpu else "---:|---:|") + "---:|---:|"]
    by = {}
    for name, method, who, r, note in rows:
        if note:
            lines.append(f"| {name} | {method} | - | {note} |")
            continue
        if "error" in r:
            lines.append(f"| {name} | {method} | {who} | failed: {r['error'][-120:].strip()!r} |")
            continue
        by.setdefault((name, method), {}).setdefault(who, []).append(r)
        measured = r["peak_rss"] if a.cpu else r["peak_torch"]
        pred = r.get("predicted") if a.cpu else r.get("predicted_alloc")
        err = f"{pred / measured - 1:+.1%}" if pred and measured else "-"
        m = f"{r['mfu']:.1%}" if r.get("mfu") else f"{r['flops'] / 1e9:.2f}"
        memcols = gib(r["peak_rss"]) if a.cpu else f"{gib(r['peak_torch'])} | {gib(r['peak_nvml'])}"
        lines.append(f"| {name} | {method} | {who} | {r['tokens_per_s']:.0f} | {m} | {memcols} | {gib(pred)} | {err} |")
    lines.append("")
    for (name, method), rs in by.items():
        if "trl" in rs and "tunebench" in rs:
            sp = statistics.median(x["tokens_per_s"] for x in rs["tunebench"]) / statistics.median(
                x["tokens_per_s"] for x in rs["trl"])
            key = "peak_rss" if a.cpu else "peak_torch"
            pm = statistics.median(x[key] for x in rs["tunebench"]) / statistics.median(x[key] for x in rs["trl"])
            lines.append(f"- {name} {method}: tunebench / TRL defaults: tokens/s x{sp:.2f} (goal >= 1.3), "
                         f"peak memory x{pm:.2f} (goal <= 1.0)")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
