"""The Trainer callback that connects a transformers/TRL trainer to the run directory.

It turns logs into events, moves each checkpoint into place atomically, obeys control files between
steps (stop, pause, resume, save, eval), stops early on a stalled eval loss, and keeps the time spent
outside training steps (pauses, evaluation, saving) out of `train_wall_s`.
Heavy module (transformers).
"""
from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

from transformers import TrainerCallback

from engine.config import Config
from engine.rundir import controls
from engine.rundir.evalkeys import metric_values
from engine.rundir.runs import META, Run
from engine.training.distributed import barrier, rank, sync_flags


def fsync_tree(path: Path) -> None:
    """Make every file of a finished checkpoint owner-only (0600, folders 0700) and flush it to disk before it is
    renamed into place.

    Cost: one fsync per file (seconds for multi-GB full checkpoints); it is what makes a renamed
    checkpoint complete after a power loss, not only after a process kill. The chmod is the engine's umask
    made sure of: a library that copies a file (shutil.copy keeps the source's mode) must not leave it 0644.
    """
    os.chmod(path, 0o700)
    for root, dirs, files in os.walk(path):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o700)
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fchmod(fd, 0o600)
                os.fsync(fd)
            finally:
                os.close(fd)


class ProgressWriter:
    """Writes periodic progress (step, loss) to status.json from a thread of its own, latest update wins.

    status.json is fsynced; on a busy disk one fsync stalled the training loop for hundreds of ms, so
    progress never waits for it. Progress updates carry no `state`, so a late one cannot undo a state change.
    """

    def __init__(self, run: Run):
        self.run = run
        self._cv = threading.Condition()
        self._pending: dict | None = None
        threading.Thread(target=self._loop, name="status-progress", daemon=True).start()

    def put(self, fields: dict) -> None:
        with self._cv:
            self._pending = fields
            self._cv.notify()

    def write_now(self, fields: dict) -> None:
        with self._cv:
            self._pending = None
        self.run.write_status(**fields)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while self._pending is None:
                    self._cv.wait()
                fields, self._pending = self._pending, None
            try:
                self.run.write_status(**fields)
            except OSError:
                pass  # a full disk surfaces through the training thread's own writes


