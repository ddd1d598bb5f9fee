"""The engine process: `python -m engine.worker RUN_DIR [--resume]` trains one run and records it.

Started detached (its own session) by engine/launch.py, with stdout/stderr going to engine.log. It
ignores SIGHUP (a lost terminal), turns SIGTERM/SIGINT into a graceful stop, and ends every run in
completed, stopped or failed with the reason in status.json.
"""
from __future__ import annotations

import argparse
import errno
import hashlib
import importlib
import json
import os
import resource
import shutil
import signal
import socket
import sys
import threading
import time
import traceback

import psutil

from engine import config as cfgmod
from engine.config import Config
from engine.data import fingerprint
from engine.data.errors import DataError
from engine.monitor.snapshotter import Snapshotter
from engine.planning import estimate
from engine.rundir.atomic import atomic_write
from engine.rundir.events import EventWriter
from engine.rundir.lock import BUSY_EXIT, Refused, RunBusy, RunLock
from engine.rundir.queue import taking
from engine.rundir.resume import plan as plan_resume
from engine.rundir.resume import set_aside, with_overrides
from engine.rundir.runs import Run
from engine.rundir.trust import check_run_dir, code_warnings
from engine.system.telemetry import Probe, Sampler
from engine.training import cluster
from engine.training.distributed import for_rank, rank

METHOD_MODULES = {"sft": "engine.training.methods.sft", "dpo": "engine.training.methods.dpo", "kto": "engine.training.methods.kto",
                  "seq2seq": "engine.training.methods.seq2seq",
                  "reward": "engine.training.methods.reward", "grpo": "engine.training.methods.grpo", "rloo": "engine.training.methods.rloo",
                  "classification": "engine.training.methods.classification"}


def oom_message(cfg: Config, step: int, resolved: dict) -> str:
    import torch

    t, d = cfg.training, cfg.data
    used = total = peak = None
    try:
        free, total = torch.cuda.mem_get_info()
        used, peak = total - free, torch.cuda.max_memory_allocated()
    except Exception:  # noqa: BLE001
        pass
    gib = lambda b: f"{b / 2**30:.1f} GiB" if b is not None else "N/A"  # noqa: E731
    tips = [f"training.batch_size {t.batch_size} -> {max(1, t.batch_size // 2)} "
            f"(and training.grad_accum {t.grad_accum} -> {t.grad_accum * 2} to keep the effective batch)",
            f"data.max_length {d.max_length} -> {max(64, d.max_length // 2)}"]
    if not resolved.get("gradient_checkpointing"):
        tips.append("training.gradient_checkpointing: true")
    if cfg.model.quantization != "4bit":
        tips.append("model.quantization: 4bit with adapter.kind: lora (QLoRA)")
    return (f"CUDA out of memory at step {step}: {gib(used)} of {gib(total)} in use, torch peak {gib(peak)}. "
            f"To fit, change one of: {'; '.join(tips)}. Check `tunebench estimate` before relaunching.")


