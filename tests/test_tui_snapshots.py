"""Snapshots of each of the workbench's own panes at 120x36 (update with `pytest --snapshot-update`).

The live system header (CPU, RAM, load) would make every picture differ, so these use the plain header
with a fixed host name; runs and files get fixed names and times.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from engine.rundir.runs import Run
from tests.tui_support import settled, until
from tui import app as appmod
from tui.launching import PROJECT_PRESETS

SIZE = (120, 36)


@pytest.fixture
def steady(tmp_path, monkeypatch):
    """A fixed header, time zone, working directory and runs dir."""
    monkeypatch.setattr(appmod, "HEADER", "tui.widgets.header:SystemHeader")
    monkeypatch.setattr("tui.widgets.header.socket.gethostname", lambda: "gpu-box")
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TUNEBENCH_RUNS_DIR", "runs")
    yield tmp_path
    monkeypatch.undo()
    time.tzset()


def fixed_run(name: str, **status) -> Run:
    run = Run(f"runs/{name}")
    run.path.mkdir(parents=True)
    run.write_status(**{"host": "elsewhere", "model": "Qwen/Qwen2.5-0.5B-Instruct", "method": "sft", **status})
    return run


def test_runs_pane(snap_compare, steady):
    fixed_run("20250301-101500-sft-chat-a1b2", state="completed", step=300, max_steps=300, last_loss=0.4123,
              started=1740824100)
    fixed_run("20250302-091000-dpo-pref-c3d4", state="running", step=42, max_steps=500, last_loss=0.6931,
              started=1740906600, method="dpo")
    fixed_run("20250302-120000-sft-oom-e5f6", state="failed", step=7, max_steps=100, started=1740916800)
    fixed_run("20250302-130000-sft-big-a7b8", state="queued", step=0, created=1740920400,
              slurm={"job_id": "81234", "state": "PENDING", "reason": "Resources"})
    app = appmod.TuneBench(runs_dir="runs", workdir=".")

    async def listed(pilot):  # the first scan fills the table after the first paint
        await until(pilot, lambda: app.query_one("#runs-table").row_count == 4 and settled(app), what="four runs")

    assert snap_compare(app, terminal_size=SIZE, run_before=listed)


def test_hyperparams_pane(snap_compare, steady):
    app = appmod.TuneBench(runs_dir="runs", workdir=".", preset=str(PROJECT_PRESETS / "sft-lora-small.yaml"))

    async def shown(pilot):  # keys typed while the pane is still being shown would go to the previous one
        await pilot.press("3")
        await until(pilot, lambda: pilot.app.focused.id == "hp-table", what="the form focused")

    assert snap_compare(app, press=["down", "down", "down"], run_before=shown, terminal_size=SIZE)


def test_dataset_pane(snap_compare, steady):
    with open("chat.jsonl", "w") as f:
        for i in range(30):
            f.write(json.dumps({"messages": [{"role": "user", "content": f"say {i}"},
                                             {"role": "assistant", "content": f"{i} {i}"}]}) + "\n")
        f.write("{broken\n")
    app = appmod.TuneBench(runs_dir="runs", workdir=".", dataset="chat.jsonl")

    async def inspected(pilot):
        await pilot.press("2")
        pane = await app.ensure_pane("dataset")
        await until(pilot, lambda: pane.report is not None and "row 1 of" in str(pane.query_one("#ds-render").render()),
                    timeout=120, what="the inspection")
        await until(pilot, lambda: not app.query_one("#spinner").jobs, what="the spinner off")
        pane.query_one("#ds-rows").focus()  # not the path input: its blinking cursor would differ per run
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=inspected)


def test_help_screen(snap_compare, steady):
    app = appmod.TuneBench(runs_dir="runs", workdir=".")

    async def helped(pilot):
        from tui.screens.help import HelpScreen

        await until(pilot, lambda: settled(app), what="the first pane")
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen) and settled(app), what="the help screen")

    assert snap_compare(app, terminal_size=SIZE, run_before=helped)


# -- the most visual screens, at 80x24 and 120x36 -------------------------------------------------------------
SIZES = {"80x24": (80, 24), "120x36": (120, 36)}
T0 = 1740824100.0  # 2025-03-01 10:15 UTC: every event time below is fixed, so are the charts' time axes
GIB = 1 << 30


def write_events(run: Run, events: list[dict]) -> None:
    """events.jsonl as the engine writes it, with fixed seq and times."""
    with open(run.events_path, "w") as f:
        for seq, e in enumerate(events):
            f.write(json.dumps({"seq": seq, **e}, separators=(",", ":")) + "\n")


def trained(name: str, steps: int = 300, gpu: bool = True, speed: float = 1.0, scores: bool = False, **status) -> Run:
    """A finished run with a falling loss, evals, checkpoints and (NVML-shaped) GPU telemetry every 10 steps;
    `scores`: its evals carry eval.metrics' scores (rising ROUGE-1, BLEU, exact match) as sft writes them."""
    from engine import config as cfgmod

    run = fixed_run(name, state="completed", step=steps, max_steps=steps, last_loss=0.21, started=T0,
                    ended=T0 + 2 * steps, resolved={"device": "cuda" if gpu else "cpu", "precision": "bf16"},
                    **status)
    cfg = cfgmod.Config(name="numbers").with_values({"model.name_or_path": "/models/Qwen2.5-0.5B-Instruct",
                                                     "data.train": "/data/numbers-train.jsonl",
                                                     "training.max_steps": steps})
    run.config_path.write_text(cfgmod.dump(cfg))
    events = [{"time": T0, "kind": "state", "state": "running", "step": 0},
              {"time": T0, "kind": "data", "format": "messages", "train_rows": 92, "eval_rows": 8}]
    for step in range(1, steps + 1):
        t = T0 + 2 * step
        events.append({"time": t, "kind": "metrics", "step": step, "loss": 0.2 + 3.8 / (1 + speed * step / 20),
                       "learning_rate": 1e-3 * (1 - step / steps), "grad_norm": 1 + (step % 7) / 7,
                       "tokens_per_s": 900.0 + step % 5, "num_tokens": 512 * step})
        if step % 100 == 0:
            events.append({"time": t, "kind": "eval", "step": step, "loss": 0.15 + 3 / (1 + speed * step / 15),
                           **({"exact_match": step / 1000, "rouge1": 0.2 + step / 600, "bleu": 5 + step / 12}
                              if scores else {})})
        if step % 150 == 0:
            events.append({"time": t, "kind": "checkpoint", "step": step, "path": f"checkpoints/checkpoint-{step}"})
        if step % 10 == 0:
            tele = {"time": t, "kind": "telemetry", "rss": 3 * GIB, "cpu_percent": 99.0, "ram_used": 40 * GIB,
                    "ram_total": 256 * GIB}
            if gpu:
                used = (30 + 8 * min(1, step / 60)) * GIB
                tele.update(gpus=[{"index": 0, "name": "NVIDIA A100-SXM4-40GB", "mem_used": used, "mem_total": 40 * GIB,
                                   "util": 95, "power_w": 250.0, "temp_c": 66, "proc_mem": used - 2 * GIB}],
                            torch_allocated=used - 8 * GIB, torch_reserved=used - 3 * GIB, torch_peak=used - 6 * GIB)
            events.append(tele)
    write_events(run, events)
    return run


