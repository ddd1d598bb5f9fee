"""Export formats on a tiny model llama.cpp converts: GGUF f16 and q8_0 read back and give the merged model's greedy
tokens, a LoRA adapter as a GGUF adapter, Ollama's Modelfile template renders like the chat template (through Go's
own text/template), vLLM gets a merged model when the adapter has modules_to_save, refusals come before writing.

The tiny model has a Llama-style vocabulary (llama.cpp's byte-level path only knows published tokenizers) and an
MLP of 128 (q8_0 blocks are 32 wide). llama.cpp's converter comes from the llama-cpp-python sdist on PyPI
(fetched once into a cache kept between test sessions, ~/.cache/tunebench-tests) or TUNEBENCH_LLAMA_CPP.
Exports run in-process (the test has the ML stack loaded already) except where the CLI itself is the point.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from engine.checkpoints.export import export
from engine.checkpoints.refs import resolve_ref
from tests.conftest import ROOT, tunebench, write_config

pytest.importorskip("gguf", reason="GGUF export needs the `export` extra (the test extra has it)")

PROMPTS = ["say apple", "say stone", "say river", "say cloud"]
GO = ROOT / "tests" / "gotemplate"


@pytest.fixture(scope="session")
def gg_run(tmp_path_factory, chat_jsonl):
    """A completed LoRA run on a GGUF-friendly tiny Llama: {"runs_dir", "run", "model"}."""
    from engine.demo.tinymodel import build_tiny_llama
    from engine.rundir.runs import list_runs

    if not os.environ.get("TUNEBENCH_LLAMA_CPP"):  # fetch llama.cpp's converter once per machine, not per session
        from engine.checkpoints import gguf as gg

        keep = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tunebench-tests"
        prev = os.environ.get("TUNEBENCH_CACHE_DIR")
        os.environ["TUNEBENCH_CACHE_DIR"] = str(keep)
        try:
            os.environ["TUNEBENCH_LLAMA_CPP"] = str(gg.converter())
        finally:
            os.environ["TUNEBENCH_CACHE_DIR"] = prev or ""
    base = tmp_path_factory.mktemp("gguf")
    model = build_tiny_llama(base / "model", tokenizer="llama", intermediate=128)
    cfg = write_config(base / "cfg.yaml", model, chat_jsonl, name="gg", data={"eval_fraction": 0.125},
                       training={"max_steps": 8, "save_steps": 0, "learning_rate": 1e-2, "batch_size": 8},
                       hardware={"device": "cpu"})
    res = tunebench("train", cfg, runs_dir=base / "runs")
    assert res.returncode == 0, res.stderr[-2000:]
    (run,) = list_runs(base / "runs")
    return {"runs_dir": base / "runs", "run": run, "model": model}


def greedy(model, tok, n=8):
    import torch

    out = []
    for p in PROMPTS:
        ids = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, return_dict=True,
                                      return_tensors="pt")["input_ids"]
        with torch.no_grad():
            gen = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False, pad_token_id=0)
        out.append(gen[0, ids.shape[1]:].tolist())
    return out


def test_gguf_f16_and_q8_0_give_the_merged_models_greedy_tokens(gg_run, tmp_path):
    """f16: the same tokens on every prompt. q8_0 (8-bit blocks): the same first 4 tokens on at least 3 of 4
    prompts. Checked here again, independently of the export's own check, against a merged safetensors export."""
    import gguf
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run, runs_dir = gg_run["run"], gg_run["runs_dir"]
    ref = resolve_ref(run.id, runs_dir)
    merged = tmp_path / "merged"
    export(ref, merged, merge=True, dtype="float32")
    tok = AutoTokenizer.from_pretrained(merged)
    want = greedy(AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32), tok)
    out = tmp_path / "gguf-f16"  # through the real command once
    res = tunebench("export", run.id, "--out", out, "--format", "gguf", "--quant", "f16", "--json", runs_dir=runs_dir)
    assert res.returncode == 0, res.stderr[-3000:]
    infos = {"f16": json.loads(res.stdout)}
    infos["q8_0"] = export(ref, tmp_path / "gguf-q8_0", fmt="gguf", quant="q8_0")
    for quant, info in infos.items():
        out = tmp_path / f"gguf-{quant}"
        assert info["kind"] == "gguf" and info["files"] == [f"model-{quant}.gguf", "tunebench_export.json"]
        assert info["verified"]["passed"] and info["architecture"] == "LlamaForCausalLM"
        loaded = AutoModelForCausalLM.from_pretrained(out, gguf_file=f"model-{quant}.gguf", dtype=torch.float32)
        got = greedy(loaded, tok)
        if quant == "f16":
            assert got == want
        else:
            assert sum(g[:4] == w[:4] for g, w in zip(got, want)) >= 3, (got, want)
        # Quantised weights really are in the file (not f32 written under another name).
        types = {t.tensor_type.name for t in gguf.GGUFReader(str(out / f"model-{quant}.gguf")).tensors}
        assert ("F16" if quant == "f16" else "Q8_0") in types
    assert not list(tmp_path.glob(".*partial"))


