"""Sweeps: an Optuna study in SQLite (runs/sweeps/<id>/study.db) whose trials are ordinary queued runs.

Light for the ML stack (optuna, SQLAlchemy, numpy; never torch) but not for the workbench, which reads sweeps
through engine.scheduling.sweepfiles. The scheduler calls `Driver.settle()` every round under the queue's lock:

- a grid enqueues every point in the study once (`enqueue_trial`), a search asks the sampler (TPE, seeded) for
  one trial at a time, so each new trial sees every finished one; each asked trial becomes a run in the queue,
  its status recording the sweep, the trial number and the swept values;
- a running trial reports each eval event's objective as an intermediate value; when the pruner (median or
  successive halving) says it is losing, its run is stopped through its control file `stop`;
- an ended run is told to the study: completed -> COMPLETE with its last evaluation's objective, stopped after a
  prune -> PRUNED, anything else -> FAIL;
- summary.json is rewritten when anything changed (trials, best, Optuna's parameter importance).

Everything is derived from the study and the runs' status files, so a scheduler killed at any point and started
again asks no trial twice and loses none: a trial asked but without its run gets the run on the next round.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from engine import config as cfgmod
from engine.rundir.atomic import atomic_write
from engine.rundir.events import EventTail
from engine.rundir.queue import Queue
from engine.rundir.runs import ACTIVE, Run, create_run, list_runs
from engine.scheduling import space as spacemod
from engine.scheduling import sweepfiles

optuna.logging.set_verbosity(optuna.logging.WARNING)
ENDED = ("completed", "stopped", "failed", "lost")
IMPORTANCE_AFTER = 3  # completed trials before parameter importance is computed (fewer say nothing)


def storage(path: Path):
    # timeout: the CLI and the scheduler may open the database at once; SQLite waits for the other writer
    return optuna.storages.RDBStorage(f"sqlite:///{path / 'study.db'}", engine_kwargs={"connect_args": {"timeout": 60}})


def pruner_of(sp: dict):
    name, after = sp.get("pruner", "median"), int(sp.get("prune_after", 2))
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=after, n_warmup_steps=0)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def create(runs_dir: str | Path, base: cfgmod.Config, space: dict, *, mode: str, trials: int, objective: str,
           direction: str, pruner: str, prune_after: int, seed: int, name: str = "", source: str = "",
           first: list[dict] = ()) -> Path:
    """Write the sweep (sweep.json, the study) and queue its first trials; returns the sweep directory."""
    path = sweepfiles.sweeps_dir(runs_dir) / sweepfiles.new_sweep_id(name or base.name or "sweep")
    path.mkdir(parents=True, mode=0o700)
    total = len(spacemod.grid_points(space)) if mode == "grid" else trials
    sweepfiles.write_spec(path, {
        "id": path.name, "name": name or path.name, "created": time.time(), "state": "running", "mode": mode,
        "space": space, "trials": total, "objective": objective, "metric": spacemod.metric_of(objective),
        "direction": direction, "pruner": pruner, "prune_after": prune_after, "seed": seed, "source": source,
        "first": list(first),
        "config": base.to_dict()})
    q = Queue(runs_dir)
    with q.locked():
        Driver(runs_dir).settle(only=path)
    return path


def stop(runs_dir: str | Path, path: Path) -> dict:
    """Stop a sweep: ask no more trials, cancel its queued runs, stop its running ones; returns what it did."""
    q = Queue(runs_dir)
    done = {"cancelled": [], "stopped": []}
    with q.locked():
        sp = sweepfiles.spec(path)
        if sp.get("state") in sweepfiles.OPEN:
            sp["state"] = "stopping"
            sweepfiles.write_spec(path, sp)
        for t in sweepfiles.summary(path).get("trials", []):
            run = Run(Path(runs_dir) / t["run"]) if t.get("run") else None
            if run is None or not run.exists():
                continue
            state = run.state()
            if state == "queued":
                try:
                    q.cancel(run.id)
                    done["cancelled"].append(run.id)
                except LookupError:
                    pass
            elif state in ACTIVE:
                run.send("stop")
                done["stopped"].append(run.id)
        Driver(runs_dir).settle(only=path)
    return done


class Driver:
    """Keeps every open sweep's study in step with its runs (one per scheduler; holds event offsets)."""

    def __init__(self, runs_dir: str | Path):
        self.runs_dir = Path(runs_dir)
        self.studies: dict[str, optuna.Study] = {}
        self.tails: dict[str, EventTail] = {}
        self.evals: dict[str, dict[int, float]] = {}  # run id -> step -> objective

    def settle(self, only: Path | None = None) -> None:
        for path in [only] if only else sweepfiles.open_sweeps(self.runs_dir):
            sp = sweepfiles.spec(path)
            if sp.get("state") in sweepfiles.OPEN:
                self._settle(path, sp)

    # -- one sweep ------------------------------------------------------------------------------------
    def _study(self, path: Path, sp: dict) -> optuna.Study:
        if path.name not in self.studies:
            sampler = optuna.samplers.TPESampler(seed=sp.get("seed"))
            study = optuna.create_study(storage=storage(path), study_name=sp["id"], direction=sp["direction"],
                                        sampler=sampler, pruner=pruner_of(sp), load_if_exists=True)
            # a grid's points, or a search's first trials (--enqueue): the ones the study lacks (all of them,
            # unless a crash cut the first enqueueing short)
            points = spacemod.grid_points(sp["space"]) if sp["mode"] == "grid" else sp.get("first", [])
            have = [t.params or t.system_attrs.get("fixed_params", {}) for t in study.get_trials(deepcopy=False)]
            for point in points:
                if point not in have:
                    study.enqueue_trial(point)
                    have.append(point)
            self.studies[path.name] = study
        return self.studies[path.name]

    @staticmethod
    def _params(trial: optuna.trial.Trial, sp: dict) -> dict:
        """The trial's values (enqueued grid points come back as fixed; a search samples them now)."""
        out = {}
        for k, s in sp["space"].items():
            if s["kind"] == "choice":
                out[k] = trial.suggest_categorical(k, s["values"])
            elif s["kind"] == "int":
                out[k] = trial.suggest_int(k, int(s["low"]), int(s["high"]), log=s["log"])
            else:
                out[k] = trial.suggest_float(k, float(s["low"]), float(s["high"]), log=s["log"])
        return out

    def _new_run(self, path: Path, sp: dict, study: optuna.Study, trial_id: int, number: int) -> Run:
        trial = optuna.trial.Trial(study, trial_id)  # trial_id: FrozenTrial's storage id (no public name for it)
        params = self._params(trial, sp)
        base = cfgmod.Config.from_dict(sp["config"])
        cfg = spacemod.apply(base, params).replace(name=f"{sp.get('name') or 'sweep'}-t{number}"[:32])
        run = create_run(self.runs_dir, cfg, state="queued", queued=time.time(), sweep=sp["id"], trial=number,
                         swept=params)
        Queue(self.runs_dir).add(run)  # the caller holds the queue's lock
        trial.set_user_attr("run", run.id)
        return run

    def _runs_by_trial(self, sp: dict, trials) -> dict[int, Run]:
        out = {t.number: Run(self.runs_dir / t.user_attrs["run"]) for t in trials if t.user_attrs.get("run")}
        if any(t.state == TrialState.RUNNING and t.number not in out for t in trials):
            for run in list_runs(self.runs_dir):  # a crash between creating a run and recording it in the study
                st = run.status()
                if st.get("sweep") == sp["id"] and st.get("trial") is not None:
                    out.setdefault(int(st["trial"]), run)
        return out

    def _objective(self, run: Run, metric: str) -> dict[int, float]:
        """step -> the objective from the run's eval events (read incrementally by byte offset)."""
        tail = self.tails.setdefault(run.id, EventTail(run.events_path))
        got = self.evals.setdefault(run.id, {})
        for e in tail.read():
            if e.get("kind") == "eval" and isinstance(e.get(metric), (int, float)):
                got[int(e.get("step", 0))] = float(e[metric])
        return got

    def _settle(self, path: Path, sp: dict) -> None:
        study = self._study(path, sp)
        trials = study.get_trials(deepcopy=False)
        runs = self._runs_by_trial(sp, trials)
        for t in trials:
            if t.state != TrialState.RUNNING:
                continue
            run = runs.get(t.number)
            if run is None and sp["state"] != "running":  # asked, then the sweep was stopped: it never ran
                optuna.trial.Trial(study, t._trial_id).set_user_attr("error", "the sweep stopped before it ran")
                study.tell(t.number, state=TrialState.FAIL)
                continue
            if run is None:  # asked by a process that died before creating its run: create it now
                runs[t.number] = self._new_run(path, sp, study, t._trial_id, t.number)
                continue
            self._follow(sp, study, t, run)
        if sp["state"] == "running":  # ask for more: a grid all at once, a search one queued trial at a time
            trials = study.get_trials(deepcopy=False)
            waiting = sum(1 for t in trials if t.state == TrialState.RUNNING and t.number in runs
                          and runs[t.number].status().get("state") == "queued")
            asked = sum(1 for t in trials if t.state != TrialState.WAITING)
            while asked < sp["trials"] and (sp["mode"] == "grid" or waiting < 1):
                trial = study.ask()
                runs[trial.number] = self._new_run(path, sp, study, trial._trial_id, trial.number)
                asked += 1
                waiting += 1
        trials = study.get_trials(deepcopy=False)
        unfinished = [t for t in trials if t.state == TrialState.RUNNING]
        asked = sum(1 for t in trials if t.state != TrialState.WAITING)
        if not unfinished and (sp["state"] == "stopping" or asked >= sp["trials"]):
            sp["state"] = "completed" if sp["state"] == "running" else "stopped"
            sp["ended"] = time.time()
            sweepfiles.write_spec(path, sp)
        self._write_summary(path, sp, study, trials, runs)

    def _follow(self, sp: dict, study: optuna.Study, t, run: Run) -> None:
        status = run.status()
        state = run.state(status)
        if state in ("queued", "created"):
            return
        got = self._objective(run, sp["metric"])
        trial = optuna.trial.Trial(study, t._trial_id)
        for step in sorted(got):
            if step not in t.intermediate_values:
                trial.report(got[step], step)
        pruned = t.user_attrs.get("pruned_at")
        if (state == "running" and pruned is None and sp.get("pruner") != "none" and sp["state"] == "running"
                and got and trial.should_prune()):
            run.send("stop")
            trial.set_user_attr("pruned_at", max(got))
            pruned = max(got)
        if state not in ENDED:
            return
        if state == "completed":
            if got:
                study.tell(t.number, got[max(got)])
                return
            trial.set_user_attr("error", f"no eval {sp['metric']!r} in the run's events: is the objective a "
                                "metric this method evaluates?")
            study.tell(t.number, state=TrialState.FAIL)
        elif pruned is not None and state == "stopped":
            study.tell(t.number, state=TrialState.PRUNED)
        else:
            reason = "cancelled" if status.get("cancelled") else state
            trial.set_user_attr("error", status.get("error") or reason)
            study.tell(t.number, state=TrialState.FAIL)

    def _write_summary(self, path: Path, sp: dict, study: optuna.Study, trials, runs: dict[int, Run]) -> None:
        trials = study.get_trials(deepcopy=False)
        rows = []
        for t in trials:
            if t.state == TrialState.WAITING:
                continue
            run = runs.get(t.number)
            rows.append({"number": t.number, "state": t.state.name, "params": t.params or
                         (run.status().get("swept") if run else {}) or {}, "run": run.id if run else None,
                         "value": t.value, "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())},
                         "pruned_at": t.user_attrs.get("pruned_at"), "error": t.user_attrs.get("error")})
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        best = None
        if complete:
            b = study.best_trial
            best = {"trial": b.number, "value": b.value, "params": b.params, "run": b.user_attrs.get("run")}
        old = sweepfiles.summary(path)
        importance, note = old.get("importance"), old.get("importance_note")
        if len(complete) != old.get("importance_from"):
            importance, note = self._importance(study, len(complete))
        data = {"id": sp["id"], "state": sp["state"], "objective": sp["objective"], "direction": sp["direction"],
                "best": best, "trials": rows, "importance": importance, "importance_note": note,
                "importance_from": len(complete)}
        if {k: v for k, v in old.items() if k != "updated"} != json.loads(json.dumps(data, default=str)):
            atomic_write(path / "summary.json", json.dumps({**data, "updated": time.time()}, indent=1, default=str))

    @staticmethod
    def _importance(study: optuna.Study, complete: int) -> tuple[dict | None, str]:
        if complete < IMPORTANCE_AFTER:
            return None, f"parameter importance after {IMPORTANCE_AFTER} completed trials ({complete} so far)"
        try:
            from optuna import importance as imp  # loads numpy/scipy: only once enough trials completed

            got = imp.get_param_importances(study)
            return {k: round(float(v), 4) for k, v in got.items()}, f"Optuna's PED-ANOVA over {complete} completed trials"
        except Exception as e:  # noqa: BLE001 - importance is a hint; a study it cannot judge still runs
            return None, f"no parameter importance: {type(e).__name__}: {e}"