@pytest.mark.parametrize("size", SIZES, ids=list(SIZES))
def test_monitor_pane(snap_compare, steady, size):
    """The loss chart and the memory chart both on screen, at 80x24 too; the header in a few lines; the eval
    metrics a row each (one line at 80x24)."""
    run = trained("20250301-101500-sft-numbers-a1b2", scores=True)
    app = appmod.TuneBench(runs_dir="runs", workdir=".", run=str(run.path))

    async def drawn(pilot):
        mon = await app.ensure_pane("monitor")
        await until(pilot, lambda: mon.attach_s is not None and {"train", "mem"} <= set(mon._drawn)
                    and mon._later is None, what="the monitor drawn")
        await until(pilot, lambda: settled(app), what="every update handled")

    assert snap_compare(app, terminal_size=SIZES[size], run_before=drawn)


def checkpoint(run: Run, step: int, eval_loss: float) -> None:
    d = run.checkpoints_dir / f"checkpoint-{step}"
    d.mkdir(parents=True)
    (d / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "org/base"}))
    (d / "adapter_model.safetensors").write_bytes(b"\0" * (step * 1024))
    (d / "tunebench.json").write_text(json.dumps({"step": step, "time": T0 + 2 * step, "eval_loss": eval_loss,
                                                  "base_model": "org/base"}))


