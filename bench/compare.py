"""Benchmark the A/B comparison engine on a small local Llama: streaming loop vs generate(), shared base vs two models.

    .venv/bin/python bench/compare.py [--hidden 512] [--layers 8] [--tokens 64] [--prompts 4] [--threads N]

Builds a model and two LoRA adapters (random, non-zero) in a temporary directory, then prints:
  1. greedy tokens/s of tunebench's token-by-token loop (engine/generate.py Stream) and of HF generate()
     for the same prompts, and checks both produce the same tokens;
  2. memory (RSS growth) and tokens/s of A/B with one shared base (adapters switched per token) and with
     two separately loaded models.
CPU figures depend on the machine's load: say whether it was idle when you quote them.
"""
from __future__ import annotations

import os
import sys

# bench/ holds inspect.py (the dataset benchmark), which would shadow the standard library's inspect module:
# put the project root first instead of this directory.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse  # noqa: E402
import gc  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402


def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def build(root: Path, hidden: int, layers: int) -> tuple[Path, list[Path]]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from engine.demo.tinymodel import build_tiny_llama

    base = build_tiny_llama(root / "base", hidden=hidden, layers=layers, heads=8, kv_heads=4)
    adapters = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        peft = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                init_lora_weights=False, task_type="CAUSAL_LM"))
        out = root / f"adapter-{seed}"
        peft.save_pretrained(out)
        adapters.append(out)
    return base, adapters


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default); on a busy CPU "
                    "1 thread decoded ~4x faster than 2 here (OpenMP threads wait on each other)")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM

    from engine.checkpoints import generate
    from engine.checkpoints.refs import resolve_ref

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base, (ad1, ad2) = build(root, args.hidden, args.layers)
        words = ["apple", "river", "stone", "cloud", "green", "seven", "light", "table"]
        prompts = [{"messages": [{"role": "user", "content": f"say {w} twice"}]} for w in words[: args.prompts]]
        # A fixed number of tokens: no stop token, so both decoders do the same work.
        dec = generate.Decoding(max_new_tokens=args.tokens)
        print(f"model: Llama hidden {args.hidden}, {args.layers} layers; {args.prompts} prompts x {args.tokens} tokens, "
              f"greedy; torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")

        # 1. the streaming loop against generate() on the base model
        ref = resolve_ref(str(base))
        side, _ = generate.load_pair(ref, ref, "cpu")
        tok = side.tok
        for s in (side,):
            s.model.generation_config.eos_token_id = None  # generate() must not stop early either
        t0 = time.perf_counter()
        ours = []
        for i, p in enumerate(prompts):
            st = generate.Stream(side, generate.encode_prompt(tok, p), dec, i)
            st.stop = set()
            while not st.done:
                st.step()
            ours.append(st.out)
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        theirs = []
        with torch.no_grad():
            for p in prompts:
                ids = torch.tensor([generate.encode_prompt(tok, p)])
                out = side.model.generate(ids, max_new_tokens=args.tokens, min_new_tokens=args.tokens, do_sample=False,
                                          pad_token_id=tok.pad_token_id)
                theirs.append(out[0, ids.shape[1]:].tolist())
        t_hf = time.perf_counter() - t0
        n = args.prompts * args.tokens
        print(f"streaming loop : {n / t_ours:8.1f} tokens/s")
        print(f"HF generate()  : {n / t_hf:8.1f} tokens/s   ratio loop/generate {t_hf / t_ours:.2f}x speed, "
              f"same tokens: {ours == theirs}")
        generate.unload(side)
        del side
        gc.collect()

        # 2. shared base vs two models, A/B interleaved per token
        for label, a_path, b_path in (("shared base (2 adapters)", ad1, ad2),):
            a, b = resolve_ref(str(a_path)), resolve_ref(str(b_path))
            for mode in ("shared", "separate"):
                gc.collect()
                before = rss()
                if mode == "shared":
                    sa, sb = generate.load_pair(a, b, "cpu")
                else:
                    from peft import PeftModel

                    sa = generate.Side("a", a, PeftModel.from_pretrained(
                        AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), str(a_path)).eval(), tok)
                    sb = generate.Side("b", b, PeftModel.from_pretrained(
                        AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), str(b_path)).eval(), tok)
                grown = rss() - before
                t0 = time.perf_counter()
                rows = generate.generate_pair(sa, sb, prompts, dec)
                dt = time.perf_counter() - t0
                toks = sum(r["a_tokens"] + r["b_tokens"] for r in rows)
                print(f"A/B {mode:8s}: RSS +{grown / 2**20:7.1f} MiB after loading, {toks / dt:8.1f} tokens/s (A+B)")
                generate.unload(sa, sb)
                del sa, sb
    return 0


if __name__ == "__main__":
    sys.exit(main())
