"""The TUI process must not import the ML stack (7-9 s of imports): checked in a fresh interpreter."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

HEAVY = ("torch", "transformers", "peft", "trl", "datasets", "bitsandbytes", "accelerate")


def test_tui_app_imports_no_ml_stack():
    code = ("import sys, json; import tui.app, tui.helper_client, engine.helper.server, tunebench.cli, "
            "engine.demo.workspace; tunebench.cli.build_parser(); "
            "import importlib; [importlib.import_module(p.target.split(':')[0]) for p in tui.app.PANES]; "
            "importlib.import_module(tui.app.HEADER.split(':')[0]); "
            "print(json.dumps(sorted(m for m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert not heavy, f"the TUI imported the ML stack: {heavy[:10]}"
    assert "textual" in loaded  # the check ran on the real app module


def test_a_running_workbench_stays_light(tmp_path):
    """Every pane shown, a data file previewed and inspected (in the helper): still no ML stack in the TUI."""
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                                     {"role": "assistant", "content": f"a{i}"}]}) + "\n"
                            for i in range(20)))
    code = f"""
import asyncio, json, sys
from tui.app import TuneBench, PANES
async def main():
    app = TuneBench(runs_dir={str(tmp_path / 'runs')!r}, workdir={str(tmp_path)!r}, dataset={str(data)!r})
    async with app.run_test(size=(120, 36)) as pilot:
        for spec in PANES:
            await pilot.press(spec.binding)
            await pilot.pause(0.2)
        pane = await app.ensure_pane("dataset")
        for _ in range(600):
            if pane.report is not None:
                break
            await pilot.pause(0.1)
        assert pane.report is not None, "no inspection"
asyncio.run(main())
print(json.dumps(sorted(sys.modules)))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert not heavy, f"the running TUI imported the ML stack: {heavy[:10]}"
    # the Sweeps pane reads sweeps from their files: Optuna (SQLAlchemy, numpy, scipy) stays in the scheduler
    assert not {"optuna", "sqlalchemy"} & loaded