@pytest.mark.parametrize("size", SIZES, ids=list(SIZES))
def test_checkpoints_pane(snap_compare, steady, size):
    run = fixed_run("20250301-101500-sft-numbers-a1b2", state="completed", step=400, max_steps=400, started=T0,
                    model="org/base", final_checkpoint="checkpoint-400")
    for step, loss in ((100, 0.91), (200, 0.42), (300, 0.2), (400, 0.18)):
        checkpoint(run, step, loss)
    other = fixed_run("20250302-091000-sft-numbers-c3d4", state="stopped", step=120, max_steps=400, started=T0 + 3600,
                      model="org/base")
    checkpoint(other, 120, 1.2)
    app = appmod.TuneBench(runs_dir="runs", workdir=".")

    async def listed(pilot):
        await pilot.press("5")
        pane = await app.ensure_pane("checkpoints")
        table = pane.query_one("#models")
        await until(pilot, lambda: table.row_count == 8 and table.has_focus, what="the models listed")
        table.move_cursor(row=2)
        await pilot.press("a")
        await until(pilot, lambda: pane.picked["a"] is not None and settled(app), what="A picked")

    assert snap_compare(app, terminal_size=SIZES[size], run_before=listed)


@pytest.mark.parametrize("size", SIZES, ids=list(SIZES))
def test_overlay_pane(snap_compare, steady, size):
    slow = trained("20250301-101500-sft-numbers-a1b2", steps=300, gpu=False)
    fast = trained("20250302-091000-sft-numbers-lr3e-3-c3d4", steps=200, gpu=False, speed=3.0)
    app = appmod.TuneBench(runs_dir="runs", workdir=".")

    async def checked(pilot):
        await pilot.press("6")
        pane = await app.ensure_pane("overlay")
        await until(pilot, lambda: pane.query_one("#ov-runs").option_count == 2, what="both runs listed")
        pane.select([slow.path, fast.path])
        await until(pilot, lambda: len(pane.summary()) == 2 and all(v is not None for v in pane.summary().values()),
                    what="both curves loaded")
        await until(pilot, lambda: settled(app), what="drawn")

    assert snap_compare(app, terminal_size=SIZES[size], run_before=checked)


def recorded_comparison():
    """The helper's messages of one comparison (its wire format: engine/helper/compare_ops.py), replayed."""
    prompts = [{"messages": [{"role": "user", "content": f"write {n} in words"}], "reference": ref}
               for n, ref in ((37, "thirty-seven"), (54, "fifty-four"))]
    rows = [{"a": "thirty-seven", "b": "thirty seven seven", "messages": prompts[0]["messages"]},
            {"a": "fifty-four", "b": "fifty-four", "messages": prompts[1]["messages"]}]
    metrics = {"a": {"eval_loss": 0.1812, "perplexity": 1.199, "gen_tokens_per_s": 812.4},
               "b": {"eval_loss": 0.9103, "perplexity": 2.485, "gen_tokens_per_s": 799.0},
               "eval": "eval split of 20250301-101500-sft-numbers-a1b2 (8 rows)", "device": "cpu"}
    from engine.checkpoints.answer_scores import score_answers  # both answers against the references

    metrics["answers"] = {**score_answers(rows, prompts, ["exact_match", "rouge1"]), "chosen_by": "eval.metrics"}
    models = {"a": {"run_eval": {"step": 400, "loss": 0.1812, "exact_match": 0.75, "rouge1": 0.91}},
              "b": {"run_eval": None}}

    async def stream():
        yield {"type": "data", "event": "phase", "text": "prompts: the eval split of A's run"}
        yield {"type": "data", "event": "prompts", "prompts": prompts}
        for i, row in enumerate(rows):
            yield {"type": "data", "event": "row", "i": i, "row": row}
        yield {"type": "done", "result": {"prompts": rows, "metrics": metrics, "models": models}}

    return stream


@pytest.mark.parametrize("size", SIZES, ids=list(SIZES))
def test_compare_screen(snap_compare, steady, size):
    from tui.screens.compare import CompareScreen

    app = appmod.TuneBench(runs_dir="runs", workdir=".")
    args = {"decoding": {"max_new_tokens": 32, "seed": 0, "sample": False}, "runs_dir": "runs", "device": "cpu"}

    async def compared(pilot):
        screen = CompareScreen(args, "20250301-101500-sft-numbers-a1b2 (final, step 400)", "base org/base",
                               source=recorded_comparison())
        await app.push_screen(screen)
        await until(pilot, lambda: screen.result is not None and settled(app), what="the comparison shown")

    assert snap_compare(app, terminal_size=SIZES[size], run_before=compared)


