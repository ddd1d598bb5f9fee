"""Sweeps through the queue on the CPU with the tiny model, with the real CLI, scheduler and engines: a 3x2 grid
runs every trial exactly once, at most two at once (hardware.max_concurrent), in order, across a scheduler killed
mid-sweep and two restarted ones racing; the Sweeps pane under Pilot on it; a search in tmux prunes a clearly
losing trial and resumes its study from SQLite after a crash (one sweep for both: engine starts are the cost)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import optuna
import pytest

from engine import config as cfgmod
from engine.rundir.events import read_events
from engine.rundir.queue import Queue
from engine.rundir.runs import ACTIVE, Run, list_runs, process_alive
from engine.scheduling import sweepfiles, sweeps
from engine.scheduling.control import running_scheduler
from tests.conftest import ROOT, tunebench, wait_for, write_config
from tests.tui_support import cells, text, until
from tui.app import TuneBench

pytestmark = pytest.mark.slow


def trial_runs(runs_dir, sweep_id) -> dict[int, list[Run]]:
    out: dict[int, list[Run]] = {}
    for run in list_runs(runs_dir):
        st = run.status()
        if st.get("sweep") == sweep_id:
            out.setdefault(st["trial"], []).append(run)
    return out


def engine_starts(run: Run) -> int:
    """How many engines started this run: each writes one `starting` event carrying `resume` before anything."""
    return sum(1 for e in read_events(run.events_path, ("state",)) if e["state"] == "starting" and "resume" in e)


def kill_scheduler(runs_dir) -> int:
    info = wait_for(lambda: running_scheduler(runs_dir), timeout=60, what="a scheduler")
    os.kill(info["pid"], signal.SIGKILL)
    wait_for(lambda: running_scheduler(runs_dir) is None and not process_alive(info["pid"]), timeout=30,
             what="the killed scheduler gone")
    return info["pid"]


def clean_up(runs_dir) -> None:
    """Free the CPU for the other tests: stop what a failed test left running."""
    info = running_scheduler(runs_dir)
    if info and process_alive(info.get("pid")):
        os.kill(info["pid"], signal.SIGKILL)
    for run in list_runs(runs_dir):
        st = run.status()
        if run.state(st) in ACTIVE and process_alive(st.get("pid"), st.get("pid_started")):
            os.kill(st["pid"], signal.SIGKILL)


def sweep_id_of(out) -> str:
    assert out.returncode == 0, out.stderr
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("sweep "))
    return line.split()[1].rstrip(":")


def env_with(runs_dir) -> dict:
    return {**os.environ, "TUNEBENCH_RUNS_DIR": str(runs_dir), "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def grid(tmp_path_factory, tiny_model, chat_jsonl):
    """A 3x2 grid run to its end through the real queue, at most two trials at once (hardware.max_concurrent):
    the first scheduler (started by `tunebench sweep`) is
    killed with SIGKILL once a trial completed; `tunebench scheduler` and a bare scheduler loop (no singleton
    lock: the worst case) then race to finish it."""
    work = tmp_path_factory.mktemp("grid")
    runs_dir = work / "runs"
    cfg = write_config(work / "c.yaml", tiny_model, chat_jsonl, data={"eval_fraction": 0.125},
                       training={"max_steps": 4, "eval_steps": 2}, hardware={"max_concurrent": 2})
    out = tunebench("sweep", cfg, "--grid", "training.learning_rate=1e-3,3e-3,0", "--grid", "adapter.r=4,8",
                    "--pruner", "none", "--name", "grid", runs_dir=runs_dir)
    sid = sweep_id_of(out)
    # every trial's run exists when `tunebench sweep` returns (the scheduler may have started two already)
    made = trial_runs(runs_dir, sid)
    queued_at_once = [r.id for t in sorted(made) for r in made[t]]
    try:
        def first_completed():
            states = {r.id: (r.status().get("state"), r.status().get("error")) for rs in trial_runs(runs_dir, sid).values()
                      for r in rs}
            assert not all(st == "failed" for st, _ in states.values()), states  # fail now, not after 600 s
            return any(st == "completed" for st, _ in states.values())

        wait_for(first_completed, timeout=600, what="a first completed trial")
        killed = kill_scheduler(runs_dir)
        env = env_with(runs_dir)
        first = subprocess.Popen([sys.executable, "-m", "tunebench", "scheduler"], env=env, cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        bare = subprocess.Popen([sys.executable, "-c", "import sys; from engine.scheduling.scheduler import Scheduler; "
                                 "Scheduler(sys.argv[1]).loop()", str(runs_dir)], env=env, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: running_scheduler(runs_dir), timeout=60, what="the restarted scheduler")
        refused = tunebench("scheduler", runs_dir=runs_dir, timeout=60)
        results = [p.communicate(timeout=1200) + (p.returncode,) for p in (first, bare)]
    finally:
        clean_up(runs_dir)
    yield {"runs_dir": runs_dir, "sweep": sid, "queued_at_once": queued_at_once, "killed": killed,
           "refused": refused, "results": results}
    clean_up(runs_dir)


def test_grid_runs_every_trial_exactly_once_within_the_concurrency_cap_in_order(grid):
    runs_dir, sid = grid["runs_dir"], grid["sweep"]
    assert len(grid["queued_at_once"]) == 6  # the whole grid was queued by `tunebench sweep`
    assert grid["refused"].returncode == 1 and "already runs" in grid["refused"].stderr
    assert [r[2] for r in grid["results"]] == [0, 0], grid["results"]  # both went idle: the queue is empty
    by_trial = trial_runs(runs_dir, sid)
    assert sorted(by_trial) == list(range(6))
    assert all(len(rs) == 1 for rs in by_trial.values())  # one run per trial: nothing asked twice
    runs = [by_trial[t][0] for t in range(6)]
    points = [r.status()["swept"] for r in runs]
    assert points == [{"training.learning_rate": lr, "adapter.r": r} for lr in (1e-3, 3e-3, 0) for r in (4, 8)]
    assert [r.id for r in runs] == grid["queued_at_once"]
    for r in runs:
        cfg = r.settings()
        swept = r.status()["swept"]
        assert (cfg.training.learning_rate, cfg.adapter.r) == (swept["training.learning_rate"], swept["adapter.r"])
        assert r.status()["state"] == "completed", r.status()
        assert engine_starts(r) == 1, r.id  # started once, whatever the schedulers did
    assert not Queue(runs_dir).entries()
    # never more than hardware.max_concurrent (2) at once, and two at once from the start
    edges = sorted([(r.status()["started"], 1) for r in runs] + [(r.status()["ended"], -1) for r in runs],
                   key=lambda e: (e[0], e[1]))
    active = [sum(d for _, d in edges[: i + 1]) for i in range(len(edges))]
    assert max(active) == 2, edges
    # in queue order: a trial starts after every trial two or more places before it (the one just before it
    # may have been spawned in the same round)
    started = [r.status()["started"] for r in runs]
    assert all(started[i] <= started[k] for k in range(6) for i in range(k - 1))
    decisions = [json.loads(ln) for ln in (runs_dir / "queue" / "decisions.jsonl").read_text().splitlines()]
    assert {d["run"] for d in decisions if d["action"] == "start"} == {r.id for r in runs}
    assert any("at most 2 (hardware.max_concurrent)" in d["reason"] for d in decisions if d["action"] == "wait")


def test_grid_study_is_complete_with_best_and_importance(grid):
    runs_dir, sid = grid["runs_dir"], grid["sweep"]
    out = tunebench("sweep", "status", sid, "--json", runs_dir=runs_dir)
    table = json.loads(out.stdout)
    assert table["state"] == "completed" and table["trials_total"] == 6
    assert [t["optuna_state"] for t in table["trials"]] == ["COMPLETE"] * 6
    values = {t["trial"]: t["value"] for t in table["trials"]}
    best = min(values, key=values.get)
    assert table["best"]["trial"] == best and [t["is_best"] for t in table["trials"]].count(True) == 1
    for t in table["trials"]:  # the objective is the run's last eval loss
        evals = read_events(Run(runs_dir / t["run"]).events_path, ("eval",))
        assert t["value"] == pytest.approx(evals[-1]["loss"]) and t["last"] == pytest.approx(evals[-1]["loss"])
        assert t["tokens_per_s"] and t["peak_bytes"]
    assert set(table["importance"]) == {"training.learning_rate", "adapter.r"}
    study = optuna.load_study(study_name=sid, storage=f"sqlite:///{runs_dir / 'sweeps' / sid / 'study.db'}")
    assert len(study.trials) == 6 and study.best_trial.number == best  # any program can read the study


def test_a_trial_asked_before_a_crash_gets_its_run_and_stop_cancels_the_queue(tmp_path):
    """No engine: the study's bookkeeping alone. A scheduler that died right after asking Optuna for a trial left
    a trial without a run; the next round creates it (no trial lost, none asked twice)."""
    runs_dir = tmp_path / "runs"
    base = cfgmod.Config(name="s").with_values({"model.name_or_path": "org/tiny", "data.train": "x.jsonl",
                                                "data.eval_fraction": 0.1})
    space = {"training.learning_rate": {"kind": "float", "low": 1e-5, "high": 1e-3, "log": True}}
    path = sweeps.create(runs_dir, base, space, mode="search", trials=2, objective="eval_loss",
                         direction="minimize", pruner="median", prune_after=2, seed=0)
    assert len(trial_runs(runs_dir, path.name)) == 1  # a search queues one trial at a time
    study = optuna.load_study(study_name=path.name, storage=sweeps.storage(path))
    study.ask()  # ... and the process that asked dies before creating the trial's run
    q = Queue(runs_dir)
    with q.locked():
        sweeps.Driver(runs_dir).settle()
    by_trial = trial_runs(runs_dir, path.name)
    assert sorted(by_trial) == [0, 1] and all(len(v) == 1 for v in by_trial.values())
    assert len(study.trials) == 2  # the second trial is the one asked before the crash, not a new one
    lr = by_trial[1][0].settings().training.learning_rate
    assert lr == study.trials[1].params["training.learning_rate"] and 1e-5 <= lr <= 1e-3
    assert len(q.entries()) == 2
    out = tunebench("sweep", "stop", path.name, "--json", runs_dir=runs_dir)
    stopped = json.loads(out.stdout)
    assert stopped["state"] == "stopped" and sorted(stopped["cancelled"]) == sorted(r[0].id for r in by_trial.values())
    assert not q.entries()
    table = json.loads(tunebench("sweep", "status", "--json", runs_dir=runs_dir).stdout)[0]
    assert [(t["state"], t["optuna_state"], t["error"]) for t in table["trials"]] == [("stopped", "FAIL", "cancelled")] * 2


@pytest.mark.asyncio
async def test_sweeps_pane_table_sort_best_overlay_and_checkpoints(grid):
    runs_dir, sid = grid["runs_dir"], grid["sweep"]
    table_json = sweepfiles.table(runs_dir, sweepfiles.sweeps_dir(runs_dir) / sid)
    best = table_json["best"]
    app = TuneBench(runs_dir=runs_dir, workdir=runs_dir.parent)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("8")
        pane = app.query_one("#pane-sweeps")
        table = pane.query_one("#sw-trials")
        await until(pilot, lambda: table.row_count == 6, timeout=30, what="six trials listed")
        rows = cells(table)
        assert [r[0].strip("★ ") for r in rows] == [str(i) for i in range(6)]
        assert [r[2:4] for r in rows] == [[lr, r] for lr in ("0.001", "0.003", "0") for r in ("4", "8")]
        starred = [r for r in rows if r[0].startswith("★")]
        assert len(starred) == 1 and starred[0][0] == f"★ {best['trial']}"
        assert all(r[1] == "completed" for r in rows)
        assert "learning_rate" in text(app, "#sw-importance") and "6/6 done" in text(app, "#sw-info")
        # sort by the best objective (s cycles the columns: trial, state, lr, r, best)
        for _ in range(4):
            await pilot.press("s")
        await until(pilot, lambda: "sorted by best" in text(app, "#sw-info"), what="sorted by best")
        ordered = [float(r[4]) for r in cells(table)]
        assert ordered == sorted(ordered) and cells(table)[0][0] == f"★ {best['trial']}"
        # o: every trial's curves in Overlay
        await pilot.press("o")
        await until(pilot, lambda: app.query_one("#panes").active == "overlay", what="Overlay shown")
        overlay = app.query_one("#pane-overlay")
        assert sorted(overlay.followers) == sorted(str(runs_dir / t["run"]) for t in table_json["trials"])
        # b: the best trial's model is A in Checkpoints (its base model B): c compares, e exports
        await pilot.press("8")
        await pilot.press("b")
        await until(pilot, lambda: app.query_one("#panes").active == "checkpoints", what="Checkpoints shown")
        ckpt = app.query_one("#pane-checkpoints")
        assert ckpt.picked["a"].ref == str(runs_dir / best["run"]) and ckpt.picked["a"].kind == "final"
        assert ckpt.picked["b"].kind == "base"


@pytest.mark.e2e
@pytest.mark.skipif(not shutil.which("tmux"), reason="needs tmux")
def test_search_in_tmux_prunes_a_losing_trial_and_resumes_its_study_after_a_crash(tmp_path, tiny_model, chat_jsonl):
    """The real commands in a terminal: `tunebench sweep` starts a search whose first trials are a good and a
    clearly losing learning rate (--enqueue), then the workbench opens on it. The scheduler holding the study is
    killed while the first trial trains and `tunebench scheduler` takes over from SQLite; the Sweeps pane shows
    the second trial pruned and the first marked best, and o puts both curves in Overlay."""
    from tests.test_e2e_demo import BIN, Tmux

    runs_dir = tmp_path / "runs"
    write_config(tmp_path / "c.yaml", tiny_model, chat_jsonl, data={"eval_fraction": 0.125},
                 training={"max_steps": 30, "eval_steps": 2})
    tmux = Tmux(f"{BIN} --runs-dir runs sweep c.yaml --search training.learning_rate=loguniform:1e-6:1e-2 "
                "--trials 2 --enqueue training.learning_rate=3e-3 --enqueue training.learning_rate=1e-6 "
                f"--prune-after 1 --name e2e && {BIN} --runs-dir runs", tmp_path)
    try:
        tmux.wait_for("Sweeps pane [8]", timeout=240)
        tmux.keys("8")
        tmux.wait_for("e2e", "learning_rate", timeout=120)
        sid = sweepfiles.list_sweeps(runs_dir)[0].name
        wait_for(lambda: [r.status().get("state") for r in trial_runs(runs_dir, sid).get(0, [])] == ["running"],
                 timeout=600, what="trial 0 running", show=tmux.screen)
        kill_scheduler(runs_dir)  # the crash: the process holding the study dies mid-trial
        done = tunebench("scheduler", runs_dir=runs_dir, timeout=1200)
        assert done.returncode == 0, done.stderr
        screen = tmux.wait_for("2/2 done", "pruned", "★", timeout=120)
        assert "completed" in screen
        tmux.keys("o")
        tmux.wait_for("2 run(s) checked", timeout=60)
        tmux.keys("q")
        tmux.wait_for("APP-EXITED-0", timeout=30)
    finally:
        tmux.close()
        clean_up(runs_dir)
    study = optuna.load_study(study_name=sid, storage=f"sqlite:///{runs_dir / 'sweeps' / sid / 'study.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "PRUNED"]
    assert [t.params["training.learning_rate"] for t in study.trials] == [3e-3, 1e-6]
    good, bad = (trial_runs(runs_dir, sid)[n][0] for n in (0, 1))
    assert good.status()["step"] == 30 and bad.status()["state"] == "stopped"
    assert bad.status()["step"] < 30  # stopped through its control file at a losing evaluation
    pruned_at = study.trials[1].user_attrs["pruned_at"]
    assert study.trials[1].intermediate_values[pruned_at] > study.trials[0].intermediate_values[pruned_at]
    assert engine_starts(good) == engine_starts(bad) == 1
    table = json.loads(tunebench("sweep", "status", sid, "--json", runs_dir=runs_dir).stdout)
    assert [t["state"] for t in table["trials"]] == ["completed", "pruned"] and table["state"] == "completed"
