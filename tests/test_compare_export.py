"""Export: the merged model's logits equal the adapter model's, it loads with plain transformers (no peft, no
tunebench), a 4-bit base is dequantised before merging, the adapter-only export loads with PeftModel."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from engine.checkpoints.refs import resolve_ref
from tests.compare_support import trained_run
from tests.conftest import tunebench

TEXT = "<|user|>\nsay apple</s>\n<|assistant|>\n"

# Runs in a fresh interpreter with -I (no PYTHONPATH, no current directory on sys.path) and peft made
# unimportable: what a user's own script on another machine has.
PLAIN_LOAD = """
import json, sys
sys.modules["peft"] = None
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
assert not any(m.startswith(("engine", "tui")) for m in sys.modules)
model = AutoModelForCausalLM.from_pretrained(sys.argv[1])
tok = AutoTokenizer.from_pretrained(sys.argv[1])
ids = tok(sys.argv[2], add_special_tokens=False, return_tensors="pt")["input_ids"]
with torch.no_grad():
    logits = model(input_ids=ids).logits[0]
print(json.dumps({"logits": logits.tolist(), "ids": ids[0].tolist(), "dtype": str(model.dtype), "template": bool(tok.chat_template),
                  "quantized": hasattr(model.config, "quantization_config")}))
"""


@pytest.fixture(scope="session")
def ab(tmp_path_factory, tiny_model, chat_jsonl):
    return trained_run(tmp_path_factory.getbasetemp() / "compare", tiny_model, chat_jsonl)


def adapter_logits(ckpt, base, quant=None):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    kw = {}
    if quant:
        kw["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float32, bnb_4bit_quant_storage=torch.float32)
    base_model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, **kw)
    if quant:  # the 4-bit forward as training computed it (bitsandbytes' CPU inference kernel runs in bf16)
        from engine.training.modeling import cpu_4bit_safe

        cpu_4bit_safe(base_model, exact=True)
    model = PeftModel.from_pretrained(base_model, ckpt)
    ids = AutoTokenizer.from_pretrained(base)(TEXT, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids).logits[0]


def plain_load(path):
    res = subprocess.run([sys.executable, "-I", "-c", PLAIN_LOAD, str(path), TEXT], capture_output=True, text=True,
                         timeout=300, cwd="/")
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.splitlines()[-1])


def test_merged_export_equals_the_adapter_model_and_loads_without_peft(ab, tmp_path):
    import torch

    run = ab["run"]
    out = tmp_path / "merged"
    res = tunebench("export", run.id, "--out", out, "--merge", "--dtype", "float32", runs_dir=ab["runs_dir"])
    assert res.returncode == 0, res.stderr[-2000:]
    assert "exported" in res.stdout and "AutoModelForCausalLM" in res.stdout
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja"} <= names
    assert not names & {"adapter_config.json", "optimizer.pt", "adapter_model.safetensors"}
    meta = json.loads((out / "tunebench_export.json").read_text())
    assert meta["kind"] == "merged" and meta["step"] == 6 and meta["run"] == run.id
    loaded = plain_load(out)
    assert loaded["template"] and loaded["dtype"] == "torch.float32" and not loaded["quantized"]
    expected = adapter_logits(run.checkpoints()[-1].path, ab["model"])
    got = torch.tensor(loaded["logits"])
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()
    # Merging changed the weights: the base model's logits differ from the export's.
    from transformers import AutoModelForCausalLM

    with torch.no_grad():
        ids = torch.tensor([loaded["ids"]])
        base = AutoModelForCausalLM.from_pretrained(ab["model"], dtype=torch.float32)(input_ids=ids).logits[0]
    assert (base - got).abs().max() > 1e-3


def test_4bit_base_is_dequantised_before_merging(ab, tmp_path):
    """A QLoRA checkpoint: the adapter model on the 4-bit base and the merged export agree."""
    import torch

    ckpt = tmp_path / "qlora-ckpt"
    shutil.copytree(ab["run"].checkpoints()[-1].path, ckpt)
    meta = json.loads((ckpt / "tunebench.json").read_text())
    (ckpt / "tunebench.json").write_text(json.dumps({**meta, "quantization": "4bit"}))
    from engine.checkpoints.export import export

    info = export(resolve_ref(str(ckpt)), tmp_path / "q-merged", merge=True, dtype="float32")
    assert info["kind"] == "merged" and info["dequantized_from"] == "4bit"
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "q-merged")
    assert not hasattr(merged.config, "quantization_config")  # the saved config must not claim 4-bit weights
    ids = AutoTokenizer.from_pretrained(tmp_path / "q-merged")(TEXT, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        got = merged(input_ids=ids["input_ids"]).logits[0]
    on_4bit = adapter_logits(ckpt, ab["model"], quant="4bit")
    full = adapter_logits(ckpt, ab["model"])
    assert torch.allclose(got, on_4bit, atol=1e-3), (got - on_4bit).abs().max()
    # ...and it is the 4-bit weights that were merged: closer to the 4-bit model than to the full-precision one.
    assert (got - on_4bit).abs().max() < (got - full).abs().max()


def test_adapter_export_and_refusals(ab, tmp_path):
    import torch

    run = ab["run"]
    out = tmp_path / "adapter"
    res = tunebench("export", f"{run.id}@4", "--out", out, "--json", runs_dir=ab["runs_dir"])
    assert res.returncode == 0, res.stderr[-2000:]
    info = json.loads(res.stdout)
    assert info["kind"] == "adapter" and info["step"] == 4
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= set(info["files"])
    assert not (out / "optimizer.pt").exists()
    ckpt = run.checkpoints_dir / "checkpoint-4"
    assert torch.allclose(adapter_logits(out, ab["model"]), adapter_logits(ckpt, ab["model"]))
    again = tunebench("export", run.id, "--out", out, "--merge", runs_dir=ab["runs_dir"])
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr
    base = tunebench("export", ab["model"], "--out", tmp_path / "b", runs_dir=ab["runs_dir"])
    assert base.returncode == 2 and "base model" in base.stderr
    assert not list(tmp_path.glob(".*partial"))  # a refused export leaves nothing behind