def fixed_sweep():
    """A 2x2 grid as the scheduler leaves it on disk: sweep.json, summary.json and the trials' runs."""
    from engine.rundir.atomic import atomic_write

    sid = "20250302-100000-lr-rank-ab12"
    path = Path("runs/sweeps") / sid
    path.mkdir(parents=True)
    space = {"training.learning_rate": {"kind": "choice", "values": [1e-4, 3e-4]},
             "adapter.r": {"kind": "choice", "values": [8, 32]}}
    atomic_write(path / "sweep.json", json.dumps({"id": sid, "name": "lr-rank", "created": 1740909600,
                                                  "state": "running", "mode": "grid", "space": space, "trials": 4,
                                                  "objective": "eval_loss", "direction": "minimize",
                                                  "pruner": "median"}))
    trials, states = [], [("completed", "COMPLETE"), ("completed", "COMPLETE"), ("stopped", "PRUNED"),
                          ("queued", "RUNNING")]
    values = [[1.91, 1.52, 1.31], [1.88, 1.41, 1.12], [2.05, 1.97], []]
    for n, ((run_state, optuna_state), vals) in enumerate(zip(states, values)):
        lr, r = [(1e-4, 8), (1e-4, 32), (3e-4, 8), (3e-4, 32)][n]
        run_id = f"20250302-1000{n:02d}-sft-lr-rank-t{n}-ab{n:02d}"
        done = run_state == "completed"
        fixed_run(run_id, state=run_state, step=[300, 300, 100, 0][n], max_steps=300 if n < 3 else None,
                  started=1740909600 + 600 * n if n < 3 else None, sweep=sid, trial=n,
                  swept={"training.learning_rate": lr, "adapter.r": r},
                  summary={"tokens_per_s": 5120.5 - 300 * n, "peak_cuda_reserved_bytes": (9 + n) * 2**30} if done else None)
        trials.append({"number": n, "state": optuna_state, "params": {"training.learning_rate": lr, "adapter.r": r},
                       "run": run_id, "value": vals[-1] if done else (vals[-1] if vals else None),
                       "intermediate": {str(100 * (i + 1)): v for i, v in enumerate(vals)},
                       "pruned_at": 200 if optuna_state == "PRUNED" else None, "error": None})
    atomic_write(path / "summary.json", json.dumps({
        "id": sid, "state": "running", "objective": "eval_loss", "direction": "minimize", "trials": trials,
        "best": {"trial": 1, "value": 1.12, "params": trials[1]["params"], "run": trials[1]["run"]},
        "importance": {"training.learning_rate": 0.71, "adapter.r": 0.29},
        "importance_note": "Optuna's PED-ANOVA over 2 completed trials", "updated": 1740912000}))
    return sid


async def _sweep_shown(pilot):
    await pilot.press("8")
    table = pilot.app.query_one("#sw-trials")
    await until(pilot, lambda: table.row_count == 4, what="the trials")
    table.focus()
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (120, 36)])
def test_sweeps_pane(snap_compare, steady, size):
    fixed_sweep()
    assert snap_compare(appmod.TuneBench(runs_dir="runs", workdir="."), terminal_size=size, run_before=_sweep_shown)


@pytest.mark.parametrize("size", SIZES, ids=list(SIZES))
def test_dataset_pane_with_a_mixture(snap_compare, steady, size):
    """data.train mixes a chat task 3:1 with plain text: the side column lists the sources above the rows'
    report, at 80x24 too."""
    from tests.test_tui_dataset import write_mix_sources

    write_mix_sources(Path("."))
    app = appmod.TuneBench(runs_dir="runs", workdir=".", dataset="task.jsonl")  # no model: no tokenizer to load

    async def inspected(pilot):
        hp = await app.ensure_pane("hyperparams")
        hp.apply({"data.train": ["task.jsonl:3", "general.jsonl:1"], "data.order": "length",
                  "data.curriculum_epochs": 1, "data.eval_fraction": 0.0})
        pane = await app.ensure_pane("dataset")
        pane.query_one("#ds-rows").focus()  # the app opened on this pane with its path field focused
        await pilot.press("3", "2")  # to the form and back, as a person changing data.train would
        await until(pilot, lambda: pane.report is not None and pane.mixture is not None
                    and "row 1 of" in str(pane.query_one("#ds-render").render()), timeout=120, what="the inspection")
        await until(pilot, lambda: not app.query_one("#spinner").jobs, what="the spinner off")
        pane.query_one("#ds-rows").focus()  # not the path input: its blinking cursor would differ per run
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZES[size], run_before=inspected)