class RunCallback(TrainerCallback):
    """Writes the run's events and status; one per engine process (rank 0 only when distributed)."""

    METRIC_KEYS = {"loss", "grad_norm", "learning_rate", "epoch", "num_tokens", "mean_token_accuracy", "entropy"}

    def __init__(self, run: Run, events, cfg: Config, job: dict, stop_flag):
        self.run, self.events, self.cfg, self.job = run, events, cfg, job
        self.stop_flag = stop_flag  # a threading.Event set by SIGTERM/SIGINT handlers
        self.stopped = False
        self.excluded_s = 0.0  # pause + eval + save time inside trainer.train()
        self._mark = time.perf_counter()
        self._last_tokens = None
        self._last_status = 0.0
        self.num_tokens = 0
        self.last_loss = None
        self.last_eval = None
        self.best_eval = None
        self.bad_evals = 0
        self.has_eval = False  # known once the method has built its datasets (on_train_begin)
        self.save_dir = Path(job["trainer_dir"])
        self.before_rename = None  # a fault-injection hook (engine/faults.py); None in normal runs
        self._paused = False
        self._pause_pending = False  # paused, but left the wait so the trainer could save or evaluate
        self._inside = False  # waiting inside on_save/on_evaluate: a save or eval asked now is done here
        self.trainer = None  # set by the engine once built: saves and evals asked while paused call it directly
        self._progress_due = False  # on_step_end left this step's progress write to on_log (with its loss)
        self._progress = ProgressWriter(run)
        self.step = 0  # the last step the trainer finished (for failure messages)

    # -- helpers ---------------------------------------------------------------------------------
    def _status(self, tstate, force=False, **extra):
        fields = dict(step=tstate.global_step, max_steps=tstate.max_steps, last_loss=self.last_loss,
                      last_eval_loss=self.last_eval, **extra)
        if force:  # state changes: written now, in order, and any queued progress update is dropped
            self._progress.write_now(fields)
            return
        now = time.monotonic()
        if now - self._last_status > 2.0:  # progress: at most every 2 s, written off the training thread
            self._last_status = now
            self._progress.put(fields)

    def _set_state(self, name: str, state, **extra):
        self.events.write("state", state=name, step=state.global_step, **extra)
        self._status(state, force=True, state=name)

    # -- trainer hooks ---------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kw):
        self.has_eval = bool(self.job.get("eval_rows"))
        self._set_state("running", state)
        self._mark = time.perf_counter()
        self._t_tokens = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kw):
        logs = logs or {}
        if "loss" not in logs:
            if self._progress_due:
                self._progress_due = False
                self._status(state)
            return
        now = time.perf_counter()
        m = {k: logs[k] for k in self.METRIC_KEYS if k in logs}
        if "num_tokens" in logs:
            n = int(logs["num_tokens"])
            if self._last_tokens is not None and now > self._t_tokens:
                m["tokens_per_s"] = round((n - self._last_tokens) / (now - self._t_tokens), 1)
            self._last_tokens, self._t_tokens = n, now
            self.num_tokens = n
        self.last_loss = logs["loss"]
        extra = {k: v for k, v in logs.items() if k not in m and not k.startswith("eval_") and isinstance(v, (int, float))}
        self.events.write("metrics", step=state.global_step, **m, **extra)
        self._progress_due = False
        self._status(state)  # step and loss of the same step (on_step_end deferred its write to here)

    def on_step_end(self, args, state, control, **kw):
        self.step = state.global_step
        self._apply_controls(state, control)
        self._hold(state, control)
        if state.global_step >= state.max_steps:  # last step: evaluate (when there is eval data) and save
            control.should_save = True
            if self.has_eval and not self.cfg.training.eval_steps:
                control.should_evaluate = True
        if control.should_log:
            self._progress_due = True  # the loss of this step is logged next: progress is written with it
        else:
            self._status(state)  # progress only: states are written by _set_state
        self._mark = time.perf_counter()

    def _apply_controls(self, state, control):
        """One batch of control files, in order, through the state machine; every rank gets rank 0's decision."""
        if self.stopped:
            return
        cmds = self.run.take_controls()
        d = controls.apply(self._paused, cmds)
        flags = sync_flags(d.flags(), self.stop_flag)
        if cmds:
            self.events.write("log", level="info", message=f"controls at step {state.global_step}: {', '.join(cmds)}")
        if flags["stop"]:
            self.stopped, self._paused, self._pause_pending = True, False, False
            control.should_save = True
            control.should_training_stop = True
            self._set_state("stopping", state)
            return
        if flags["save"]:
            control.should_save = True
            self.events.write("log", level="info", message=f"save requested at step {state.global_step}")
        if flags["eval"]:
            if self.has_eval:
                control.should_evaluate = True
            else:
                self.events.write("log", level="warning", message="evaluate requested, but the run has no eval data")
        if flags["paused"] != self._paused:
            self._paused = flags["paused"]
            self._set_state("paused" if self._paused else "running", state)

    def _hold(self, state, control):
        """While paused, wait between steps for the next batch of controls. A save or eval asked for leaves the wait
        so the trainer does it (still paused); on_evaluate/on_save then come back here (`_pause_pending`)."""
        if not self._paused:
            return
        if control.should_save or control.should_evaluate:
            self._pause_pending = True
            return
        t0 = time.perf_counter()
        while self._paused and not self.stopped:
            time.sleep(0.2)
            self._apply_controls(state, control)  # every rank waits in this loop and leaves it at the same turn
            if control.should_save or control.should_evaluate:
                if self._inside and self.trainer is not None:
                    # The trainer clears these flags at the next step's start: leaving the wait here would
                    # train a step before the save or eval the user asked for while paused. Done now instead.
                    self._do_now(control)
                    continue
                self._pause_pending = True
                break
        self.excluded_s += time.perf_counter() - t0
        self._mark = time.perf_counter()

    def _back_to_pause(self, state, control):
        if self._inside:
            return  # a save or eval _do_now runs: the wait that asked for it goes on
        if self._pause_pending and not control.should_save:  # after the last of eval-then-save
            self._pause_pending = False
            self._inside = True
            try:
                self._hold(state, control)
            finally:
                self._inside = False

    def _do_now(self, control) -> None:
        """Evaluate and/or save at the current step, still paused, as the trainer's own loop would (every rank
        gets the same flags, so the collectives of an evaluation meet)."""
        t, evaluate, save = self.trainer, control.should_evaluate, control.should_save
        control.should_evaluate = control.should_save = False
        if evaluate:
            t.evaluate()  # on_evaluate writes the eval event
        if save:
            t._save_checkpoint(t.model, trial=None)  # transformers' own save, as _maybe_log_save_evaluate calls it
            t.control = t.callback_handler.on_save(t.args, t.state, t.control)

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        now = time.perf_counter()
        self.excluded_s += now - self._mark
        self._mark = now
        metrics = dict(metrics or {})
        self.last_eval = metrics.get("eval_loss")
        values = {k.removeprefix("eval_"): v for k, v in metrics.items() if isinstance(v, (int, float))}
        self.events.write("eval", step=state.global_step, **values)
        scores = metric_values(values)  # eval.metrics, accuracy, ...: `tunebench status` shows the last ones
        patience = self.cfg.training.early_stopping_patience
        if self.last_eval is not None:
            if self.best_eval is None or self.last_eval < self.best_eval:
                self.best_eval, self.bad_evals = self.last_eval, 0
            else:
                self.bad_evals += 1
                if patience and self.bad_evals >= patience:
                    self.events.write("log", level="info", message=(
                        f"early stopping at step {state.global_step}: eval loss has not improved on "
                        f"{self.best_eval:.4f} for {self.bad_evals} evaluations"))
                    control.should_training_stop = True
                    control.should_save = True
        last = {"last_eval_metrics": {"step": state.global_step, **scores}} if scores else {}
        self._status(state, force=True, **last)
        self._back_to_pause(state, control)

    def on_save(self, args, state, control, **kw):
        barrier()  # every rank has finished writing its part of the checkpoint before rank 0 renames it
        if rank() == 0:
            self._place_checkpoint(state)
        now = time.perf_counter()
        self.excluded_s += now - self._mark
        self._mark = now
        control.should_save = False  # done; lets a pending pause resume its wait
        self._back_to_pause(state, control)

    def _place_checkpoint(self, state):
        step = state.global_step
        staged = self.save_dir / f"checkpoint-{step}"
        final = self.run.checkpoints_dir / f"checkpoint-{step}"
        if staged.exists():
            meta = {"step": step, "time": time.time(), "run_id": self.run.id, "method": self.cfg.method,
                    "base_model": self.cfg.model.name_or_path, "adapter": self.cfg.adapter.kind,
                    "quantization": self.cfg.model.quantization, "config_hash": self.job["config_hash"],
                    "loss": self.last_loss, "eval_loss": self.last_eval, "max_steps": state.max_steps,
                    "num_tokens": self.num_tokens}
            (staged / META).write_text(json.dumps(meta, indent=1), encoding="utf-8")
            fsync_tree(staged)
            if self.before_rename:
                self.before_rename(step)
            if final.exists():  # the same step saved twice (save-now at the last step): keep the newest
                shutil.rmtree(final)
            os.replace(staged, final)  # the atomic step: a checkpoint is complete once it has this name
            size = sum(f.stat().st_size for f in final.rglob("*") if f.is_file())
            self.events.write("checkpoint", step=step, path=str(final), size_bytes=size,
                              loss=self.last_loss, eval_loss=self.last_eval)
            self.run.write_status(last_checkpoint=final.name, last_checkpoint_step=step)
            self._rotate()

    def _rotate(self):
        limit = self.cfg.training.save_total_limit
        cps = self.run.checkpoints()
        if not limit or len(cps) <= limit:
            return
        scored = [c for c in cps if c.meta.get("eval_loss") is not None]
        best = min(scored, key=lambda c: c.meta["eval_loss"]) if scored else None
        keep = {c.path for c in cps[-limit:]} | ({best.path} if best else set())
        for c in cps:
            if c.path not in keep:
                trash = c.path.with_name(f".deleting-{c.name}")
                os.replace(c.path, trash)  # no longer a checkpoint the moment it is renamed
                shutil.rmtree(trash, ignore_errors=True)