def error_message(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > 600:
        text = text[:600] + "..."
    if isinstance(exc, (DataError, Refused)):
        return text  # the user's data or request: the message is the whole story, no traceback to read
    return f"{type(exc).__name__}: {text} (traceback in engine.log)"


def size_text(n: float) -> str:
    """Bytes for a person: 180 KiB, 3.2 MiB, 1.5 GiB (a small filesystem is not "0 MiB of 0.0 GiB")."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}" if n < 10 * scale else f"{n / scale:.0f} {unit}"
    return f"{int(n)} bytes"


def disk_full_message(run: Run, step: int, partial_removed: bool = True) -> str:
    try:
        usage = shutil.disk_usage(run.path)
        room = f"{size_text(usage.free)} free of {size_text(usage.total)}"
    except OSError:
        room = "free space unknown"
    cps = run.checkpoints()
    kept = f"checkpoints up to step {cps[-1].step} are intact" if cps else "no earlier checkpoint was complete"
    removed = "The partial save was removed; " if partial_removed else ""
    return (f"Disk full while writing at step {step}: {room} on the filesystem of {run.path}. {removed}{kept}. "
            f"Free space (old runs' checkpoints, caches) or lower training.save_total_limit "
            f"(tunebench train --resume {run.id} --set training.save_total_limit=N), then "
            f"`tunebench train --resume {run.id}`.")


FULL_BYTES = 64 << 10  # free space under which a failed write is put down to a full disk


def is_disk_full(exc: BaseException, path=None) -> bool:
    """ENOSPC as an OSError, or wrapped by a library (safetensors raises its own error with "os error 28"), or a
    library's write error without an errno (torch.save: "unexpected pos ...") while `path`'s filesystem is full."""
    first = exc
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(exc) or f"os error {errno.ENOSPC}" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    if path is not None and isinstance(first, (OSError, RuntimeError)):
        try:
            return shutil.disk_usage(path).free < FULL_BYTES
        except OSError:
            return False
    return False


def clear_partial_saves(run: Run) -> bool:
    """Remove saves that never completed (staging dirs, half-deleted checkpoints): they are never resumed from.
    Returns whether there was one."""
    found = False
    for d in [run.path / ".trainer", *run.checkpoints_dir.glob(".deleting-*")]:
        found = found or d.exists()
        shutil.rmtree(d, ignore_errors=True)
    return found


class Reserve:
    """A few pages of disk set aside at start and given back when the run fails, so its final status and event
    land even on a filesystem that filled up completely (a status is ~2 KiB, its temp file as much again)."""

    SIZE = 32 << 10

    def __init__(self, run: Run):
        self.path = run.path / ".reserve"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            data, done = b"\0" * self.SIZE, 0
            while done < self.SIZE:  # real blocks, not a sparse file: they must be there to be freed
                done += os.write(fd, data[done:])
            os.fsync(fd)
        finally:
            os.close(fd)

    def release(self) -> None:
        try:
            os.unlink(self.path)
        except OSError:
            pass


def say(*lines: str) -> None:
    """Print to engine.log, best effort: on a full disk the log is the first thing that cannot be written."""
    for line in lines:
        try:
            print(line, file=sys.stderr, flush=True)
        except (OSError, ValueError):
            return


def print_traceback() -> None:
    try:
        traceback.print_exc()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def take_run(run: Run) -> RunLock | int:
    """The run's lock, or the exit status when the run is refused (another engine holds it; not our run)."""
    try:
        check_run_dir(run.path)
        return RunLock.acquire(run.path)
    except RunBusy as e:
        say(f"engine refused: {e}")
        return BUSY_EXIT
    except Refused as e:
        say(f"engine refused: {e}")
        return 2


def discard_old_controls(run: Run, since_ns: int, events) -> None:
    """Control files left from before this engine took the run (a killed engine's) never act on it."""
    old = run.take_controls(before_ns=since_ns)
    if old:
        events.write("log", level="warning", message=f"discarded {len(old)} control file(s) sent before this engine "
                     f"started: {', '.join(old)}")


def resume_tokens(run: Run, checkpoint) -> int:
    """Tokens trained up to `checkpoint` (its meta; else the last metrics event at or before its step)."""
    n = checkpoint.meta.get("num_tokens")
    if isinstance(n, (int, float)) and n > 0:
        return int(n)
    from engine.rundir.events import read_events

    best = 0
    for e in read_events(run.events_path, ("metrics",)):
        if e.get("step", 0) <= checkpoint.step and isinstance(e.get("num_tokens"), (int, float)):
            best = int(e["num_tokens"])
    return best


def peak_memory() -> dict:
    out = {"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_cuda_bytes"] = torch.cuda.max_memory_allocated()
        out["peak_cuda_reserved_bytes"] = torch.cuda.max_memory_reserved()
    return out


def run_engine(run: Run, resume: bool = False, from_step: int | None = None, weights_only: bool = False,
               overrides: list[str] = (), queued: bool = False) -> int:
    os.umask(0o077)  # every file and folder the engine (and the libraries it calls) creates is owner-only
    stop_flag = threading.Event()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the terminal going away is not a reason to stop
    signal.signal(signal.SIGTERM, lambda *_: stop_flag.set())
    signal.signal(signal.SIGINT, lambda *_: stop_flag.set())
    me = psutil.Process()
    lock = None
    if rank() == 0:  # rank 0 holds the run for the whole job; the kernel frees it when the process dies
        lock = take_run(run)
        if isinstance(lock, int):
            return lock
        with taking(run, queued) as ours:  # a queued run is started only by the engine that takes its queue entry
            if ours:
                run.write_status(state="starting", pid=os.getpid(), pid_started=me.create_time(),
                                 host=socket.gethostname(), started=time.time(), ended=None, error=None,
                                 resumed=resume)
        if not ours:  # an engine that loses its queued run touches nothing
            lock.release()
            say(f"not started: {run.id} left the queue before this engine could take it (another engine took it, "
                "or it was cancelled)")
            return 3
    taken_ns = time.time_ns()
    run, events = for_rank(run, EventWriter)  # rank 0 alone writes status, events and checkpoints
    reserve = None
    step, resolved, cfg, callback, sampler, history, nodes = 0, {}, None, None, None, None, None
    try:
        if isinstance(events, EventWriter):
            reserve = Reserve(run)  # first: a disk already full fails here, before anything else is written
        # final_checkpoint is decided again when this run ends (a resume saves newer ones)
        run.write_status(state="starting", pid=os.getpid(), pid_started=me.create_time(), host=socket.gethostname(),
                         started=time.time(), ended=None, error=None, note=None, resumed=resume,
                         final_checkpoint=None, **cluster.where(run))
        events.write("state", state="starting", pid=os.getpid(), resume=resume)
        discard_old_controls(run, taken_ns, events)
        clear_partial_saves(run)
        probe = Probe()
        sampler = Sampler(lambda: events.write("telemetry", **probe.sample()), interval=1.0).start()
        # The chart history a monitor starts from (engine/snapshot.py); rank 0 alone has the events.
        history = Snapshotter(run.events_path).start() if isinstance(events, EventWriter) else None
        nodes = cluster.handshake(run, resume)  # several nodes: one shared run directory, one resume decision
        if nodes is not None:
            resume = nodes.resume
            run.write_status(nodes=nodes.summary(), nnodes=len(nodes.summary()), resumed=resume)
            events.write("log", level="info", message=f"{len(nodes.summary())} nodes, {len(nodes.peers)} ranks met "
                         f"at start in {nodes.seconds:.2f} s; the run directory is shared")
        if overrides:  # resume-safe settings only (engine.rundir.resume.RESUME_SAFE_KEYS)
            cfg, changed = with_overrides(run, list(overrides))
            if changed and isinstance(events, EventWriter):
                atomic_write(run.config_path, cfgmod.dump(cfg))
                events.write("log", level="warning", message="settings changed on resume: " + "; ".join(changed))
        cfg = cfg or run.settings()
        for warning in code_warnings(cfg):
            events.write("log", level="warning", message=warning)
        plan = None
        if resume:
            plan = plan_resume(run, from_step, weights_only)
            fingerprint.check(run.path, cfg, run.id)  # refuses when the data changed since the run started
            if isinstance(events, EventWriter):
                set_aside(run, plan)
            for note in plan.notes():
                events.write("log", level="warning", message=note)
        t_import = time.perf_counter()
        import torch  # noqa: F401 - 7-9 s; timed so the summary can say where start-up went

        from engine.training import modeling
        from engine.training.callbacks import RunCallback

        resolved = modeling.resolve(cfg)
        events.write("log", level="info", message=f"imported the ML stack in {time.perf_counter() - t_import:.1f} s")
        predicted = estimate.for_run(cfg, resolved)  # predicted_peak_bytes etc.; {} for a model it cannot read
        events.write("state", state="starting", resolved=resolved, **predicted)
        run.write_status(resolved=resolved, **predicted)
        job = {"trainer_dir": str(run.path / ".trainer"),
               "config_hash": hashlib.sha256(cfgmod.dump(cfg).encode()).hexdigest()[:16]}
        callback = RunCallback(run, events, cfg, job, stop_flag)
        method = importlib.import_module(METHOD_MODULES[cfg.method])
        trainer = method.build(cfg, resolved, job, [callback])
        callback.trainer = trainer
        from engine.training.methods.extras import attach  # training.freeze, gradual unfreezing, data.general_eval

        attach(trainer, cfg, callback)
        from engine.training.faults import install as install_faults

        if install_faults(trainer, callback, events):
            events.write("log", level="warning", message="fault injection armed (TUNEBENCH_FAULTS)")
        for note in job.get("notes", []):
            events.write("log", level="warning", message=note)
        events.write("data", **{k: v for k, v in job.items() if k in (
            "format", "train_rows", "eval_rows", "source_rows", "labels", "dropped", "truncation", "cache", "prepare_s",
            "mixture", "order", "curriculum_epochs", "scoring", "chat_template")})
        done = job.get("chat_template") or {}
        if done.get("chat_template", "auto") != "auto":
            resized = done.get("resized_embeddings")
            events.write("log", level="info", message=f"data.chat_template {done['name']}: " + (
                f"added {', '.join(done['added_tokens'])} to the tokenizer" if done.get("added_tokens")
                else "every token it needs was in the tokenizer") + (
                f"; embeddings resized {resized['from']} -> {resized['to']} rows (trained and saved whole: "
                f"{', '.join(resized['modules'])})" if resized else ""))
        if isinstance(events, EventWriter) and not (run.path / fingerprint.RECORD).exists():
            record_data(run, cfg, job)  # once, when the run first gets this far (a resume compares with it)
        events.write("log", level="info", message="model ready", **modeling.trainable_parameters(trainer.model))
        resume_from = None
        if resume:
            last = plan.checkpoint
            resume_from = str(last.path) if last else None
            if last is not None and hasattr(trainer, "_total_train_tokens"):
                # TRL counts num_tokens from 0 in every new trainer; go on from the checkpoint's count
                trainer._total_train_tokens = resume_tokens(run, last)
                callback.num_tokens = trainer._total_train_tokens
            events.write("log", level="info", message=f"resuming from {last.name if last else 'the start (no complete checkpoint)'}")
        if stop_flag.is_set():
            raise KeyboardInterrupt
        tokens_before = callback.num_tokens  # a resumed run's count goes on; its speed is this engine's own
        t0 = time.perf_counter()
        trainer.train(resume_from_checkpoint=resume_from)
        wall = time.perf_counter() - t0
        step = trainer.state.global_step
        train_wall = max(1e-9, wall - callback.excluded_s)
        final = "stopped" if callback.stopped else "completed"
        # Slurm's SIGTERM: a time limit fails the run with Slurm's reason, a requeue leaves it queued
        ending = cluster.slurm_ending(run, step) if callback.stopped and stop_flag.is_set() else {}
        final = ending.pop("state", final)
        summary = {"step": step, "max_steps": trainer.state.max_steps, "train_wall_s": round(train_wall, 3),
                   "wall_s": round(wall, 3), "num_tokens": callback.num_tokens,
                   "tokens_per_s": round((callback.num_tokens - tokens_before) / train_wall, 1),
                   "final_loss": callback.last_loss,
                   "final_eval_loss": callback.last_eval, "best_eval_loss": callback.best_eval, **peak_memory(),
                   **modeling.trainable_parameters(trainer.model), **job.get("summary_extra", {}),
                   **{k: v for k, v in predicted.items() if k != "predicted_parts"}}
        events.write("summary", **summary)
        try:
            estimate.record_run(cfg, resolved, summary)  # measured speed teaches later estimates on this device
        except Exception as e:  # noqa: BLE001 - a cache we cannot write must not fail a finished run
            events.write("log", level="warning", message=f"speed not recorded for estimates: {e}")
        last = run.last_checkpoint()
        events.write("state", state=final, step=step, **{k: ending[k] for k in ("error", "note") if k in ending})
        run.write_status(state=final, step=step, ended=time.time(), summary=summary, last_loss=callback.last_loss,
                         last_eval_loss=callback.last_eval, final_checkpoint=last.name if last else None, **ending)
        return 0
    except KeyboardInterrupt:
        ending = cluster.slurm_ending(run, step)
        final = ending.pop("state", "stopped")
        events.write("state", state=final, step=step, **{k: ending[k] for k in ("error", "note") if k in ending})
        run.write_status(state=final, ended=time.time(), **ending)
        return 0
    except BaseException as exc:  # noqa: BLE001 - every failure ends the run as failed, with its reason
        return fail(run, events, exc, cfg, callback, resolved, sampler, reserve, nodes)
    finally:
        for stop in (sampler, history):
            try:
                if stop is not None:
                    (stop.stop if stop is sampler else stop.close)()  # after the final events: the snapshot covers them
            except Exception:  # noqa: BLE001 - a cache or telemetry thread must not turn a result into a crash
                pass
        if reserve is not None:
            reserve.release()
        events.close()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        if lock is not None:
            lock.release()  # last: the run's final status and events are written


def fail(run: Run, events, exc: BaseException, cfg, callback, resolved: dict, sampler, reserve, nodes=None) -> int:
    """End the run as failed with its reason, whatever the disk: the status first (it is the record that must land),
    then the event, then the traceback into engine.log, each write after the status best effort."""
    if sampler is not None:
        sampler.stop()  # no telemetry writes racing the final ones (they may be failing on a full disk)
    torch = sys.modules.get("torch")
    oom = torch is not None and isinstance(exc, getattr(torch, "OutOfMemoryError", ()))
    # the trainer's own step: status.json's progress is written every 2 s and may lag behind
    step = callback.step if callback is not None else run.status().get("step", 0)
    msg = oom_message(cfg, step, resolved) if oom and cfg else error_message(exc)
    if is_disk_full(exc, run.path):
        removed = clear_partial_saves(run)  # frees the space the failed save took
        msg = disk_full_message(run, step, removed)
    if isinstance(exc, cfgmod.ConfigError):
        msg = "invalid config: " + "; ".join(map(str, exc.problems))
    run, events, msg = cluster.on_failure(run, events, exc, msg, nodes, step)  # names a node that went away
    if reserve is not None:
        reserve.release()  # the room the status and the failed event need, even on a disk that filled completely
    try:
        run.write_status(state="failed", step=step, ended=time.time(), error=msg, oom=bool(oom))
    except OSError as e:
        say(f"status.json not written ({e})")
    try:
        events.write("state", state="failed", step=step, error=msg, oom=bool(oom), **peak_memory())
    except OSError:
        pass  # the event log is best effort here; status.json above is the record that must land
    if not isinstance(exc, (DataError, Refused, cfgmod.ConfigError)):
        print_traceback()
    say(f"run failed: {msg}")
    return 1


def record_data(run: Run, cfg: Config, job: dict) -> None:
    """The data's fingerprint, written once when the run starts (a resume compares with it)."""
    atomic_write(run.path / fingerprint.RECORD, json.dumps(fingerprint.record(cfg, job.get("source_rows")), indent=1))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.worker")
    p.add_argument("run_dir")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--step", type=int, default=None, help="with --resume: the checkpoint step to go on from")
    p.add_argument("--weights-only", action="store_true", help="with --resume: accept a checkpoint without its "
                   "optimizer/scheduler (they start fresh)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V",
                   help="with --resume: a resume-safe setting to change")
    p.add_argument("--queued", action="store_true", help="started by a scheduler for a queued run: start it only "
                   "by taking its queue entry")
    a = p.parse_args(argv)
    return run_engine(Run(a.run_dir), resume=a.resume, from_step=a.step, weights_only=a.weights_only,
                      overrides=a.overrides, queued=a.queued)


if __name__ == "__main__":
    sys.exit(main())
