"""What eval.metrics costs: seconds of generation per evaluation against the eval-loss pass, and that it stays out
of train_wall_s (issue 16 item 4).

    PYTHONPATH=. .venv/bin/python bench/evalmetrics.py [--out DIR] [--shapes 4x8,16x32]

Each shape ROWSxTOKENS is one real in-process sft run (LoRA) of a tiny Llama (engine/demo/tinymodel.py) on 64 chat
rows, eval_fraction 0.25, 4 steps, an evaluation every 2 steps with eval.metrics [exact_match, rouge1, bleu],
eval.max_rows ROWS and eval.max_new_tokens TOKENS. Printed per shape: the eval_samples events' seconds (generation
and scoring), the eval events' runtime (the loss pass), wall_s and train_wall_s. Times depend on the CPU's load.
"""
from __future__ import annotations

import os
import sys

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402 - after the sys.path fix above
import json  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

WORDS = ["apple", "river", "stone", "cloud", "green", "seven", "light", "table"]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=None, help="working directory (default: a temporary one)")
    p.add_argument("--shapes", default="4x8,16x32", help="ROWSxTOKENS, comma-separated")
    a = p.parse_args()
    base = Path(a.out or tempfile.mkdtemp(prefix="evalmetrics-"))
    from engine.demo.tinymodel import build_tiny_llama
    from tests.methods_support import config, train

    model = base / "model"
    if not (model / "config.json").exists():
        build_tiny_llama(model)
    data = base / "chat.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"say {w}"},
                                                     {"role": "assistant", "content": f"{w} {w}"}]}) + "\n"
                            for w in WORDS * 8))
    for shape in a.shapes.split(","):
        rows, toks = map(int, shape.split("x"))
        cfg = config(model, data, data={"eval_fraction": 0.25},
                     eval={"metrics": ["exact_match", "rouge1", "bleu"], "max_rows": rows, "max_new_tokens": toks},
                     training={"max_steps": 4, "eval_steps": 2})
        run, ev = train(base / f"runs-{shape}", cfg)
        s = ev["summary"][0]
        print(json.dumps({"max_rows": rows, "max_new_tokens": toks, "rows": [e["rows"] for e in ev["eval_samples"]],
                          "generation_s": [e["seconds"] for e in ev["eval_samples"]],
                          "loss_pass_s": [e["runtime"] for e in ev["eval"]], "wall_s": s["wall_s"],
                          "train_wall_s": s["train_wall_s"]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