def go_render(template: str, messages: list[dict], tmp_path: Path) -> str:
    (tmp_path / "t.tmpl").write_text(template)
    data = {"Messages": [{"Role": m["role"], "Content": m["content"]} for m in messages]}
    res = subprocess.run(["go", "run", ".", str(tmp_path / "t.tmpl")], input=json.dumps(data), capture_output=True,
                         text=True, cwd=GO, timeout=300, env={**__import__("os").environ, "GOFLAGS": "-mod=mod"})
    assert res.returncode == 0, res.stderr
    return res.stdout


CONVERSATIONS = [
    [{"role": "user", "content": "say apple"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "say {{ stone }}"},
     {"role": "assistant", "content": "stone stone"}, {"role": "user", "content": "and\nriver?"}],
]


@pytest.mark.skipif(shutil.which("go") is None, reason="Go's text/template renders the TEMPLATE (.ci/run installs golang-go)")
def test_ollama_modelfile_template_renders_like_the_chat_template(gg_run, tmp_path):
    from transformers import AutoTokenizer

    run, runs_dir = gg_run["run"], gg_run["runs_dir"]
    out = tmp_path / "ollama"
    info = export(resolve_ref(run.id, runs_dir), out, fmt="ollama", quant="q8_0", name="tiny", run_ollama=False)
    assert info["run_command"].startswith(f"ollama create tiny -f {out / 'Modelfile'}") and info["verified"]["passed"]
    modelfile = (out / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./model-q8_0.gguf\n") and 'PARAMETER stop "</s>"' in modelfile
    template = modelfile.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    tok = AutoTokenizer.from_pretrained(gg_run["model"])
    for conv in CONVERSATIONS:
        assert go_render(template, conv, tmp_path) == tok.apply_chat_template(conv, add_generation_prompt=True,
                                                                             tokenize=False)


QWEN_LIKE = (  # a default system text when none is given: it becomes SYSTEM, which Ollama puts first as a message
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are Tiny.<|im_end|>\\n' }}{%- endif %}"
    "{%- for m in messages %}{%- if not (m.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")
LLAMA31_LIKE = (  # a system header always, empty text by default: the TEMPLATE writes it itself
    "{{- bos_token }}{%- if messages[0]['role'] == 'system' %}{%- set sys = messages[0]['content'] %}"
    "{%- set messages = messages[1:] %}{%- else %}{%- set sys = '' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\nCutting Knowledge Date: December 2023\\n\\n' + sys + '<|eot_id|>' }}"
    "{%- for m in messages %}{{- '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] + '<|eot_id|>' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}")


@pytest.mark.skipif(shutil.which("go") is None, reason="Go's text/template renders the TEMPLATE (.ci/run installs golang-go)")
@pytest.mark.parametrize("template,system,stop", [(QWEN_LIKE, "You are Tiny.", "<|im_end|>"),
                                                  (LLAMA31_LIKE, None, "<|eot_id|>")], ids=["qwen-like", "llama31-like"])
def test_modelfile_of_a_template_that_writes_its_own_system_turn(tmp_path, template, system, stop):
    from engine.checkpoints.modelfile import modelfile
    from engine.checkpoints.template import derive
    from engine.demo.tinymodel import build_tokenizer

    tok = build_tokenizer(tmp_path / "tok")
    tok.chat_template = template
    shape = derive(lambda m, g: tok.apply_chat_template(m, add_generation_prompt=g, tokenize=False))
    text = modelfile("m.gguf", shape, ["</s>"])
    assert (f'SYSTEM """{system}"""' in text) == bool(system) and f'PARAMETER stop "{stop}"' in text
    body = text.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    for conv in CONVERSATIONS:
        shown = conv if conv[0]["role"] == "system" or not system else [{"role": "system", "content": system}, *conv]
        assert go_render(body, shown, tmp_path) == tok.apply_chat_template(conv, add_generation_prompt=True,
                                                                          tokenize=False)


def test_lora_adapter_as_a_gguf_adapter(gg_run, tmp_path):
    import gguf

    run, runs_dir = gg_run["run"], gg_run["runs_dir"]
    out = tmp_path / "lora"
    info = export(resolve_ref(run.id, runs_dir), out, fmt="gguf-lora")
    cfg = json.loads((Path(resolve_ref(run.id, runs_dir).path) / "adapter_config.json").read_text())
    assert info["verified"]["alpha"] == cfg["lora_alpha"] and info["verified"]["modules"] > 0
    reader = gguf.GGUFReader(str(out / "adapter-f16.gguf"))
    names = [t.name for t in reader.tensors]
    assert len(names) == 2 * info["verified"]["modules"] and all(n.endswith((".lora_a", ".lora_b")) for n in names)


def test_vllm_export_of_an_adapter_with_modules_to_save_is_a_merged_model(gg_run, tmp_path):
    """A vocabulary resize saves embed_tokens/lm_head whole (modules_to_save), which vLLM refuses: the export
    merges instead, says why, and the merged model gives the adapter model's logits."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir = gg_run["model"]
    tok = AutoTokenizer.from_pretrained(base_dir)
    tok.add_special_tokens({"additional_special_tokens": ["<|call|>", "<|result|>"]})
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model.resize_token_embeddings(len(tok))
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                  modules_to_save=["embed_tokens", "lm_head"], init_lora_weights=False))
    ckpt = tmp_path / "resized-adapter"
    peft_model.save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    ids = tok("say <|call|> apple", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = peft_model(input_ids=ids).logits[0]

    refused = tunebench("export", ckpt, "--out", tmp_path / "no", "--format", "gguf-lora", runs_dir=gg_run["runs_dir"])
    assert refused.returncode == 2 and "modules_to_save" in refused.stderr and not (tmp_path / "no").exists()
    info = export(resolve_ref(str(ckpt), gg_run["runs_dir"]), tmp_path / "vllm", fmt="vllm")
    assert info["kind"] == "merged" and "modules_to_save" in info["note"] and "vLLM only supports" in info["note"]
    assert info["run_command"] == f"vllm serve {tmp_path / 'vllm'}"
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "vllm", dtype=torch.float32)
    assert merged.config.vocab_size == len(tok) and len(AutoTokenizer.from_pretrained(tmp_path / "vllm")) == len(tok)
    with torch.no_grad():
        got = merged(input_ids=ids).logits[0]
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()


def test_a_plain_lora_adapter_goes_to_vllm_as_an_adapter(gg_run, tmp_path):
    run, runs_dir = gg_run["run"], gg_run["runs_dir"]
    info = export(resolve_ref(run.id, runs_dir), tmp_path / "v", fmt="vllm", name="tiny")
    assert info["kind"] == "adapter" and "note" not in info
    assert info["run_command"] == f"vllm serve {gg_run['model']} --enable-lora --lora-modules tiny={tmp_path / 'v'}"


def test_vllm_rules_and_refusals(tmp_path):
    from engine.checkpoints import gguf as gg
    from engine.checkpoints.vllm import adapter_problems, serve_command

    assert adapter_problems({"peft_type": "LORA", "r": 16, "bias": "none"}) == []
    assert len(adapter_problems({"peft_type": "LORA", "r": 8, "use_dora": True, "modules_to_save": ["lm_head"]})) == 2
    assert "--max-lora-rank 64" in serve_command("base", "/a", "x", {"r": 48})
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({"architectures": ["NoSuchNetForCausalLM"]}))
    conv = tmp_path / "conv"
    (conv / "conversion").mkdir(parents=True)
    (conv / "conversion" / "__init__.py").write_text('TEXT_MODEL_MAP = {\n  "LlamaForCausalLM": "llama",\n}\n')
    with pytest.raises(gg.ExportError, match="no support for NoSuchNetForCausalLM"):
        gg.check_architecture(str(tmp_path / "m"), conv)


def test_gguf_export_from_the_checkpoints_pane_shows_its_phases(gg_run, tmp_path):
    """e on the final model, GGUF q8_0 in the Export screen: the helper's phases (converting, checking) show as
    they come, and the screen ends with what was written and how it was checked."""
    import asyncio

    from textual.widgets import Select

    from tui.app import TuneBench
    from tui.screens.export import ExportScreen

    run = gg_run["run"]
    out = tmp_path / "from-pane"
    seen: dict = {"log": []}

    async def body():
        app = TuneBench(runs_dir=gg_run["runs_dir"])
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("5")
            await pilot.pause()
            pane = app.pane("checkpoints")
            pane.query_one("#models").move_cursor(row=list(pane.entries).index(str(run.path)))
            await pilot.press("e")
            await pilot.pause()
            scr = app.screen
            assert isinstance(scr, ExportScreen)
            scr.query_one("#export-out").value = str(out)
            scr.query_one("#export-format", Select).value = "gguf"
            scr.query_one("#export-quant", Select).value = "q8_0"
            await pilot.click("#export-go")
            for _ in range(4800):
                await pilot.pause(0.1)
                line = str(scr.query_one("#export-log").render())
                if not seen["log"] or seen["log"][-1] != line:
                    seen["log"].append(line)
                if scr.result is not None or "failed" in line:
                    break
            seen["result"] = scr.result

    asyncio.run(body())
    assert seen["result"] and seen["result"]["kind"] == "gguf" and seen["result"]["quant"] == "q8_0", seen["log"][-3:]
    assert any(line.startswith("converting") for line in seen["log"]), seen["log"]
    assert "checked with" in seen["log"][-1] and str(out) in seen["log"][-1]
    assert (out / "model-q8_0.gguf").exists()


def test_gguf_without_the_export_extra_is_refused_before_writing(gg_run, tmp_path):
    import sys

    code = ("import sys; sys.modules['gguf'] = None; from tunebench.cli import main; "
            f"sys.exit(main(['export', {gg_run['run'].id!r}, '--out', {str(tmp_path / 'g')!r}, '--format', 'gguf']))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env={**os.environ, "TUNEBENCH_RUNS_DIR": str(gg_run["runs_dir"])})
    assert res.returncode == 2 and "pip install 'tunebench[export]'" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "g").exists() and not list(tmp_path.glob(".*partial"))
