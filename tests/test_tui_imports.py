"""The TUI process must not import the ML stack (7-9 s of imports): checked in a fresh interpreter."""
from __future__ import annotations

import json
import subprocess
import sys

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

HEAVY = ("torch", "transformers", "peft", "trl", "datasets", "bitsandbytes", "accelerate")


def test_tui_app_imports_no_ml_stack():
    code = ("import sys, json; import tui.app, tui.helper_client, engine.helper, engine.helper_ops, engine.cli; "
            "import importlib; [importlib.import_module(p.target.split(':')[0]) for p in tui.app.PANES]; "
            "importlib.import_module(tui.app.HEADER.split(':')[0]); "
            "print(json.dumps(sorted(m for m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert not heavy, f"the TUI imported the ML stack: {heavy[:10]}"
    assert "textual" in loaded  # the check ran on the real app module
