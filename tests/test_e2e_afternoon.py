"""A new user's afternoon, end to end in tmux at 80x24 (issue 22's "Must show"), only through keys, on the real
`tunebench demo`: Hyperparameters with Down held over every key (nothing changes), launch, then in Monitor pause,
save, evaluate, resume and stop (each state on screen is the engine's, read from status.json at that moment),
then in Checkpoints pick A and B, compare, export the checkpoint as safetensors, and quit."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import pytest

from engine import config as cfgmod
from engine.rundir.runs import Run, list_runs
from tests.test_e2e_demo import BIN, Tmux
from tui.widgets.charts import fmt_num

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not shutil.which("tmux"), reason="needs tmux")]
SIZE = (80, 24)
LONG = 300.0  # seconds: a generous bound on anything a loaded 2-core machine does here (never a timing check)


class Keys(Tmux):
    """The demo's Tmux driver plus a burst of keys in one send (a key held down) and literal text."""

    def burst(self, key: str, times: int) -> None:
        subprocess.run(["tmux", *self.socket, "send-keys", "-t", self.name, *[key] * times], check=True)

    def type(self, text: str) -> None:
        subprocess.run(["tmux", *self.socket, "send-keys", "-t", self.name, "-l", text], check=True)
        time.sleep(0.3)

    def until(self, pred, what: str, timeout: float = LONG):
        """Poll pred(screen) until truthy and return it; on timeout the message carries the screen."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            value = pred(self.screen())
            if value:
                return value
            time.sleep(0.25)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; the screen shows:\n{self.screen()}")


def head(screen: str, run_id: str) -> tuple[str, int] | None:
    """(state, step) from the Monitor's head line `<run id>  <state>   step N / M` (a line of its own: toasts and
    the Runs table never start a line with the run id)."""
    m = re.search(rf"^{re.escape(run_id)}\s+([a-z]+)\s+step (\d+)", screen, re.M)
    return (m.group(1), int(m.group(2))) if m else None


def shows_state(tmux: Keys, run: Run, want: str, timeout: float = LONG) -> tuple[str, int]:
    """Wait until the Monitor shows `want`, then check that the engine is in that state (status.json and the
    engine's liveness, read after the screen: a state shown is never one the engine is not in)."""
    screen = tmux.until(lambda s: head(s, run.id) and head(s, run.id)[0] == want and s, f"the Monitor to show {want}",
                        timeout)
    status = run.status()
    assert run.state(status) == want, f"the screen shows {want}, status.json says {status.get('state')}:\n{screen}"
    return screen, int(status.get("step") or 0)


def events(run: Run, kind: str) -> list[dict]:
    out = []
    for line in run.events_path.read_text(encoding="utf-8").splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue  # a line being written
        if e.get("kind") == kind:
            out.append(e)
    return out


def test_a_new_users_afternoon_at_80x24(tmp_path):
    work = tmp_path / "demo"
    exported = tmp_path / "exports" / "numbers-merged"
    tmux = Keys(f"{BIN} demo --dir {work}", tmp_path, size=SIZE)
    run = None
    try:
        tmux.wait_for("1 Runs", "No runs yet", timeout=LONG)  # the model is built first
        assert tmux.screen().splitlines()[1].rstrip().endswith("8 Sweeps"), tmux.screen()  # every tab at 80 columns

        # 1. Hyperparameters: the demo's preset; Down held over every key of the list changes nothing.
        tmux.keys("3")
        tmux.wait_for("method", "sft", "numbers", "^l Launch")
        sections = [s for s in cfgmod.SCHEMA if cfgmod.SCHEMA[s]]
        last = f"{sections[-1]}.{list(cfgmod.SCHEMA[sections[-1]])[-1]}"
        rows = sum(len(f) + 1 for f in cfgmod.SCHEMA.values())
        tmux.burst("Down", rows + 5)
        tmux.until(lambda s: f" {last}  (" in s, f"the editor to reach the last key, {last}")  # every Down handled

        # 2. Launch: the run starts and the Monitor (where launching leads) and Runs show it.
        tmux.keys("C-l")
        run = Run(tmux.until(lambda s: next(iter(list_runs(work / "runs")), None), "the run directory").path)
        shows_state(tmux, run, "running")
        preset = cfgmod.load_config(work / "presets" / "demo.yaml").to_dict()
        launched = run.settings().to_dict()
        moved = {f"{s}.{k}": (launched[s][k] if s else launched[k], preset[s][k] if s else preset[k])
                 for s, fields in cfgmod.SCHEMA.items() for k in fields
                 if (launched[s][k] if s else launched[k]) != (preset[s][k] if s else preset[k])}
        assert not moved, f"moving through the keys changed the config (launched, preset): {moved}"
        tmux.keys("1")
        tmux.until(lambda s: any(run.id[:20] in ln and ("running" in ln or "paused" in ln) for ln in s.splitlines()),
                   "the run in Runs")
        tmux.keys("4")
        tmux.until(lambda s: head(s, run.id), "the Monitor again")

        # 3. Monitor: pause, save, evaluate (both while paused, at the paused step), resume, stop.
        tmux.keys("p")
        screen, step = shows_state(tmux, run, "paused")
        assert head(screen, run.id)[1] == step, f"the screen's step is not status.json's {step}:\n{screen}"
        tmux.keys("s")
        ckpt = run.checkpoints_dir / f"checkpoint-{step}"
        tmux.until(lambda s: ckpt.is_dir() and run.status().get("last_checkpoint_step") == step,
                   f"checkpoint-{step} saved")
        screen, now = shows_state(tmux, run, "paused")
        assert now == step and head(screen, run.id)[1] == step, f"a step was trained while paused:\n{screen}"
        tmux.keys("e")
        ev = tmux.until(lambda s: next((e for e in events(run, "eval") if e.get("step") == step), None),
                        f"an eval event at step {step}")
        tmux.wait_for(f"eval loss {fmt_num(ev['loss'])} @ step {step}")
        screen, now = shows_state(tmux, run, "paused")
        assert now == step, f"a step was trained while paused:\n{screen}"
        tmux.keys("p")
        shows_state(tmux, run, "running")
        tmux.keys("x")
        tmux.wait_for(f"Stop {run.id} at step", "Yes [y]", "No [n]")
        tmux.keys("y")
        screen, stopped_at = shows_state(tmux, run, "stopped")
        final = run.status().get("final_checkpoint")
        assert final and (run.checkpoints_dir / final / "config.json").exists(), run.status()

        # 4. Checkpoints: B the base model, A the checkpoint saved while paused; compare on 16 tokens.
        tmux.keys("5")
        tmux.wait_for("base model", f"{run.id} final", f"{run.id}/checkpoint-{step}")
        tmux.burst("Up", 10)  # the first row: the base model
        tmux.keys("b")
        tmux.wait_for("B: base model", "A: (a picks")
        tmux.burst("Down", 10)  # the last row: the run's oldest checkpoint, the one saved while paused
        tmux.keys("a")
        tmux.wait_for(f"A: {run.id}/checkpoint-{step}", "B: base model")
        tmux.keys("Tab", "Tab", "C-e", "C-u")  # the tokens field: 16 tokens keep the comparison short on a CPU
        tmux.type("16")
        tmux.keys("Escape")
        tmux.keys("c")
        tmux.wait_for(f"A: {run.id}/checkpoint-{step}", "B: base model", "16 tokens")  # the comparison screen
        tmux.until(lambda s: re.search(r"^ ?\[\d/8\] write \d+ in words", s, re.M), "the first prompt")
        screen = tmux.until(lambda s: any(ln.strip() == "done" for ln in s.splitlines()) and s,
                            "the comparison to finish")
        assert "A: eval loss" in screen and "B: eval loss" in screen, screen
        tmux.keys("Escape")
        tmux.wait_for("a/b pick A/B", f"A: {run.id}/checkpoint-{step}")

        # 5. Export the checkpoint (the selected row) as merged safetensors into a folder of our own.
        tmux.keys("e")
        tmux.wait_for(f"Export {run.id}/checkpoint-{step}", "Output directory", "safetensors")
        # The dialog focuses its path field once mounted (select-on-focus): keys typed before that are lost. Clear
        # it and type one letter until the field shows just that letter; then the path goes in whole.
        for _ in range(30):
            tmux.keys("C-e", "C-u")
            tmux.type("x")
            try:
                tmux.until(lambda s: re.search(r"▊\s+x\s+▎", s), "the path field focused and cleared", timeout=10)
                break
            except AssertionError:
                continue
        tmux.keys("BSpace")
        tmux.type(str(exported))
        tmux.wait_for(str(exported)[-40:])
        tmux.keys("Enter")
        screen = tmux.until(lambda s: ("exported" in s or "export failed" in s) and s, "the export to finish")
        assert "export failed" not in screen, screen
        assert (exported / "config.json").exists() and list(exported.glob("*.safetensors")), (
            sorted(p.name for p in exported.iterdir()) if exported.exists() else "no folder", screen)
        tmux.keys("Escape")
        tmux.wait_for("a/b pick A/B")

        # 6. Quit.
        tmux.keys("q")
        tmux.wait_for("APP-EXITED-0", timeout=60)
        assert run.state() == "stopped" and stopped_at >= step
    finally:
        tmux.close()
        if run is not None and run.state() in ("starting", "running", "paused"):
            run.send("stop")  # free the CPU for the other tests (the conftest fixture kills what is left)

